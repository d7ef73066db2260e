#!/usr/bin/env python
"""The interactive grounding page: upload an image, type a phrase, get the mask, box and maps.

    python app.py --tiny                       # the offline stand-ins: the maps are noise
    python app.py [--vlm KEY] [--sd KEY] [--refiner KEY] [--host 0.0.0.0] [--port 7860]

Loads the three models once (the same flags and settings as ground.py: --tiny, --vlm, --sd,
--refiner, --sam-checkpoint, --no-sam, --fidelity, --inversion, --steps, ...; they are the page's
defaults, its "Advanced" section changes them per request) and serves the page on
http://127.0.0.1:7860 (this machine only; --host to listen elsewhere, --share for a public
Gradio link). Requests run one at a time, in a queue. Uploads are limited by --max-upload-mb and
--max-upload-pixels (not the VLM's pixel budget, ground.py's --max-pixels: an upload beyond that
is grounded by windows). A missing model stops the start with one "error:" line and exit status 2.
Gradio's analytics are off.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported, anywhere

try:
    import rsvg_zeroov  # noqa: F401  (installed with pip -e)
except ImportError:  # run from a plain checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import ground  # noqa: E402 - the same model and setting flags
from rsvg_zeroov import cli  # noqa: E402

log = logging.getLogger("app")


def build_parser() -> argparse.ArgumentParser:
    from rsvg_zeroov.app.service import Limits

    limits = Limits()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.add_argument("--max-upload-mb", type=float, default=limits.max_bytes / (1 << 20),
                   help=f"largest upload in MB (default: {limits.max_bytes / (1 << 20):g})")
    p.add_argument("--max-upload-pixels", type=int, default=None, metavar="PIXELS",
                   help=f"largest upload in pixels, width x height (default: {limits.max_pixels}); not the "
                   "VLM's pixel budget (ground.py --max-pixels)")
    p.add_argument("--max-pixels", dest="old_max_pixels", type=int, default=None,
                   help=argparse.SUPPRESS)  # the former name of --max-upload-pixels, deprecated
    p.add_argument("--queue-size", type=int, default=16, help="requests that may wait their turn (default: 16)")
    p.add_argument("--workdir", default=None,
                   help="where the downloads and example scenes are written (default: a new temporary folder)")
    return ground.add_setting_flags(p)


def upload_limits(args: argparse.Namespace):
    """The :class:`~rsvg_zeroov.app.service.Limits` of the flags (the deprecated ``--max-pixels``,
    the former name of ``--max-upload-pixels``, is taken with a warning); UsageError otherwise."""
    from rsvg_zeroov.app.service import Limits
    from rsvg_zeroov.runner import UsageError

    pixels = args.max_upload_pixels
    if args.old_max_pixels is not None:
        if pixels is not None:
            raise UsageError("give --max-upload-pixels only (--max-pixels is its deprecated former name)")
        log.warning("app.py --max-pixels is deprecated: it is the upload limit, now --max-upload-pixels "
                    "(ground.py's --max-pixels is the VLM's pixel budget, which app.py does not set)")
        pixels = args.old_max_pixels
    pixels = Limits().max_pixels if pixels is None else pixels
    if args.max_upload_mb <= 0 or pixels <= 0 or args.queue_size < 1:
        raise UsageError("--max-upload-mb, --max-upload-pixels and --queue-size must be positive")
    return Limits(max_bytes=int(args.max_upload_mb * (1 << 20)), max_pixels=pixels)


def run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from rsvg_zeroov.app.examples import write_examples
    from rsvg_zeroov.app.service import GroundingService, Settings
    from rsvg_zeroov.pipeline import Grounder

    limits = upload_limits(args)
    config = ground.build_config(args)
    Settings.of(config).apply(config)  # the launch settings within the page's ranges, before any model loads
    grounder = Grounder(config).load(ground.FLAGS)  # a missing model stops here
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rsvg_zeroov_app_"))
    try:
        service = GroundingService(grounder, limits, workdir, tiny=args.tiny)
        from rsvg_zeroov.app.page import Launch, build_page, launch

        page = build_page(service, tiny=args.tiny, examples=write_examples(workdir / "examples"))
        if args.tiny:
            log.warning("tiny stand-in models: the page's maps and masks are noise")
        launch(page, Launch(host=args.host, port=args.port, share=args.share, max_bytes=limits.max_bytes,
                            queue=args.queue_size, allowed_paths=(str(workdir.resolve()),)))
    finally:
        if args.workdir is None:  # our temporary folder: the downloads and examples go with it
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv=None) -> int:
    return cli.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())

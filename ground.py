#!/usr/bin/env python
"""Ground one phrase in one image with all three stages in one process.

    python ground.py --image scene.jpg --text "the storage tank left of the road" [--out DIR]

Writes DIR/mask.png (uint8 0/255), DIR/box.json ({"box": [x1, y1, x2, y2] | null, ...}) and
DIR/overlay.png, and prints the box. A GeoTIFF input also gives DIR/mask.tif (same georeferencing)
and DIR/mask.geojson (the mask's polygons in the image's CRS).

--tiny runs the offline random-weight stand-ins (outputs are meaningless; for trying the tool
without the real weights) with the quick settings (--inversion ddim, --max-new-tokens 16, stop at
the answer's closing bracket) unless you set them. The real models keep the paper's settings.
The expression and the image are checked, and every model resolved, before anything is loaded:
a problem is one "error:" line and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import rsvg_zeroov  # noqa: F401  (installed with pip -e)
except ImportError:  # run from a plain checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from rsvg_zeroov import cli
from rsvg_zeroov.evolve.config import EvolveConfig
from rsvg_zeroov.focus.config import FocusConfig
from rsvg_zeroov.overview.config import OverviewConfig

FLAGS = {"vlm": "--vlm", "diffusion": "--sd", "refiner": "--sam-checkpoint"}
REFINE_FIELDS = ("refine_prompt", "refine_iters")  # stage-3 flags taken from EvolveConfig as they are


def _default(config_cls, name: str) -> str:
    """The library default of a field, for help texts (written once, in the config dataclass)."""
    value = getattr(config_cls(), name, None)
    return "the registry default" if value is None else str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", "--image_path", dest="image", required=True,
                   help="image file (JPEG/PNG/TIFF/GeoTIFF)")
    p.add_argument("--text", "--question", dest="text", required=True, help="the referring expression")
    p.add_argument("--out", default="grounded", help="output folder (default: grounded/)")
    return add_setting_flags(p)


def add_setting_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The model and setting flags that :func:`build_config` reads (app.py takes the same)."""
    from rsvg_zeroov.pipeline import QUICK

    quick = {name: value for _, name, value in QUICK}
    p.add_argument("--tiny", action="store_true",
                   help="the tiny offline random-weight models, with the quick settings unless given")
    p.add_argument("--vlm", "--model", dest="vlm", default=None,
                   help="VLM registry key (qwen2.5-vl-7b, qwen3-vl-8b, llava-1.5-7b, ...), hub id or folder "
                   "(default: qwen2.5-vl-7b)")
    p.add_argument("--sd", default=None, help="Stable Diffusion key, hub id or folder (default: sd-v1-4)")
    p.add_argument("--refiner", "--sam-type", dest="refiner", default=None, metavar="KEY",
                   help="stage 3 refiner: vit_h | vit_l | vit_b | tiny | box-fill | none (python -m "
                   f"rsvg_zeroov.models lists them; default: {_default(EvolveConfig, 'refiner')}; tiny with --tiny)")
    p.add_argument("--sam-checkpoint", "--refiner-checkpoint", dest="sam_checkpoint", default=None, metavar="FILE",
                   help="the refiner's weights (default: sam_checkpoint/<official file name>)")
    p.add_argument("--no-sam", action="store_true", help="no refinement: the thresholded evolved mask")
    cli.add_config_flags(p, EvolveConfig, skip=tuple(f.name for f, _ in cli.flagged_fields(EvolveConfig)
                                                     if f.name not in REFINE_FIELDS))
    p.add_argument("--fidelity", choices=("released", "corrected"), default=None,
                   help=f"every stage's fidelity (default: {_default(EvolveConfig, 'fidelity')})")
    p.add_argument("--inversion", choices=("nulltext", "ddim", "noise"), default=None,
                   help=f"stage 2 inversion (default: {_default(FocusConfig, 'inversion')}, the paper's; {quick['inversion']} with --tiny)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"DDIM steps of stage 2 (default: {_default(FocusConfig, 'num_steps')})")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"VLM answer length cap (default: {_default(OverviewConfig, 'max_new_tokens')}; {quick['max_new_tokens']} with --tiny)")
    p.add_argument("--stop-at-bracket", action=argparse.BooleanOptionalAction, default=None,
                   help=f"end the VLM answer at its closing ']' (default: {_default(OverviewConfig, 'stop_at_bracket')}; "
                   "on with --tiny)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    return p


def _given(args: argparse.Namespace) -> set[tuple[str, str]]:
    """The quick settings the user set on the command line: (config section, field)."""
    flags = {("focus", "inversion"): args.inversion, ("overview", "max_new_tokens"): args.max_new_tokens,
             ("overview", "stop_at_bracket"): args.stop_at_bracket}
    return {key for key, value in flags.items() if value is not None}


def build_config(args: argparse.Namespace):
    from rsvg_zeroov.pipeline import PipelineConfig, tiny_refiner

    overview = {"model": args.vlm, "max_new_tokens": args.max_new_tokens, "fidelity": args.fidelity,
                "stop_at_bracket": args.stop_at_bracket}
    config = PipelineConfig(
        overview=OverviewConfig().override(**{k: v for k, v in overview.items() if v is not None}),
        focus=FocusConfig().override(model=args.sd, inversion=args.inversion, num_steps=args.steps),
        evolve=EvolveConfig().override(sam=False if args.no_sam else None, refiner=args.refiner,
                                       refiner_checkpoint=args.sam_checkpoint, fidelity=args.fidelity,
                                       **{name: getattr(args, name) for name in REFINE_FIELDS}),
        device=args.device)
    if not args.tiny:
        return config
    config = config.replace(overview={"model": args.vlm or "tiny"}, focus={"model": args.sd or "tiny"},
                            evolve=tiny_refiner(config.evolve))
    return config.with_quick_settings(_given(args))


def read_input(path: str):
    """(what the stages get: the path, or the GeoTIFF's array; uint8 RGB (H, W, 3) to draw on;
    georeferencing or None). Checks the file before any model loads."""
    from rsvg_zeroov import geo
    from rsvg_zeroov.images import load_rgb
    from rsvg_zeroov.pipeline import image_input

    if Path(path).is_file() and geo.is_geotiff(path):
        rgb, georef = geo.read_geotiff(path)
        image_input(rgb)
        return rgb, rgb, georef
    image_input(path)
    return path, load_rgb(path), None


def run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from rsvg_zeroov import geo
    from rsvg_zeroov.images import check_expression
    from rsvg_zeroov.pipeline import Grounder
    from rsvg_zeroov.rundir import save_json, save_png
    from rsvg_zeroov.runner import jsonable
    from rsvg_zeroov.visualize.overlay import mask_overlay

    check_expression(args.text)
    image, rgb, georef = read_input(args.image)
    grounder = Grounder(build_config(args)).load(FLAGS)
    result = grounder.ground(image, args.text)
    out = Path(args.out)
    save_png(out / "mask.png", result.mask.astype("uint8") * 255)
    save_png(out / "overlay.png", mask_overlay(rgb, result.mask, result.box))
    record = {"image": str(args.image), "text": args.text, "box": result.box, "sam_score": result.sam_score,
              "mask_pixels": int(result.mask.sum()), "vlm_answer": result.answer,
              "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "models_are_tiny_stand_ins": args.tiny,
              "config": jsonable(grounder.config)}
    if georef is not None:
        geo.write_mask_geotiff(out / "mask.tif", result.mask, georef)
        geo.write_geojson(out / "mask.geojson", geo.mask_geojson(result.mask, georef, {"text": args.text}))
        record["georeferenced"] = ["mask.tif", "mask.geojson"]
    save_json(out / "box.json", record)
    print(json.dumps(result.box))
    print(f"wrote {out}/mask.png, box.json, overlay.png" + (", mask.tif, mask.geojson" if georef else ""),
          file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return cli.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())

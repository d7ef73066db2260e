"""python -m rsvg_zeroov.tiny [--out DIR] [--all | --only KEY ...]: write the tiny offline models.

Random weights: stand-ins for trying the code paths, not the real models. Without ``--all`` or
``--only`` the three stand-ins of the paper's models are built (``qwen/``, ``sd/``,
``sam/sam_tiny.pth``); ``--all`` adds every other backend's stand-in (``python -m
rsvg_zeroov.models`` lists them: keys starting with ``tiny``).
"""
import argparse
import logging
import os

from . import build_all, stand_in_entries

log = logging.getLogger("rsvg_zeroov.tiny")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m rsvg_zeroov.tiny", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="folder (default: $RSVG_ZEROOV_TINY_DIR or outputs/tiny_models)")
    p.add_argument("--all", action="store_true", help="also build every other backend's stand-in")
    p.add_argument("--only", action="append", metavar="KEY", default=[],
                   help="build only this registry key's stand-in (repeatable)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.out:
        os.environ["RSVG_ZEROOV_TINY_DIR"] = args.out  # the registries resolve stand-ins under it
    from ..models.base import TINY_SUBDIRS, ensure_tiny_entry, tiny_root

    root = tiny_root()
    entries = stand_in_entries()
    known = {e.key for e in entries}
    unknown = [k for k in args.only if k not in known and k != "tiny"]
    if unknown:
        p.error(f"no tiny stand-in registered as {', '.join(unknown)}; known: tiny, {', '.join(sorted(known))}")
    if not args.only or "tiny" in args.only:
        if not all((root / sub).exists() for sub in TINY_SUBDIRS.values()):
            build_all(root)
        log.info("tiny random-weight models in %s (qwen/, sd/, sam/sam_tiny.pth) - stand-ins, not the real weights", root)
    for e in entries:
        if args.all or e.key in args.only:
            log.info("%s stand-in %r in %s", e.role, e.key, ensure_tiny_entry(e))


if __name__ == "__main__":
    main()

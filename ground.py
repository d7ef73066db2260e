#!/usr/bin/env python
"""Ground phrases in one image or scene with all three stages in one process.

    python ground.py --image scene.jpg --text "the storage tank left of the road" [--out DIR]

Writes DIR/mask.png (uint8 0/255), DIR/box.json ({"box": [x1, y1, x2, y2] | null, ...}) and
DIR/overlay.png, and prints the box. A GeoTIFF input also gives DIR/mask.tif (the input's grid, CRS
and transform) and the mask's polygons, DIR/mask.geojson (RFC 7946, WGS84; --vector-crs native for
the image's CRS) and/or mask.gpkg / mask.shp (--vector). A raster beyond the VLM's pixel budget
(16-bit, float, many bands, nodata: --bands, --stretch) is grounded coarse to fine, read by
windows: stage 1 on the whole scene reduced to the budget, then the pipeline on the focus window
at native resolution (docs/scenes.md); its mask is DIR/mask.tif. Several phrases (--text
repeated, or --texts FILE with one per line) share the reads and the refiner's embedding and get
DIR/phrase-01/, DIR/phrase-02/, ...

--tiny runs the offline random-weight stand-ins (outputs are meaningless; for trying the tool
without the real weights) with the quick settings (--inversion ddim, --max-new-tokens 16, stop at
the answer's closing bracket) unless you set them. The real models keep the paper's settings.
The expressions and the image are checked, and every model resolved, before anything is loaded:
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
    p.add_argument("--text", "--question", dest="text", action="append", default=None,
                   help="the referring expression (repeat for several phrases)")
    p.add_argument("--texts", default=None, metavar="FILE", help="a text file with one expression per line")
    p.add_argument("--out", default="grounded", help="output folder (default: grounded/)")
    p.add_argument("--max-pixels", dest="vlm_max_pixels", type=int, default=None, metavar="PIXELS",
                   help="the VLM's pixel budget (qwen_vl_utils max_pixels; default its own, 16384 cells)")
    add_setting_flags(p)
    scene = p.add_argument_group("rasters and scenes (docs/scenes.md)")
    from rsvg_zeroov.raster import RasterOptions
    from rsvg_zeroov.scene import SceneOptions
    from rsvg_zeroov.vectors import VectorOptions

    for options in (RasterOptions, SceneOptions, VectorOptions):
        cli.add_config_flags(scene, options)
    return p


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
                "stop_at_bracket": args.stop_at_bracket, "max_pixels": getattr(args, "vlm_max_pixels", None)}
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


def read_texts(args: argparse.Namespace) -> list[str]:
    """The phrases of --text (repeated) and --texts FILE, each checked; ValueError when none."""
    from rsvg_zeroov.images import check_expression

    texts = list(args.text or [])
    if args.texts:
        path = Path(args.texts)
        if not path.is_file():
            raise ValueError(f"--texts {path}: file not found")
        texts += [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        if not texts:
            raise ValueError(f"--texts {path}: no phrase in the file (one expression per line)")
    if not texts:
        check_expression(None)
    return [check_expression(t) for t in texts]


def run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from rsvg_zeroov.pipeline import Grounder
    from rsvg_zeroov.raster import RasterOptions
    from rsvg_zeroov.runner import jsonable
    from rsvg_zeroov.scene import SceneOptions, check_scene, ground_scene, write_scene_outputs
    from rsvg_zeroov.vectors import VectorOptions

    texts = read_texts(args)
    options = {cls: cli.config_from_args(cls, args) for cls in (RasterOptions, SceneOptions, VectorOptions)}
    check_scene(args.image, options[RasterOptions])  # before any model loads
    grounder = Grounder(build_config(args)).load(FLAGS)
    results = ground_scene(grounder, args.image, texts, options[SceneOptions], options[RasterOptions])
    out = Path(args.out)
    extra = {"models_are_tiny_stand_ins": args.tiny, "config": jsonable(grounder.config),
             "scene_options": jsonable(options[SceneOptions]), "raster_options": jsonable(options[RasterOptions]),
             "vector_options": jsonable(options[VectorOptions])}
    folders = [out] if len(results) == 1 else [out / f"phrase-{i:02d}" for i in range(1, len(results) + 1)]
    index = []
    for folder, result in zip(folders, results):
        record = write_scene_outputs(result, folder, options[VectorOptions], extra)
        print(json.dumps(result.box))
        print(f"wrote {folder}/{', '.join(record['outputs'])}", file=sys.stderr)
        index.append({"text": result.text, "folder": folder.name, "box": result.box})
    if len(results) > 1:
        from rsvg_zeroov.rundir import save_json

        save_json(out / "phrases.json", index)
    return 0


def main(argv=None) -> int:
    return cli.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())

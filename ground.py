#!/usr/bin/env python
"""Ground one phrase in one image with all three stages in one process.

    python ground.py --image scene.jpg --text "the storage tank left of the road" [--out DIR]

Writes DIR/mask.png (uint8 0/255), DIR/box.json ({"box": [x1, y1, x2, y2] | null, ...}) and
DIR/overlay.png, and prints the box. A GeoTIFF input also gives DIR/mask.tif (same georeferencing)
and DIR/mask.geojson (the mask's polygons in the image's CRS). ``--tiny`` uses the offline
random-weight stand-ins (outputs are meaningless; for trying the tool without the real weights).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, help="image file (JPEG/PNG/TIFF/GeoTIFF)")
    p.add_argument("--text", required=True, help="the referring expression")
    p.add_argument("--out", default="grounded", help="output folder (default: grounded/)")
    p.add_argument("--tiny", action="store_true", help="use the tiny offline random-weight models")
    p.add_argument("--vlm", default=None, help="Qwen2.5-VL key, hub id or folder (default qwen2.5-vl-7b)")
    p.add_argument("--sd", default=None, help="Stable Diffusion key, hub id or folder (default sd-v1-4)")
    p.add_argument("--sam-checkpoint", default=None, help="SAM .pth (default sam_checkpoint/<official name>)")
    p.add_argument("--sam-type", default=None, help="vit_h (default) | vit_l | vit_b | tiny")
    p.add_argument("--no-sam", action="store_true", help="skip SAM refinement")
    p.add_argument("--fidelity", choices=("released", "corrected"), default=None)
    p.add_argument("--inversion", choices=("nulltext", "ddim", "noise"), default=None,
                   help="stage 2 inversion (default nulltext, the paper's)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps of stage 2 (default 20)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="VLM answer length cap (default 1024)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    return p.parse_args(argv)


def build_config(args):
    from rsvg_zeroov.evolve.config import EvolveConfig
    from rsvg_zeroov.focus.config import FocusConfig
    from rsvg_zeroov.overview.config import OverviewConfig
    from rsvg_zeroov.pipeline import PipelineConfig

    vlm, sd, sam_type = args.vlm, args.sd, args.sam_type
    if args.tiny:
        vlm, sd, sam_type = vlm or "tiny", sd or "tiny", sam_type or "tiny"
    return PipelineConfig(
        overview=OverviewConfig().override(model=vlm, max_new_tokens=args.max_new_tokens),
        focus=FocusConfig().override(model=sd, inversion=args.inversion, num_steps=args.steps),
        evolve=EvolveConfig().override(sam=False if args.no_sam else None, sam_type=sam_type,
                                       sam_checkpoint=args.sam_checkpoint, fidelity=args.fidelity),
        device=args.device)


def overlay(rgb: np.ndarray, mask: np.ndarray, box) -> np.ndarray:
    """The image with the mask tinted red and the box drawn in yellow (uint8 (H, W, 3))."""
    out = rgb.astype(np.float32)
    out[mask] = 0.5 * out[mask] + 0.5 * np.array([255, 0, 0], np.float32)
    out = out.astype(np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        t = max(1, min(rgb.shape[:2]) // 200)
        yellow = np.array([255, 255, 0], np.uint8)
        out[y1:y1 + t, x1:x2 + 1] = yellow
        out[max(y2 - t + 1, 0):y2 + 1, x1:x2 + 1] = yellow
        out[y1:y2 + 1, x1:x1 + t] = yellow
        out[y1:y2 + 1, max(x2 - t + 1, 0):x2 + 1] = yellow
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from rsvg_zeroov import geo
    from rsvg_zeroov.images import ImageError, load_rgb
    from rsvg_zeroov.models.registry import ModelNotFound
    from rsvg_zeroov.pipeline import Grounder
    from rsvg_zeroov.rundir import save_json, save_png

    if not args.text.strip():
        print("error: --text is empty; give the expression to ground", file=sys.stderr)
        return 2
    try:
        georef = None
        if geo.is_geotiff(args.image):
            rgb, georef = geo.read_geotiff(args.image)
        else:
            rgb = load_rgb(args.image)
        grounder = Grounder(build_config(args)).load()
    except (ImageError, ModelNotFound, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = grounder.ground(rgb, args.text)
    out = Path(args.out)
    save_png(out / "mask.png", result.mask.astype(np.uint8) * 255)
    save_png(out / "overlay.png", overlay(rgb, result.mask, result.box))
    record = {"image": str(args.image), "text": args.text, "box": result.box, "sam_score": result.sam_score,
              "mask_pixels": int(result.mask.sum()), "vlm_answer": result.answer,
              "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "models_are_tiny_stand_ins": args.tiny}
    if georef is not None:
        geo.write_mask_geotiff(out / "mask.tif", result.mask, georef)
        geo.write_geojson(out / "mask.geojson", geo.mask_geojson(result.mask, georef, {"text": args.text}))
        record["georeferenced"] = ["mask.tif", "mask.geojson"]
    save_json(out / "box.json", record)
    print(json.dumps(result.box))
    print(f"wrote {out}/mask.png, box.json, overlay.png" + (", mask.tif, mask.geojson" if georef else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reading and validating a run's predictions: ``RUN/predictions.jsonl`` and ``RUN/masks/<id>.png``.

Each line of predictions.jsonl (docs/run-directory.md)::

    {"sample_id": str, "box": [x1, y1, x2, y2] | null, "mask": "masks/<id>.png" | null, "sam_score": float | null}

``box`` is XYXY pixels of the original image; ``mask`` is relative to the run directory and names a
uint8 (H, W) PNG at the original image size, foreground = value > 0. Every problem is an
:class:`EvalInputError` naming the file, the line and the fix.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

import numpy as np

from ..maskpng import PNG_SIGNATURE
from ..rundir import RunDir


class EvalInputError(ValueError):
    """A run directory or a prediction that cannot be evaluated. The message names the file."""


@dataclass(frozen=True)
class Prediction:
    """One sample's prediction. box: XYXY pixels or None; mask_path: absolute PNG path or None."""

    sample_id: str
    box: tuple[float, float, float, float] | None
    mask_path: Path | None


def _parse_box(value, where: str):
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise EvalInputError(f"{where}: 'box' must be null or [x1, y1, x2, y2] finite numbers, got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    if x2 < x1 or y2 < y1:
        raise EvalInputError(f"{where}: 'box' {value!r} has x2 < x1 or y2 < y1 (expected XYXY)")
    return x1, y1, x2, y2


def _parse_mask(value, run: RunDir, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        raise EvalInputError(f"{where}: 'mask' must be null or a path relative to the run directory "
                             f"(e.g. masks/<id>.png), got {value!r}")
    path = run.root / value
    if not path.is_file():
        raise EvalInputError(f"{where}: mask file {path} does not exist (rerun rs_evolve.py on this run)")
    return path


def _parse_line(line: str, run: RunDir, where: str) -> Prediction:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise EvalInputError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise EvalInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    sid = obj.get("sample_id")
    if not isinstance(sid, str) or not sid:
        raise EvalInputError(f"{where}: 'sample_id' must be a non-empty string, got {sid!r}")
    score = obj.get("sam_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        raise EvalInputError(f"{where}: 'sam_score' must be a number or null, got {score!r}")
    return Prediction(sid, _parse_box(obj.get("box"), where), _parse_mask(obj.get("mask"), run, where))


def read_predictions(run: RunDir | str | Path, known_ids: Collection[str]) -> dict[str, Prediction]:
    """{sample_id: Prediction} from ``RUN/predictions.jsonl``, every line validated.

    known_ids: every sample id of the data set split. An id outside it, or a repeated id, raises
    :class:`EvalInputError` naming the file, the line and the id.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    path = run.predictions
    if not path.is_file():
        raise EvalInputError(f"{path}: no predictions file; run rs_evolve.py with --out {run.root} first "
                             "(or point --out at the run directory that holds predictions.jsonl)")
    known = known_ids if isinstance(known_ids, (set, frozenset, dict)) else set(known_ids)
    out: dict[str, Prediction] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        pred = _parse_line(line, run, where)
        if pred.sample_id not in known:
            raise EvalInputError(f"{where}: prediction for unknown sample id {pred.sample_id!r}: it is not in "
                                 "this data set split (wrong --dataset/--split/--root for this run?)")
        if pred.sample_id in out:
            raise EvalInputError(f"{where}: sample id {pred.sample_id!r} is predicted twice")
        out[pred.sample_id] = pred
    return out


# ------------------------------------------------------------------------------------ mask files
def _is_plain_gray8_png(data: bytes) -> bool:
    """A PNG with 8-bit grayscale pixels and no transparency chunk (cv2 and PIL decode it alike)."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return False
    if data[24] != 8 or data[25] != 0:  # bit depth 8, colour type 0 (grayscale)
        return False
    pos = 8
    while pos + 8 <= len(data):  # ancillary chunks before the first IDAT: refuse tRNS
        length, ctype = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if ctype == b"IDAT":
            return True
        if ctype == b"tRNS":
            return False
        pos += 12 + length
    return False


def read_mask_png(path: str | Path) -> np.ndarray:
    """Decode a mask image as an integer (H, W) array (channels of a colour image max-reduced).

    Plain 8-bit grayscale PNGs (what the stages write) take the fast OpenCV decoder; anything else
    goes through PIL. Raises :class:`EvalInputError` naming the file when it cannot be read.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot read mask ({exc})") from None
    arr = decode_gray8_png(data)
    return arr if arr is not None else _read_with_pil(path)


def decode_gray8_png(data: bytes) -> np.ndarray | None:
    """uint8 (H, W) from the bytes of a plain 8-bit grayscale PNG (OpenCV), else None."""
    if not _is_plain_gray8_png(data):
        return None
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return arr if arr is not None and arr.ndim == 2 else None


def _read_with_pil(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise EvalInputError(f"{path}: unreadable mask image ({exc}); rewrite it as a uint8 0/255 PNG") from None
    return arr.max(axis=2) if arr.ndim == 3 else arr


def load_pred_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Predicted mask as bool (H, W), checked against the image size ``size`` = (H, W)."""
    arr = read_mask_png(path)
    if arr.shape != tuple(size):
        raise EvalInputError(f"{path}: predicted mask is {arr.shape[1]}x{arr.shape[0]}, the image is "
                             f"{size[1]}x{size[0]}; masks must be saved at the original image size")
    return arr > 0

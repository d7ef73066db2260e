"""The one-image result as a picture: the image with the mask tinted and the box outlined."""
from __future__ import annotations

import numpy as np

MASK_RED = np.array([255, 0, 0], np.float32)
BOX_YELLOW = np.array([255, 255, 0], np.uint8)


def mask_overlay(rgb: np.ndarray, mask: np.ndarray, box) -> np.ndarray:
    """uint8 (H, W, 3): ``rgb`` with ``mask`` (bool (H, W)) tinted half-way to red and the inclusive
    XYXY pixel ``box`` (or None) drawn in yellow, ~1/200 of the shorter side thick."""
    out = rgb.astype(np.float32)
    out[mask] = 0.5 * out[mask] + 0.5 * MASK_RED
    out = out.astype(np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        t = max(1, min(rgb.shape[:2]) // 200)
        out[y1:y1 + t, x1:x2 + 1] = BOX_YELLOW
        out[max(y2 - t + 1, 0):y2 + 1, x1:x2 + 1] = BOX_YELLOW
        out[y1:y2 + 1, x1:x1 + t] = BOX_YELLOW
        out[y1:y2 + 1, max(x2 - t + 1, 0):x2 + 1] = BOX_YELLOW
    return out

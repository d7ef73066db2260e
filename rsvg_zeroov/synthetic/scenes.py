"""Seeded synthetic remote-sensing-like scenes: coloured objects on textured ground.

A scene is a ``width x height`` image divided into a 3x3 grid of cells; each object sits inside its
own cell (objects never overlap) and has a unique (colour, kind) pair within the scene, so the
expression ``"the <colour> <kind> <position>"`` (e.g. ``"the red circle at the top left"``) refers
to exactly one object. Kinds: square, circle, triangle, storage tank (a disc with rings),
building (a rectangle with a roof ridge).

Arrays: ``image`` uint8 RGB (H, W, 3); ``mask`` bool (H, W); ``box`` XYXY float pixels with
inclusive pixel indices (x2 = last foreground column, y2 = last foreground row). The same
(seed, index, size) always gives the same scene.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS = {
    "red": (215, 40, 35), "blue": (40, 70, 220), "yellow": (235, 215, 40),
    "white": (240, 240, 240), "orange": (245, 140, 30), "purple": (150, 50, 190),
}
KINDS = ("square", "circle", "triangle", "storage tank", "building")
GROUNDS = ((88, 102, 62), (122, 98, 72), (104, 104, 98), (70, 90, 80))
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
MIN_SIZE = 24


@dataclass(frozen=True)
class SceneObject:
    """One referable object of a scene."""

    mask: np.ndarray  # bool (H, W)
    box: tuple[float, float, float, float]  # XYXY, inclusive pixel indices
    colour: str
    kind: str  # the category
    position: str  # e.g. "at the top left"
    cell: tuple[int, int]  # (row, col) in the 3x3 grid

    @property
    def category(self) -> str:
        return self.kind

    @property
    def expression(self) -> str:
        return f"the {self.colour} {self.kind} {self.position}"


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 RGB (H, W, 3)
    objects: tuple[SceneObject, ...]


def position_phrase(row: int, col: int) -> str:
    """Grid cell -> phrase: (0, 0) "at the top left", (1, 1) "in the center", (1, 0) "on the left"."""
    if (row, col) == (1, 1):
        return "in the center"
    if row == 1:
        return f"on the {COLS[col]}"
    if col == 1:
        return f"at the {ROWS[row]}"
    return f"at the {ROWS[row]} {COLS[col]}"


def make_scene(seed: int, index: int, width: int, height: int, max_objects: int = 3) -> Scene:
    """Scene ``index`` of the stream for ``seed``: 1..max_objects objects on textured ground."""
    if width < MIN_SIZE or height < MIN_SIZE:
        raise ValueError(f"synthetic scenes need width and height >= {MIN_SIZE}, got {width}x{height}")
    rng = np.random.default_rng([seed, index])
    image = _ground(rng, width, height)
    n = int(rng.integers(1, max_objects + 1))
    cells = rng.choice(9, size=n, replace=False)
    pairs = rng.choice(len(COLOURS) * len(KINDS), size=n, replace=False)
    objects = []
    for cell, pair in zip(cells, pairs):
        colour = list(COLOURS)[int(pair) // len(KINDS)]
        kind = KINDS[int(pair) % len(KINDS)]
        row, col = divmod(int(cell), 3)
        mask = _draw(rng, image, kind, COLOURS[colour], row, col)
        ys, xs = np.nonzero(mask)
        box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        objects.append(SceneObject(mask, box, colour, kind, position_phrase(row, col), (row, col)))
    return Scene(image, tuple(objects))


def _ground(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Textured ground: a base colour, blocky 'fields' of slightly different tone, pixel noise."""
    base = np.array(GROUNDS[int(rng.integers(len(GROUNDS)))], dtype=np.float32)
    block = max(width, height) // 6 + 1
    fields = rng.normal(0.0, 10.0, size=(height // block + 1, width // block + 1, 3))
    fields = np.repeat(np.repeat(fields, block, axis=0), block, axis=1)[:height, :width]
    noise = rng.normal(0.0, 6.0, size=(height, width, 1))
    return np.clip(base + fields + noise, 0, 255).astype(np.uint8)


def _draw(rng: np.random.Generator, image: np.ndarray, kind: str, colour: tuple, row: int, col: int) -> np.ndarray:
    """Draw one object inside grid cell (row, col) of ``image`` (in place); return its bool mask."""
    h, w = image.shape[:2]
    x0, x1 = col * w // 3, (col + 1) * w // 3
    y0, y1 = row * h // 3, (row + 1) * h // 3
    cell = min(x1 - x0, y1 - y0)
    size = float(rng.uniform(0.45, 0.8)) * cell
    slack = (cell - size) / 2 * 0.8
    cx = (x0 + x1) / 2 + float(rng.uniform(-slack, slack))
    cy = (y0 + y1) / 2 + float(rng.uniform(-slack, slack))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    dx, dy, r = xx - cx, yy - cy, size / 2
    if kind == "square":
        mask = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    elif kind == "building":
        wide = bool(rng.integers(2))
        hx, hy = (r, r * 0.6) if wide else (r * 0.6, r)
        mask = (np.abs(dx) <= hx) & (np.abs(dy) <= hy)
    elif kind == "triangle":
        t = (dy + r) / (2 * r)  # 0 at the apex, 1 at the base
        mask = (t >= 0) & (t <= 1) & (np.abs(dx) <= t * r)
    else:  # circle, storage tank
        mask = dx * dx + dy * dy <= r * r
    if not mask.any():  # a tiny image: keep at least the centre pixel
        mask[min(int(cy), h - 1), min(int(cx), w - 1)] = True
    shade = rng.normal(0.0, 5.0, size=(int(mask.sum()), 1))
    image[mask] = np.clip(np.array(colour, np.float32) + shade, 0, 255).astype(np.uint8)
    _details(image, mask, kind, dx, dy, r)
    return mask


def _details(image: np.ndarray, mask: np.ndarray, kind: str, dx: np.ndarray, dy: np.ndarray, r: float) -> None:
    """Texture inside the mask only (the mask itself is unchanged): tank rings, a roof ridge."""
    if kind == "storage tank":
        d = np.sqrt(dx * dx + dy * dy)
        ring = mask & (np.abs(d - r * 0.7) < max(r * 0.08, 0.6))
        image[ring] = (image[ring] * 0.6).astype(np.uint8)
    elif kind == "building":
        ridge = mask & (np.abs(dy if np.ptp(dx[mask]) >= np.ptp(dy[mask]) else dx) < max(r * 0.06, 0.5))
        image[ridge] = (image[ridge] * 0.7).astype(np.uint8)

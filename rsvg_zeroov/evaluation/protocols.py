"""Evaluation protocols: how each benchmark turns intersections and unions into hits (docs/datasets.md).

A :class:`Protocol` is data, not code: the hit operator, the box-area convention, the empty-union
rule, the mask resolution and the empty-prediction rule of one benchmark's official evaluation.
Every protocol reports the full threshold sweep of ``metrics.json`` (Pr@0.3 ... Pr@0.9);
``thresholds`` lists the ones the benchmark itself publishes (shown first in reports).

Box conventions (boxes are XYXY; a predicted box is the inclusive pixel tight box of the mask):

- ``"inclusive"``: a box covers ``(x2 - x1 + 1) * (y2 - y1 + 1)`` pixels; overlaps add 1 likewise.
- ``"continuous"``: area ``(x2 - x1) * (y2 - y1)``; no +1.
- ``"grid"``: both boxes are first mapped to the ``0..box_grid`` grid (``x * box_grid / width``,
  ``y * box_grid / height``, rounded half-up to integers, as a VRSBench answer ``{<x1><y1><x2><y2>}``
  is written) and compared there with the inclusive +1 convention.
"""
from __future__ import annotations

from dataclasses import dataclass

# The threshold sweep every metrics.json carries (docs/run-directory.md), as fractions of 1.
SWEEP = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
BOX_CONVENTIONS = ("inclusive", "continuous", "grid")


def pr_key(t: float) -> str:
    """``0.5 -> "Pr@0.5"``: the metrics.json key of a threshold."""
    return f"Pr@{t:g}"


@dataclass(frozen=True)
class Protocol:
    """One benchmark's scoring rules.

    name: CLI name (``--protocol``).
    used_by: whose official evaluation it reproduces.
    thresholds: the thresholds the benchmark publishes (fractions of 1).
    hit_inclusive: True -> a hit is ``IoU >= t``; False -> ``IoU > t``.
    box_convention: ``"inclusive"`` | ``"continuous"`` | ``"grid"`` (see module doc).
    box_grid: grid size for ``"grid"`` (VRSBench: 100), else None.
    union_eps: IoU = I / (U + union_eps); when U + union_eps == 0 the IoU is 0 (the empty-union rule).
    mask_size: (H, W) both masks are resized to with nearest neighbour before counting; None = native.
    empty_pred_box: XYXY box an empty predicted mask is given for RSREC (zeroov: the single origin
        pixel (0, 0, 0, 0)); None -> an empty prediction scores box IoU 0.
    """

    name: str
    used_by: str
    thresholds: tuple[float, ...]
    hit_inclusive: bool
    box_convention: str
    box_grid: int | None = None
    union_eps: float = 0.0
    mask_size: tuple[int, int] | None = None
    empty_pred_box: tuple[float, float, float, float] | None = None

    def __post_init__(self):
        assert self.box_convention in BOX_CONVENTIONS, self.box_convention
        assert (self.box_convention == "grid") == (self.box_grid is not None), self
        assert all(0.0 < t < 1.0 for t in self.thresholds), self.thresholds

    def hit(self, iou, t: float):
        """Whether an IoU (or, element-wise, an array of IoUs) counts as correct at threshold ``t``."""
        return iou >= t if self.hit_inclusive else iou > t

    @property
    def hit_symbol(self) -> str:
        return ">=" if self.hit_inclusive else ">"

    def describe(self) -> str:
        """One line for reports: the rules that make numbers comparable (or not)."""
        box = {"inclusive": "inclusive +1 pixel", "continuous": "continuous, no +1",
               "grid": f"+1 on the 0-{self.box_grid} grid"}[self.box_convention]
        res = "native" if self.mask_size is None else f"{self.mask_size[1]}x{self.mask_size[0]} nearest"
        empty = ("box (0,0,0,0)" if self.empty_pred_box is not None else "IoU 0")
        ts = ", ".join(f"{t:g}" for t in self.thresholds)
        return (f"protocol {self.name} ({self.used_by}): hit IoU {self.hit_symbol} t, published t = {ts}; "
                f"box area {box}; masks {res}; empty prediction {empty}")


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("zeroov", "the released RSVG-ZeroOV evaluation", (0.3, 0.5, 0.7), hit_inclusive=False,
                 box_convention="inclusive", union_eps=1e-6, empty_pred_box=(0.0, 0.0, 0.0, 0.0)),
        # RMSIN scores masks at its 480x480 input resolution. It defines no box score: RSREC uses
        # the native-resolution pixel boxes with the inclusive convention.
        Protocol("rmsin", "RRSIS-D official (RMSIN)", (0.5, 0.6, 0.7, 0.8, 0.9), hit_inclusive=True,
                 box_convention="inclusive", mask_size=(480, 480)),
        Protocol("mgvlf", "DIOR-RSVG official (MGVLF)", (0.5, 0.6, 0.7, 0.8, 0.9), hit_inclusive=False,
                 box_convention="continuous"),
        Protocol("lpva", "OPT-RSVG official (LPVA)", (0.5, 0.6, 0.7, 0.8, 0.9), hit_inclusive=True,
                 box_convention="continuous"),
        Protocol("vrsbench", "VRSBench official", (0.5, 0.7), hit_inclusive=True,
                 box_convention="grid", box_grid=100),
    )
}
DEFAULT_PROTOCOL = "zeroov"


def get_protocol(name: str | Protocol | None = None) -> Protocol:
    """The protocol called ``name`` (default ``zeroov``); a Protocol passes through."""
    if isinstance(name, Protocol):
        return name
    name = name or DEFAULT_PROTOCOL
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]

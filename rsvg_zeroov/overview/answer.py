"""The VLM's generated answer as a box in original-image pixels (the VLM-box baselines).

Stage 1 asks for ``[x1, y1, x2, y2]``; each VLM family answers in its own coordinates
(its adapter's ``box_convention``):

- ``"resized-pixels"``: absolute pixels of the image the vision tower saw (``resized_size`` in
  the sidecar; Qwen2.5-VL);
- ``"grid-1000"``: a 0-1000 grid over the image (Qwen3-VL);
- ``"fraction"``: 0-1 fractions of the image (LLaVA family);
- ``"grid-100"``: a 0-100 grid, in GeoChat's own box form ``{<x1><y1><x2><y2>|<angle>}``. The form
  says its convention, so such an answer is read on the 0-100 grid whatever model wrote it (a GeoChat
  conversion loads as a LLaVA-family model); the rotation angle is not used (an XYXY box has none).

:func:`parse_box` reads the first four numbers of the first bracketed group (:func:`parse_answer`
also GeoChat's form, with its convention); :func:`to_original`
maps them to original pixels (continuous XYXY, clipped to the image, corners sorted);
:func:`box_from_sidecar` does both for a ``RUN/overview/<id>.json`` with the convention of the
model that sidecar names, so runs written by earlier versions (Qwen2.5-VL only) work too.
An answer without such a group gives None: an empty prediction.
"""
from __future__ import annotations

import re
from typing import Sequence

CONVENTIONS = ("resized-pixels", "grid-1000", "fraction", "grid-100")
DEFAULT_CONVENTION = "resized-pixels"  # Qwen2.5-VL, the only VLM of earlier versions

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_GROUP = re.compile(r"[\[(]\s*(" + _NUMBER + r")\s*,\s*(" + _NUMBER + r")\s*,\s*(" + _NUMBER + r")\s*,\s*("
                    + _NUMBER + r")\s*[\])]")


_GEOCHAT = re.compile(r"\{\s*<\s*(" + _NUMBER + r")\s*>\s*<\s*(" + _NUMBER + r")\s*>\s*<\s*(" + _NUMBER
                      + r")\s*>\s*<\s*(" + _NUMBER + r")\s*>")


def parse_box(answer: str) -> tuple[float, float, float, float] | None:
    """The first ``[a, b, c, d]`` (or ``(a, b, c, d)``) of ``answer`` as floats, else None."""
    m = _GROUP.search(answer or "")
    return None if m is None else tuple(float(v) for v in m.groups())


def parse_answer(answer: str, convention: str) -> tuple[tuple[float, float, float, float] | None, str]:
    """``(box, its convention)``: :func:`parse_box` in the model's ``convention``, else the first
    GeoChat ``{<x1><y1><x2><y2>...}`` on the 0-100 grid (``"grid-100"``), else ``(None, convention)``."""
    box = parse_box(answer)
    if box is not None:
        return box, convention
    m = _GEOCHAT.search(answer or "")
    return (None, convention) if m is None else (tuple(float(v) for v in m.groups()), "grid-100")


def to_original(box: Sequence[float], convention: str, image_hw: Sequence[int],
                resized_hw: Sequence[int] | None = None) -> list[float] | None:
    """``box`` in ``convention`` -> ``[x1, y1, x2, y2]`` in original pixels, or None when the box is
    degenerate once clipped to the image (zero width or height).

    image_hw: (H, W) of the original image; resized_hw: (H', W') the vision tower saw (needed
    for ``"resized-pixels"``)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown box convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    h, w = (float(v) for v in image_hw)
    if convention == "resized-pixels":
        if resized_hw is None:
            raise ValueError("the resized-pixels convention needs the resized image size (H', W')")
        sx, sy = w / float(resized_hw[1]), h / float(resized_hw[0])
    elif convention == "grid-1000":
        sx, sy = w / 1000.0, h / 1000.0
    elif convention == "grid-100":
        sx, sy = w / 100.0, h / 100.0
    else:
        sx, sy = w, h
    x1, y1, x2, y2 = box
    xs = sorted((min(max(x1 * sx, 0.0), w), min(max(x2 * sx, 0.0), w)))
    ys = sorted((min(max(y1 * sy, 0.0), h), min(max(y2 * sy, 0.0), h)))
    if xs[0] == xs[1] or ys[0] == ys[1]:
        return None
    return [xs[0], ys[0], xs[1], ys[1]]


def convention_of(meta: dict) -> str:
    """The box convention of the model a sidecar names: its ``box_convention`` when recorded, else
    the adapter of its ``model_key`` (or of its model folder's ``config.json``), else Qwen2.5-VL's."""
    if meta.get("box_convention") in CONVENTIONS:
        return meta["box_convention"]
    from ..models.base import ModelRef
    from ..models.vlm import VLMS, adapter_class

    try:
        if meta.get("model_key") and VLMS.entry(meta["model_key"]) is not None:
            cls = VLMS.adapter_class(meta["model_key"])
        elif meta.get("model"):
            cls = adapter_class(ModelRef("vlm", str(meta["model"]), None))
        else:
            return DEFAULT_CONVENTION
    except (KeyError, ValueError):
        return DEFAULT_CONVENTION
    return getattr(cls, "box_convention", DEFAULT_CONVENTION)


def box_from_sidecar(meta: dict) -> list[float] | None:
    """The sidecar's answer as an original-pixel ``[x1, y1, x2, y2]``, or None (unparseable)."""
    if isinstance(meta.get("answer_box"), list):  # cached by stage 1
        return [float(v) for v in meta["answer_box"]]
    box, convention = parse_answer(meta.get("answer", ""), convention_of(meta))
    if box is None:
        return None
    resized = meta.get("resized_size")  # the sidecar's sizes are [W, H]
    return to_original(box, convention, meta["image_size"][::-1], None if resized is None else resized[::-1])

"""Bilinear resizing as torch's ``interpolate(mode="bilinear", align_corners=False)`` computes it in
float32, the operation the released stage 3 uses (docs/method.md, "Arithmetic order that matters").

:func:`resize_bilinear` is the torch call itself. The stage-3 mask ``upsampled A_E > alpha`` at
(H, W) comes from :func:`upsample_window` + :func:`binarise`, pixel for pixel the mask of that
call, without computing most pixels:

- For outputs with H + W > 128, torch's CPU kernel computes each pixel as
  ``v = t0 * wy0 + t1 * wy1`` with ``t = a[row, x0] * wx0 + a[row, x1] * wx1``. The weights of
  each axis are ``w1 = clamp(src - floor(src), 0, 1)``, ``w0 = 1 - w1`` with
  ``src = max(scale * (i + 0.5) - 0.5, 0)`` and ``scale = n_in / n_out`` in float32. Each
  ``p * q + r`` is fused into one rounding or not, depending on how torch was built.
  :func:`emulation` finds out once per process which of the two the installed torch does, by
  comparing both with torch bit for bit on probe maps. If neither matches, every resize is
  the torch call (slower, never different).
- A "band" is a run of output rows that read the same pair of input rows. Within a band, every
  pixel of a non-negative map lies between the band's two rows ``t0(x)`` and ``t1(x)`` (the
  weights sum to one), up to rounding. A band's column is decided at once when both rows lie
  clearly on one side of alpha. The columns that straddle alpha get their pixels computed in
  plain float32. The few pixels within a relative ``REL`` of alpha are computed again with
  torch's exact arithmetic (fused multiply-adds emulated exactly in float64).

Negative or non-finite maps, small outputs (where torch uses another kernel), alpha in
[0, 1e-30) and an unverified emulation use the values of the 2-D torch call directly.
"""
from __future__ import annotations

import threading
from functools import lru_cache
from typing import NamedTuple

import numpy as np

F32, F64 = np.float32, np.float64
# |Window.values (plain float32) - 2-D call| <= MARGIN * max(map)
MARGIN = 1e-6
# On a non-negative map, torch's value and the plain float32 one each equal the exact bilinear
# sum of the same float32 weights times a factor within (1 +- 2**-24)**4 (at most four roundings
# of non-negative terms). So they differ by a relative 8 * 2**-24 = 4.8e-7 at most, and torch's
# value lies within 6.5 * 2**-24 of its band's rows (plain float32; the two weights sum to
# 1 +- 2**-25): about a quarter of REL. Subnormal rounding adds < 1e-44 absolute, far inside ABS.
# (Measured on the stage-3 benchmark's maps: 15 % of the masks have a pixel within REL of alpha.)
REL, ABS = 2e-6, 1e-37
SMALL_OUTPUT = 128  # torch resizes outputs with H + W <= 128 with its channels-last kernel
TINY_ALPHA = 1e-30  # for 0 <= alpha below it, underflow decides, so the 2-D call does


def resize_bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float (h, w) map (cast to float32 first) to ``size`` = (H, W); float32 (H, W) out."""
    import torch
    import torch.nn.functional as F

    if min(size) < 1 or min(np.shape(a)) < 1:
        raise ValueError(f"bilinear resize needs positive sizes, got {np.shape(a)} -> {tuple(size)}")
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


# ------------------------------------------------------------------------------ torch's arithmetic
def fma32(a, b, c) -> np.ndarray:
    """float32 ``a * b + c`` rounded once (an IEEE fused multiply-add) for float32 inputs.

    The product is exact in float64. The float64 sum ``s`` rounds to float32 like the exact sum,
    except when ``s`` lies exactly halfway between two float32 (its 29 low bits are 1 then zeros,
    or it is in float32's subnormal range) and is inexact; there the sign of its error ``e``
    (``s + e`` is exact: Knuth's two-sum) picks the side.
    """
    p = np.asarray(a, F32).astype(F64) * np.asarray(b, F32)
    c = np.asarray(c, F32).astype(F64)
    s = np.asarray(p + c)
    r = s.astype(F32)
    maybe = ((s.view(np.uint64) & 0x1FFFFFFF) == 0x10000000) | (np.abs(s) < 2.0 ** -125)
    if maybe.any():
        bv = s - p
        e = (p - (s - bv)) + (c - bv)
        other = np.nextafter(r, np.where(s > r, F32(np.inf), F32(-np.inf)))  # the neighbour on s's side
        tie = maybe & (e != 0) & ((r.astype(F64) + other) * 0.5 == s)
        r = np.where(tie, np.where(e > 0, np.maximum(r, other), np.minimum(r, other)), r)
    return r


class Axis(NamedTuple):
    """Taps of one axis resized from ``n_in`` to ``n_out`` samples, as torch computes them, and its
    bands (maximal runs of output indices that read the same input pair). Read-only arrays."""

    i0: np.ndarray  # (n_out,) intp: the input index weighted by w0
    i1: np.ndarray  # (n_out,) intp: min(i0 + 1, n_in - 1)
    w0: np.ndarray  # (n_out,) float32
    w1: np.ndarray  # (n_out,) float32
    band: np.ndarray  # (n_out,) intp: the band of each output index
    start: np.ndarray  # (bands,) intp: the first output index of each band
    length: np.ndarray  # (bands,) intp
    band_i0: np.ndarray  # (bands,) intp: i0 of each band
    band_i1: np.ndarray  # (bands,) intp: i1 of each band


@lru_cache(maxsize=128)
def axis_taps(n_out: int, n_in: int, fused: bool) -> Axis:
    """torch's ``compute_source_index_and_lambda`` (align_corners=False) for every output index;
    ``fused``: ``scale * (i + 0.5) - 0.5`` rounded once."""
    if n_out < 1 or n_in < 1:
        raise ValueError(f"bilinear resize needs positive sizes, got {n_in} -> {n_out}")
    if n_out == n_in:  # torch copies
        i0 = i1 = np.arange(n_out)
        w0, w1 = np.ones(n_out, F32), np.zeros(n_out, F32)
    else:
        scale = F32(n_in) / F32(n_out)
        x = np.arange(n_out).astype(F32) + F32(0.5)
        src = fma32(scale, x, F32(-0.5)) if fused else scale * x - F32(0.5)
        src = np.where(src < 0, F32(0), src)
        i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
        w1 = np.minimum(np.maximum(src - i0.astype(F32), F32(0)), F32(1))
        w0, i1 = F32(1) - w1, np.minimum(i0 + 1, n_in - 1)
    new_band = np.r_[False, i0[1:] != i0[:-1]]
    start = np.flatnonzero(np.r_[True, new_band[1:]])
    taps = Axis(i0, i1, w0, w1, np.cumsum(new_band), start, np.diff(np.r_[start, n_out]), i0[start], i1[start])
    for arr in taps:
        arr.flags.writeable = False
    return taps


def exact_at(a: np.ndarray, ty: Axis, tx: Axis, ys: np.ndarray, xs: np.ndarray, fused: bool) -> np.ndarray:
    """float32 values of torch's resize of the float32 map ``a`` at output pixels (``ys``, ``xs``)."""
    y0, y1, x0, x1 = ty.i0[ys], ty.i1[ys], tx.i0[xs], tx.i1[xs]
    wy0, wy1, wx0, wx1 = ty.w0[ys], ty.w1[ys], tx.w0[xs], tx.w1[xs]
    a00, a01, a10, a11 = a[y0, x0], a[y0, x1], a[y1, x0], a[y1, x1]
    if not fused:
        return (a00 * wx0 + a01 * wx1) * wy0 + (a10 * wx0 + a11 * wx1) * wy1
    t0, t1 = np.split(fma32(np.r_[a00, a10], np.r_[wx0, wx0], np.r_[a01 * wx1, a11 * wx1]), 2)
    return fma32(t0, wy0, t1 * wy1)


def exact_resize(a: np.ndarray, size: tuple[int, int], fused: bool) -> np.ndarray:
    """The emulated resize at every pixel, float32 (H, W) (the probe's and the tests' reference)."""
    a = np.asarray(a, F32)
    ty, tx = axis_taps(size[0], a.shape[0], fused), axis_taps(size[1], a.shape[1], fused)
    ys, xs = np.divmod(np.arange(size[0] * size[1]), size[1])
    return exact_at(a, ty, tx, ys, xs, fused).reshape(size)


_PROBE_LOCK = threading.Lock()
_PROBE: list = []  # [result] once probed


def emulation() -> str | None:
    """``"fused"`` or ``"plain"``: the arithmetic of the installed torch's resize, checked bit for
    bit once per process on random maps (widths and heights of every residue mod 16, a
    multi-chunk size, a downsampled odd shape). None when neither emulation reproduces it: then
    every resize is the torch call. Measured: 13 ms, once."""
    if _PROBE:
        return _PROBE[0]
    with _PROBE_LOCK:
        if not _PROBE:
            rng = np.random.default_rng(0)
            a, b = rng.random((32, 32), dtype=F32), rng.random((7, 45), dtype=F32)
            cases = [(a, (5, w)) for w in range(130, 146)] + [(a, (h, 5)) for h in range(130, 146)]
            cases += [(a, (60, 611)), (a, (32, 200)), (b, (150, 40))]
            refs = [resize_bilinear(src, size).view(np.uint32) for src, size in cases]
            found = None
            for name in ("fused", "plain"):
                if all(np.array_equal(exact_resize(src, size, name == "fused").view(np.uint32), ref)
                       for (src, size), ref in zip(cases, refs)):
                    found = name
                    break
            _PROBE.append(found)
        return _PROBE[0]


# ------------------------------------------------------------------------------ the mask
class Window:
    """A map prepared for :func:`binarise` at ``size``. It iterates as ``(values float32
    (H, x1 - x0), (0, x0))``; every output pixel outside that window is exactly 0 (the values
    are computed on first use, :func:`binarise` does not need them).

    ``exact``: the 2-D call's values decide; ``_exact`` is that (H, W) array. Otherwise the
    emulation decides, and ``_exact`` holds ``(ys, xs, values)`` of the pixels near alpha that the
    last :func:`binarise` computed with torch's exact arithmetic (None while there were none).
    """

    def __init__(self, source: np.ndarray, size, variant: str | None, reach=(0, 0, 0, 0)):
        self.source, self.size, self.variant = source, (int(size[0]), int(size[1])), variant
        self.exact, self._exact, self._values, self._full = variant is None, None, None, None
        if self.exact:
            self._exact = resize_bilinear(source, self.size)
            return
        self.ty = ty = axis_taps(self.size[0], source.shape[0], variant == "fused")
        self.tx = tx = axis_taps(self.size[1], source.shape[1], variant == "fused")
        self.y0, self.y1, self.x0, self.x1 = reach  # output rows / columns that can be non-zero
        self.r0 = int(ty.i0[self.y0])
        rows, cols = source[self.r0:int(ty.i1[self.y1 - 1]) + 1], slice(self.x0, self.x1)
        # the input rows resized along x in plain float32: (rows, x1 - x0)
        self.t = rows[:, tx.i0[cols]] * tx.w0[cols] + rows[:, tx.i1[cols]] * tx.w1[cols]
        self.bands = slice(int(ty.band[self.y0]), int(ty.band[self.y1 - 1]) + 1)

    def __iter__(self):
        return iter((self.values, (0, 0 if self.exact else self.x0)))

    def __getitem__(self, i):
        return tuple(self)[i]

    @property
    def values(self) -> np.ndarray:
        if self.exact:
            return self._exact
        if self._values is None:
            ty, ys, t = self.ty, slice(self.y0, self.y1), self.t
            vals = np.zeros((self.size[0], self.x1 - self.x0), F32)
            vals[ys] = t[ty.i0[ys] - self.r0] * ty.w0[ys, None] + t[ty.i1[ys] - self.r0] * ty.w1[ys, None]
            self._values = vals
        return self._values

    def exact_window(self) -> Window:
        """This map's window with the 2-D call's values (made once)."""
        if self.exact:
            return self
        if self._full is None:
            self._full = Window(self.source, self.size, None)
        return self._full

    def local_mask(self, alpha: np.float32) -> np.ndarray:
        """bool (y1 - y0, x1 - x0): ``v > alpha`` of an emulated window inside its reach (every
        pixel outside it is 0, not above a non-negative alpha), for ``alpha >= TINY_ALPHA``."""
        below, above = _thresholds(float(alpha))
        ty, r0, b = self.ty, self.r0, self.bands
        first = ty.start[b]
        t0, t1 = self.t[ty.band_i0[b] - r0], self.t[ty.band_i1[b] - r0]  # (bands, x1 - x0)
        low, high = np.minimum(t0, t1), np.maximum(t0, t1)
        sure = low > above  # the band's whole column is above alpha
        mask = sure[ty.band[self.y0:self.y1] - b.start]  # (y1 - y0, x1 - x0), a new array
        bi, xi = np.nonzero((high > below) & ~sure)
        if not bi.size:
            return mask
        # the straddling band columns pixel by pixel, in plain float32 (non-negative terms)
        length = ty.length[b][bi]
        ys = np.arange(int(length.sum())) + np.repeat(first[bi] - (np.cumsum(length) - length), length)
        v = np.repeat(t0[bi, xi], length) * ty.w0[ys]
        v += np.repeat(t1[bi, xi], length) * ty.w1[ys]
        xs = np.repeat(xi, length)  # window columns
        flat, width = mask.reshape(-1), self.x1 - self.x0
        flat[(ys - self.y0) * width + xs] = v > alpha
        near = np.flatnonzero((v > below) & (v <= above))
        if near.size:  # within REL of alpha: torch's exact arithmetic decides
            ys, xs = ys[near], xs[near] + self.x0
            exact = exact_at(self.source, ty, self.tx, ys, xs, self.variant == "fused")
            flat[(ys - self.y0) * width + xs - self.x0] = exact > alpha
            self._exact = (ys, xs, exact)
        return mask


@lru_cache(maxsize=64)
def _thresholds(alpha: float) -> tuple[np.float32, np.float32]:
    """(below, above): a plain float32 value v <= below is torch's <= alpha, v > above torch's > alpha."""
    return (np.nextafter(F32((alpha - ABS) / (1 + REL)), F32(-np.inf)),
            np.nextafter(F32((alpha + ABS) / (1 - REL)), F32(np.inf)))


def upsample_window(a: np.ndarray, size: tuple[int, int]) -> Window | None:
    """Bilinear upsampling of a float (h, w) map to ``size`` = (H, W), prepared for :func:`binarise`
    (a :class:`Window`); ``None`` when every output pixel is exactly 0 (``a`` all zero).

    Negative or non-finite maps, outputs with H + W <= 128 and a torch whose arithmetic
    :func:`emulation` cannot reproduce get the 2-D call's values (``Window.exact``).
    """
    a = np.asarray(a, dtype=F32)
    if min(size) < 1 or min(a.shape) < 1:
        raise ValueError(f"bilinear resize needs positive sizes, got {a.shape} -> {tuple(size)}")
    lo, hi = float(a.min()), float(a.max())
    if hi == 0 and lo == 0:
        return None
    variant = None
    if size[0] + size[1] > SMALL_OUTPUT and lo >= 0 and hi < np.inf:  # False for NaN too
        variant = emulation()
    if variant is None:
        return Window(a, size, None)
    y0, y1 = _reach(axis_taps(int(size[0]), a.shape[0], variant == "fused"), a.any(axis=1))
    x0, x1 = _reach(axis_taps(int(size[1]), a.shape[1], variant == "fused"), a.any(axis=0))
    if y1 <= y0 or x1 <= x0:  # a downsampling whose taps miss every non-zero input: all exactly 0
        return None
    return Window(a, size, variant, (y0, y1, x0, x1))


def _reach(taps: Axis, nonzero: np.ndarray) -> tuple[int, int]:
    """Output indices [start, stop) whose taps can read a non-zero input (whole bands)."""
    idx = np.flatnonzero(nonzero)
    return int(np.searchsorted(taps.i1, idx[0])), int(np.searchsorted(taps.i0, idx[-1], "right"))


def binarise(window: Window | None, size: tuple[int, int], alpha: float) -> np.ndarray:
    """bool (H, W) mask ``upsampled > alpha`` from an :func:`upsample_window` result: pixel for pixel
    the 2-D torch resize compared with alpha in float32 (as torch and NumPy compare a float32
    array with a Python float)."""
    part, (y0, x0) = binarise_local(window, size, alpha)
    if part.shape == tuple(size):
        return part
    mask = np.zeros(size, bool)
    mask[y0:y0 + part.shape[0], x0:x0 + part.shape[1]] = part
    return mask


def binarise_local(window: Window | None, size: tuple[int, int], alpha: float) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`binarise` as ``(part, (y0, x0))``: the mask is ``part`` at rows ``y0 ..``, columns
    ``x0 ..`` and False everywhere else (for scoring without building the whole (H, W) mask;
    ``part`` is the whole mask, at (0, 0), where the window does not bound it)."""
    alpha = F32(alpha)
    if window is None:  # every pixel is exactly 0
        return np.full(size, F32(0) > alpha, dtype=bool), (0, 0)
    if not window.exact:
        if alpha >= TINY_ALPHA:
            return window.local_mask(alpha), (window.y0, window.x0)
        if alpha < 0 or np.isnan(alpha):  # a non-negative map: every pixel > alpha, or none
            return np.full(size, bool(alpha < 0), dtype=bool), (0, 0)
        window = window.exact_window()
    return window.values > alpha, (0, 0)

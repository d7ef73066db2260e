"""The VLM map meets the diffusion self-attention: ``c``, the matrix ``S`` and ``A_CS = norm(c^T S)``.

Shapes (METHOD.md section 3): ``A_C`` float32 (gh, gw) from stage 1; ``c`` and ``A_CS`` float32
(32, 32) on the 32 grid, row-major, values in [0, 1); ``S`` float32 (1024, 1024), rows = query
positions, columns = key positions (each row of a self-attention map sums to 1).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable

import numpy as np

from ..rundir import FOCUS_16TO32, FOCUS_64TO32, FOCUS_SELF_32, DumpError, RunDir
from .config import GRID, N_TOKENS, EvolveConfig
from .resample import resize_bilinear

EPS = 1e-6


def normalise_c(a_c: np.ndarray, fidelity: str) -> np.ndarray:
    """``c``: ``A_C`` (gh, gw) resized bilinearly to (32, 32), then normalised.

    released: ``(c - min) / (max + 1e-6)`` (the published behaviour; the range is not stretched
    to [0, 1] unless min is 0); corrected: ``(c - min) / (max - min + 1e-6)``.
    """
    c = resize_bilinear(np.asarray(a_c, dtype=np.float32), (GRID, GRID))
    lo, hi = c.min(), c.max()
    if fidelity == "released":
        return ((c - lo) / (hi + np.float32(EPS))).astype(np.float32)
    if fidelity == "corrected":
        return ((c - lo) / (hi - lo + np.float32(EPS))).astype(np.float32)
    raise ValueError(f"fidelity {fidelity!r}: expected 'released' or 'corrected'")


def propagate(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``A_CS`` float32 (32, 32): ``p = c^T S`` (one step), ``p / (||p||_2 + 1e-6)``, minus its
    minimum, divided by (its maximum + 1e-6)."""
    p = np.einsum("i,ij->j", c.reshape(-1).astype(np.float32, copy=False), s)  # no BLAS threads
    p = p / (np.linalg.norm(p) + np.float32(EPS))
    q = p - p.min()
    return (q / (q.max() + np.float32(EPS))).astype(np.float32).reshape(GRID, GRID)


def focus_names(config: EvolveConfig) -> list[str]:
    """Stage 2 file names averaged into ``S`` for the configured resolutions and fidelity."""
    names = {16: FOCUS_16TO32[config.fidelity], 32: FOCUS_SELF_32, 64: FOCUS_64TO32[config.fidelity]}
    return [names[r] for r in config.resolutions]


def load_a_c(run: RunDir, sid: str) -> np.ndarray:
    """Fused VLM map ``A_C`` float32 (gh, gw) of one sample (validated against its sidecar)."""
    maps, _meta = run.load_overview(sid)
    return maps[0]


def load_s(run: RunDir, sid: str, config: EvolveConfig) -> np.ndarray:
    """``S`` float32 (1024, 1024) = mean of the configured resolutions' 32-grid matrices.

    Raises :class:`DumpError` naming the file when a dump is missing (e.g. the 16 -> 32 map, which
    stage 2 writes only on request) or is not a 1024 x 1024 query-by-key matrix.
    """
    return mean_s(_load_matrix(run, sid, name) for name in focus_names(config))


def _load_matrix(run: RunDir, sid: str, name: str) -> np.ndarray:
    path = run.focus_file(sid, name)
    if not path.is_file():
        hint = " (stage 2 writes the 16-grid map only on request)" if name in FOCUS_16TO32.values() else ""
        raise DumpError(f"{path}: dump is missing{hint}; rerun stage 2 or change --resolutions")
    mat = run.load_focus(sid, name, as_float32=False)
    if mat.shape != (N_TOKENS, N_TOKENS):
        raise DumpError(f"{path}: a {mat.shape[0]}x{mat.shape[1]} matrix, expected "
                        f"{N_TOKENS}x{N_TOKENS} (the {GRID} x {GRID} grid)")
    return mat


def mean_s(matrices: Iterable[np.ndarray]) -> np.ndarray:
    """float32 (1024, 1024) mean of float16/float32 query-by-key matrices (the inputs are not modified)."""
    total, count = None, 0
    for mat in matrices:
        mat = mat.reshape(N_TOKENS, N_TOKENS)
        if total is None:
            total = to_float32(mat)
            if total is mat or not total.flags.writeable:
                total = total.copy()
        else:
            np.add(total, to_float32(mat), out=total)
        count += 1
    if count > 1:
        total *= np.float32(1.0 / count)
    return total


def to_float32(arr: np.ndarray) -> np.ndarray:
    """float16/float32 array -> float32. float16 goes through torch (vectorised F16C cast, ~0.3 ms
    per 1024 x 1024 matrix single-threaded, against ~2 ms for NumPy's cast)."""
    if arr.dtype == np.float32:
        return arr
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr)).float().numpy()


@contextmanager
def single_threaded_kernels(enabled: bool = True):
    """Run torch CPU kernels on one thread inside the block (restored after).

    The stage parallelises over samples with worker threads; nested kernel thread pools on top of
    them oversubscribe the cores (measured: a float16 cast 10-50x slower under contention).
    """
    if not enabled:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_inputs(run: RunDir, sid: str, config: EvolveConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """(``A_C`` (gh, gw), ``S`` (1024, 1024) or None when the interaction is switched off)."""
    a_c = load_a_c(run, sid)
    return a_c, (load_s(run, sid, config) if config.use_dm else None)

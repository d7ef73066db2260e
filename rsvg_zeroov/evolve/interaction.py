"""The VLM map meets the diffusion self-attention: ``c``, the matrix ``S`` and ``A_CS = norm(c^T S)``.

Shapes (docs/method.md, stage 3): ``A_C`` float32 (gh, gw) from stage 1; ``c`` and ``A_CS`` float32
(32, 32) on the 32 grid, row-major, values in [0, 1); ``S`` float32 (1024, 1024), rows = query
positions, columns = key positions (each row of a self-attention map sums to 1).
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from typing import Iterable

import numpy as np

from ..npyio import NpyBuffer, load_npy, read_npy
from ..rundir import FOCUS_16TO32, FOCUS_64TO32, FOCUS_SELF_32, DumpError, RunDir
from .config import FIDELITIES, GRID, N_TOKENS, EvolveConfig
from .resample import resize_bilinear

EPS = 1e-6
EPS32 = np.float32(EPS)  # torch adds a Python float to a float32 tensor in float32, as this does


def normalise_c(a_c: np.ndarray, fidelity: str) -> np.ndarray:
    """``c``: ``A_C`` (gh, gw) cast to float32, resized bilinearly to (32, 32) by torch, then
    normalised in float32.

    released: ``(c - min) / (max + 1e-6)`` (the published behaviour; the range is not stretched
    to [0, 1] unless min is 0); corrected: ``(c - min) / (max - min + 1e-6)``. Min, max and the
    single subtractions and divisions are exact IEEE float32 operations, the same bits in NumPy as
    in torch (the tests compare them with a torch reference bit for bit).
    """
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity {fidelity!r}: expected 'released' or 'corrected'")
    c = resize_bilinear(np.asarray(a_c, dtype=np.float32), (GRID, GRID))
    lo, hi = c.min(), c.max()
    denom = hi + EPS32 if fidelity == "released" else hi - lo + EPS32
    return (c - lo) / denom


def propagate(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``A_CS`` float32 (32, 32): ``p = c^T S`` (one step) and its L2 norm in float32 torch (their
    summation order is torch's), then ``p / (||p||_2 + 1e-6)``, minus its minimum, divided by (its
    maximum + 1e-6): exact float32 operations, bit for bit torch's."""
    import torch

    p_t = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32).reshape(-1)) @ torch.from_numpy(s)
    norm = np.float32(torch.linalg.vector_norm(p_t).item())
    p = p_t.numpy() / (norm + EPS32)
    q = p - p.min()
    return (q / (q.max() + EPS32)).reshape(GRID, GRID)


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
    stage 2 writes only on request), is not a 1024 x 1024 query-by-key matrix, or is not finite.
    """
    return SReader(run, config).read(sid)


class SReader:
    """Reads ``S`` of one sample after another into memory it reuses (one reader per thread).

    Equal to :func:`mean_s` of the validated files, to the bit: the first matrix is cast into the
    float32 accumulator, the others are added in float32, then the sum is scaled by 1 / count. The
    file data goes through one reused buffer and is cast by torch (F16C) during the copy / add, so
    a sample costs two file reads and no allocation. Finiteness is checked once on the sum (any
    NaN or Inf in an input makes it non-finite); only then are the files inspected one by one to
    name the bad one.
    """

    def __init__(self, run: RunDir, config: EvolveConfig):
        self.run, self.names = run, focus_names(config)
        self._buffer = NpyBuffer()
        self._total = np.empty((N_TOKENS, N_TOKENS), dtype=np.float32)

    def read(self, sid: str) -> np.ndarray:
        """``S`` of ``sid``: this reader's float32 (1024, 1024) array, overwritten by the next read."""
        import torch

        total = torch.from_numpy(self._total)
        for i, name in enumerate(self.names):
            mat = _read_matrix(self.run, sid, name, self._buffer)
            if i == 0:
                total.copy_(torch.from_numpy(mat))
            elif mat.dtype == np.float32:
                np.add(self._total, mat, out=self._total)
            else:
                total.add_(torch.from_numpy(mat))  # float16 promoted element-wise: the float32 sum
        if len(self.names) > 1:
            self._total *= np.float32(1.0 / len(self.names))
        if not math.isfinite(float(total.sum())):
            self._name_non_finite(sid)
        return self._total

    def _name_non_finite(self, sid: str) -> None:
        for name in self.names:
            load_npy(self.run.focus_file(sid, name))  # raises, naming the file, if it is not finite
        if not np.isfinite(self._total).all():  # finite inputs: the sum cannot overflow, but be sure
            raise DumpError(f"{self.run.focus_dir(sid)}: the mean of {self.names} is not finite")


class ThreadReaders:
    """One :class:`SReader` per thread (for a thread pool working on one run and config)."""

    def __init__(self, run: RunDir, config: EvolveConfig):
        self.run, self.config = run, config
        self._local = threading.local()

    def get(self) -> SReader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = SReader(self.run, self.config)
        return reader


def _read_matrix(run: RunDir, sid: str, name: str, buffer: NpyBuffer | None = None) -> np.ndarray:
    """One stage-2 32-grid map as a (1024, 1024) query-by-key matrix in its stored dtype, validated
    except for finiteness; a view of ``buffer`` when given."""
    path = run.focus_file(sid, name)
    if name in FOCUS_16TO32.values() and not path.is_file():
        raise DumpError(f"{path}: dump is missing (stage 2 writes the 16-grid map only on request); "
                        f"rerun stage 2 or change --resolutions")
    mat = read_npy(path, buffer=buffer)
    if mat.shape == (GRID, GRID, N_TOKENS):  # (r, r, r*r) layout of self_32
        mat = mat.reshape(N_TOKENS, N_TOKENS)
    if mat.shape != (N_TOKENS, N_TOKENS):
        raise DumpError(f"{path}: shape {mat.shape}, expected {N_TOKENS}x{N_TOKENS} "
                        f"(or {GRID}x{GRID}x{N_TOKENS}: the {GRID} x {GRID} grid)")
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


def load_inputs(run: RunDir, sid: str, config: EvolveConfig,
                reader: SReader) -> tuple[np.ndarray, np.ndarray | None]:
    """(``A_C`` (gh, gw), ``S`` (1024, 1024) or None when the interaction is switched off).

    ``reader`` (same run and config) holds ``S``: valid until its next read.
    """
    a_c = load_a_c(run, sid)
    return a_c, (reader.read(sid) if config.use_dm else None)

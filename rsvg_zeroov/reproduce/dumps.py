"""One sample's stage-1/2 dumps for the harness, each file read at most once, into memory the
thread reuses from sample to sample.

``S`` of a set of stage-2 files is what stage 3 reads (:class:`rsvg_zeroov.evolve.interaction.SReader`,
:func:`~rsvg_zeroov.evolve.interaction.mean_s`), to the bit: the first matrix in float32, the
others added in float32 in order (a float16 file promoted element-wise, an exact cast), then the
sum times 1 / count. A file that some row uses on its own (``alone``) is kept as a float32
matrix (a float32 dump is used where it was read, a float16 one is cast once); a file that only
enters means is added to them as it is stored. Finiteness is checked on float32 data with one sum
(a NaN or Inf anywhere makes it non-finite); only then is the culprit looked for, to name it.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..evolve.config import N_TOKENS
from ..npyio import DumpError, NpyBuffer, all_finite, read_npy
from ..rundir import RunDir


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Buffers:
    """One thread's reusable memory: raw file bytes per stage-2 file name and float32
    (1024, 1024) arrays by key (a fresh 4 MiB array costs its page faults each time)."""

    def __init__(self) -> None:
        self._raw: dict[str, NpyBuffer] = {}
        self._arrays: dict = {}

    def raw(self, name: str) -> NpyBuffer:
        if name not in self._raw:
            self._raw[name] = NpyBuffer()
        return self._raw[name]

    def array(self, key) -> np.ndarray:
        if key not in self._arrays:
            self._arrays[key] = np.empty((N_TOKENS, N_TOKENS), dtype=np.float32)
        return self._arrays[key]


_LOCAL = threading.local()


def thread_buffers() -> Buffers:
    """This thread's :class:`Buffers` (what its previous sample read is overwritten)."""
    if getattr(_LOCAL, "buffers", None) is None:
        _LOCAL.buffers = Buffers()
    return _LOCAL.buffers


def _finite(arr: np.ndarray) -> bool:
    """No NaN or Inf in a float32 array: one sum (any NaN or Inf makes it non-finite), element-wise
    only if that sum is not finite (finite values can still sum past the float32 range)."""
    import torch

    return math.isfinite(float(torch.from_numpy(arr).sum())) or all_finite(arr)


class SampleDumps:
    """The dumps of sample ``sid`` of ``run``. a_c: float32 (gh, gw) fused VLM map, or None when
    stage 1's dump cannot be read (``error`` says why); meta: its sidecar. Stage-2 matrices are
    float32 (1024, 1024), rows = queries, read on first use (:meth:`s`); they live in ``buffers``
    until the thread's next sample."""

    def __init__(self, run: RunDir, sid: str, buffers: Buffers, alone: frozenset[str] = frozenset()):
        self.run, self.sid, self.buffers, self.alone = run, sid, buffers, alone
        self.a_c = self.meta = self.error = None
        try:
            maps, self.meta = run.load_overview(sid)
            self.a_c = maps[0]
        except (DumpError, OSError) as exc:
            self.error = error_text(exc)
        self._raw: dict[str, np.ndarray] = {}
        self._f32: dict[str, np.ndarray] = {}
        self._bad: dict[str, str] = {}
        self._s: dict[tuple[str, ...], np.ndarray] = {}

    def _read(self, name: str) -> np.ndarray:
        """The file as stored (float16 or float32, (1024, 1024)); DumpError naming it."""
        if name in self._bad:
            raise DumpError(self._bad[name])
        if name not in self._raw:
            path = self.run.focus_file(self.sid, name)
            try:
                if not path.is_file():
                    raise DumpError(f"{path}: dump is missing")
                mat = read_npy(path, buffer=self.buffers.raw(name))
                if mat.shape not in ((N_TOKENS, N_TOKENS), (32, 32, N_TOKENS)):
                    raise DumpError(f"{path}: shape {mat.shape}, expected (1024, 1024) or (32, 32, 1024)")
            except (DumpError, OSError) as exc:
                self._fail(name, str(exc) if isinstance(exc, DumpError) else error_text(exc))
            self._raw[name] = mat.reshape(N_TOKENS, N_TOKENS)
        return self._raw[name]

    def _fail(self, name: str, message: str):
        self._bad[name] = message
        raise DumpError(message)

    def _not_finite(self, name: str):
        self._fail(name, f"{self.run.focus_file(self.sid, name)}: contains NaN or Inf")

    def matrix(self, name: str) -> np.ndarray:
        """The file as a float32 matrix (read only), checked to be finite."""
        if name not in self._f32:
            import torch

            raw = self._read(name)
            if raw.dtype == np.float32:
                out = raw
            else:
                out = self.buffers.array(("file", name))
                torch.from_numpy(out).copy_(torch.from_numpy(raw))  # exact, as to_float32
            if not _finite(out):
                self._not_finite(name)
            self._f32[name] = out
        return self._f32[name]

    def s(self, names: tuple[str, ...]) -> np.ndarray:
        """``S`` float32 (1024, 1024) of the files ``names`` (read only); DumpError for a bad file."""
        if names not in self._s:
            if len(names) == 1:
                self._s[names] = self.matrix(names[0])
            else:
                import torch

                total = self.buffers.array(("mean", names))
                first = self.matrix(names[0])
                for i, name in enumerate(names[1:]):
                    other = self.matrix(name) if name in self.alone or name in self._f32 else self._read(name)
                    base = first if i == 0 else total
                    if other.dtype == np.float32:
                        np.add(base, other, out=total)
                    else:  # float16 promoted element-wise: the float32 sum of the exact cast
                        torch.add(torch.from_numpy(base), torch.from_numpy(other), out=torch.from_numpy(total))
                total *= np.float32(1.0 / len(names))
                if not _finite(total):  # a NaN or Inf in a file added as stored: name the file
                    for name in names[1:]:
                        if name not in self._f32 and not all_finite(self._raw[name]):
                            self._not_finite(name)
                    raise DumpError(f"{self.run.focus_dir(self.sid)}: the mean of {list(names)} is not finite")
                self._s[names] = total
        return self._s[names]

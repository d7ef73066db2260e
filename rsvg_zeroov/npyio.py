"""Reading float16/float32 ``.npy`` dumps safely and fast: the format checks every reader shares.

``read_npy`` parses the header as a Python literal (never unpickles), checks dtype, shape and
length before reading, and can read into a reused :class:`NpyBuffer`; ``load_npy`` adds the
finiteness check and the float32 cast. Errors are :class:`DumpError` naming the file.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np


class DumpError(ValueError):
    """A dump on disk is missing, truncated, or disagrees with what the reader expects."""


NPY_MAGIC = b"\x93NUMPY"
NPY_MAX_HEADER = 10_000  # NumPy's own default limit (np.load max_header_size)


class NpyBuffer:
    """Reusable memory for :func:`read_npy` (one per thread): a reader that loads thousands of
    same-sized dumps then neither allocates nor page-faults per file."""

    def __init__(self) -> None:
        self._mem = np.empty(0, dtype=np.uint8)

    def get(self, nbytes: int) -> np.ndarray:
        if self._mem.size < nbytes:
            self._mem = np.empty(nbytes, dtype=np.uint8)
        return self._mem[:nbytes]


def read_npy(path: str | os.PathLike, shape: tuple[int | None, ...] | None = None, *,
             buffer: NpyBuffer | None = None) -> np.ndarray:
    """A float16/float32 ``.npy`` dump in its stored dtype, checked for format, dtype, ``shape`` and
    length, but not for finiteness (see :func:`load_npy`). Never unpickles.

    With a ``buffer`` the result is a view of the buffer's memory, overwritten by its next read.
    ``None`` entries in ``shape`` match any size. Raises :class:`DumpError` naming the file.
    """
    path = Path(path)
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise DumpError(f"{path}: dump is missing (run the stage that writes it first)") from None
    except OSError as exc:
        raise DumpError(f"{path}: unreadable ({exc})") from None
    with f:
        dtype, stored_shape, fortran = _npy_header(f, path)
        if dtype.kind != "f" or dtype.itemsize not in (2, 4):
            raise DumpError(f"{path}: dtype {dtype}, expected float16 or float32")
        if shape is not None and (len(stored_shape) != len(shape)
                                  or any(s is not None and s != a for s, a in zip(shape, stored_shape))):
            expected = ", ".join("*" if s is None else str(s) for s in shape)
            raise DumpError(f"{path}: shape {stored_shape}, expected ({expected})")
        nbytes = math.prod(stored_shape) * dtype.itemsize
        available = os.fstat(f.fileno()).st_size - f.tell()
        if available < nbytes:  # checked before allocating: a damaged header may claim terabytes
            raise DumpError(f"{path}: truncated .npy ({available} of {nbytes} data bytes); "
                            f"delete it and rerun its stage")
        mem = buffer.get(nbytes) if buffer is not None else np.empty(nbytes, dtype=np.uint8)
        view, got = memoryview(mem), 0
        while got < nbytes:
            try:
                n = f.readinto(view[got:])
            except OSError as exc:
                raise DumpError(f"{path}: unreadable ({exc})") from None
            if not n:
                raise DumpError(f"{path}: truncated .npy ({got} of {nbytes} data bytes); "
                                f"delete it and rerun its stage")
            got += n
    arr = mem.view(dtype)
    if fortran:
        arr = arr.reshape(stored_shape[::-1]).T
    else:
        arr = arr.reshape(stored_shape)
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _npy_header(f, path: Path) -> tuple[np.dtype, tuple[int, ...], bool]:
    """(dtype, shape, fortran_order) from an open ``.npy`` file positioned at its start."""
    pre = f.read(10)
    if len(pre) < 10 or pre[:6] != NPY_MAGIC or pre[6] not in (1, 2, 3):
        raise DumpError(f"{path}: not a .npy file (bad magic or version); delete it and rerun its stage")
    if pre[6] == 1:
        size = int.from_bytes(pre[8:10], "little")
    else:
        size = int.from_bytes(pre[8:10] + f.read(2), "little")
    if size > NPY_MAX_HEADER:
        raise DumpError(f"{path}: .npy header of {size} bytes (more than {NPY_MAX_HEADER}); not a dump")
    header = f.read(size)
    if len(header) != size:
        raise DumpError(f"{path}: truncated .npy header; delete it and rerun its stage")
    try:
        return _parse_npy_header(header)
    except (ValueError, SyntaxError, TypeError, KeyError, RecursionError, MemoryError) as exc:
        raise DumpError(f"{path}: unreadable .npy header ({type(exc).__name__}: {exc}); "
                        f"delete it and rerun its stage") from None


@lru_cache(maxsize=64)
def _parse_npy_header(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    """The header dict (a Python literal, evaluated without executing code) of one ``.npy`` file;
    cached, since a run's dumps share a handful of headers."""
    import ast

    d = ast.literal_eval(header.decode("latin1"))
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"unexpected header {d!r}")
    if not isinstance(d["descr"], str):  # a structured dtype (list of fields) is never a dump
        raise ValueError(f"structured dtype {d['descr']!r}, expected float16 or float32")
    dtype = np.dtype(d["descr"])
    shape = d["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"bad shape {shape!r}")
    return dtype, shape, bool(d["fortran_order"])


def all_finite(arr: np.ndarray) -> bool:
    """True if a float16/float32 array holds no NaN or Inf."""
    if arr.dtype == np.float16:  # exponent bits all set = Inf or NaN (no float16 -> float32 cast needed)
        return not ((arr.view(np.uint16) & 0x7C00) == 0x7C00).any()
    return bool(np.isfinite(arr).all())


def load_npy(path: str | os.PathLike, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Load a float16/float32 ``.npy`` dump as float32, checking it is finite and of ``shape``.

    ``None`` entries in ``shape`` match any size. Raises :class:`DumpError` naming the file.
    """
    arr = read_npy(path, shape)
    if not all_finite(arr):
        raise DumpError(f"{Path(path)}: contains NaN or Inf")
    return arr.astype(np.float32, copy=False)

"""Reading float16/float32 ``.npy`` dumps safely and fast: the format checks every reader shares.

``read_npy`` parses the header with NumPy's own ``np.lib.format`` (a Python literal, never
unpickled), checks dtype, shape and length before reading, then reads the data into a reused
:class:`NpyBuffer`; ``load_npy`` adds the finiteness check and the float32 cast. Errors are
:class:`DumpError` naming the file.

Why the data is still read by hand (eight lines of ``readinto``, no format logic): np.load cannot
read into existing memory, and the reused buffer is part of this module's contract (``SReader``
reads two 2-4 MB matrices per sample without allocating). Measured inside stage 3
(``python bench/bench_evolve.py --codecs``, 1000 samples, 2 shared cores): np.load costs +2 % CPU
per sample and -3 % samples/s at load average 1.7, +8 % and -24 % at load 5. NumPy's header parser
costs ~0.02-0.04 ms per file (``ast.literal_eval``), so each distinct header is parsed once per
process, and a file costs one ``fstat`` and three reads.
"""
from __future__ import annotations

import io
import math
import os
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
        file_size = os.fstat(f.fileno()).st_size
        dtype, stored_shape, fortran, data_start = _npy_header(f, path, file_size)
        if dtype.kind != "f" or dtype.itemsize not in (2, 4):
            raise DumpError(f"{path}: dtype {dtype}, expected float16 or float32")
        if shape is not None and (len(stored_shape) != len(shape)
                                  or any(s is not None and s != a for s, a in zip(shape, stored_shape))):
            expected = ", ".join("*" if s is None else str(s) for s in shape)
            raise DumpError(f"{path}: shape {stored_shape}, expected ({expected})")
        nbytes = math.prod(stored_shape) * dtype.itemsize
        available = file_size - data_start
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


_HEADERS: dict[bytes, tuple] = {}  # raw header bytes -> parsed: a run's dumps share a handful


def _npy_header(f, path: Path, file_size: int) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """(dtype, shape, fortran_order, data offset) from an open ``.npy`` file positioned at its start,
    which is left at the data. The header is parsed by ``np.lib.format`` once per distinct header
    (cached by its bytes); its length field is checked first (size limit, truncation)."""
    pre = f.read(12)
    if len(pre) < 10 or pre[:6] != NPY_MAGIC or pre[6] not in (1, 2, 3):
        raise DumpError(f"{path}: not a .npy file (bad magic or version); delete it and rerun its stage")
    size = int.from_bytes(pre[8:10] if pre[6] == 1 else pre[8:12], "little")
    end = (10 if pre[6] == 1 else 12) + size
    if size > NPY_MAX_HEADER:
        raise DumpError(f"{path}: .npy header of {size} bytes (more than {NPY_MAX_HEADER}); not a dump")
    if file_size < end:
        raise DumpError(f"{path}: truncated .npy header; delete it and rerun its stage")
    if end < len(pre):
        raw = pre[:end]
        f.seek(end)
    else:
        raw = pre + f.read(end - len(pre))
    parsed = _HEADERS.get(raw)
    if parsed is None:
        parsed = _parse_header(raw, path)
        if len(_HEADERS) >= 64:
            _HEADERS.clear()
        _HEADERS[raw] = parsed
    return (*parsed, end)


def _parse_header(raw: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], bool]:
    fmt = np.lib.format
    read = fmt.read_array_header_1_0 if raw[6] == 1 else fmt.read_array_header_2_0
    try:
        shape, fortran, dtype = read(io.BytesIO(raw[8:]), max_header_size=NPY_MAX_HEADER)
    except Exception as exc:  # noqa: BLE001 - NumPy's parser raises ValueError, TokenError, RecursionError...
        raise DumpError(f"{path}: unreadable .npy header ({type(exc).__name__}: {exc}); "
                        f"delete it and rerun its stage") from None
    if dtype.names is not None:  # a structured dtype (list of fields) is never a dump
        raise DumpError(f"{path}: structured dtype {dtype}, expected float16 or float32")
    return dtype, tuple(shape), bool(fortran)


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

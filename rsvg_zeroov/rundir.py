"""The run directory: the one module that knows where every file lives and how it is validated.

Layout (CONTRACTS.md)::

    RUN/overview/<sample_id>.npy        float32|float16 (1 + n_layers, gh, gw): [0] fused A_C, [1:] raw a_l
    RUN/overview/<sample_id>.json       sidecar: prompt, answer, layers, weights, grid, image size, model, dtype
    RUN/focus/<sample_id>/self_32.npy   (32, 32, 1024) averaged self-attention, rows = queries
    RUN/focus/<sample_id>/self_64to32_released.npy   (1024, 1024)
    RUN/focus/<sample_id>/self_64to32_corrected.npy  (1024, 1024)
    RUN/focus/<sample_id>/meta.json
    RUN/masks/<sample_id>.png           uint8 0/255 at the original image size
    RUN/evolve/records-<rank>.jsonl     stage-3 per-sample records, append-only (assembled into predictions.jsonl)
    RUN/maps/<sample_id>.npz            stage-3 soft maps (opt-in --save-maps)
    RUN/panels/<sample_id>.png, RUN/index.html   tools/visualize.py
    RUN/predictions.jsonl
    RUN/metrics.json
    RUN/<stage>_config.json
    RUN/failures.jsonl

Every write goes through :func:`atomic_write_bytes` (temp file in the same folder + ``os.replace``),
so a file under its final name is always complete. Readers validate shape and sidecar and raise
:class:`DumpError` naming the file.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# Stage 2 file names (the 16-grid and full-64 maps are opt-in extras).
FOCUS_SELF_32 = "self_32.npy"
FOCUS_64TO32 = {"released": "self_64to32_released.npy", "corrected": "self_64to32_corrected.npy"}
FOCUS_16TO32 = {"released": "self_16to32_released.npy", "corrected": "self_16to32_corrected.npy"}
FOCUS_FULL_64 = "self_64.npy"
FOCUS_SELF_16 = "self_16.npy"
FOCUS_CROSS = "cross_{r}.npy"
FOCUS_META = "meta.json"


class DumpError(ValueError):
    """A dump on disk is missing, truncated, or disagrees with what the reader expects."""


# --------------------------------------------------------------------------------------- writing
def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and an atomic rename.

    A killed process never leaves a partial file under ``path``. ``durable`` also flushes the data
    to the disk before the rename (fsync), so that an operating-system crash or power cut cannot
    leave an empty file under ``path`` either; callers that check the content on resume (stage 3
    keeps each mask's CRC in its record) may skip it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared/served
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_filesystem(path: str | os.PathLike) -> None:
    """Flush everything written so far on the file system that holds ``path`` to the disk: one
    ``syncfs`` (Linux) instead of an fsync per file; ``sync`` where ``syncfs`` is unavailable."""
    fn = _syncfs()
    if fn is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if fn(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, f"syncfs({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


@lru_cache(maxsize=1)
def _syncfs():
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def save_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def save_mask_png(path: str | os.PathLike, mask: np.ndarray, *, durable: bool = True) -> bytes:
    """Write a bool (H, W) mask as the 8-bit grayscale 0/255 PNG of ``RUN/masks/`` (atomically);
    returns the file's bytes. ``durable``: as in :func:`atomic_write_bytes`."""
    data = encode_mask_png(mask)
    atomic_write_bytes(path, data, durable=durable)
    return data


def encode_mask_png(mask: np.ndarray) -> bytes:
    """PNG bytes of a bool (H, W) mask: 8-bit grayscale, pixels 0/255, filter type 0, one zlib stream.

    Only the rows between the first and the last non-zero row are compressed (zlib level 1,
    run-length strategy); the all-zero rows above and below are cached deflate blocks. ~0.2 ms
    for a typical 800 x 800 mask, against ~1.2 ms for deflating every row and ~5 ms for PIL's or
    OpenCV's adaptive filtering. Any PNG reader decodes it to the same uint8 0/255 pixels.
    """
    import struct
    import zlib

    mask = np.asarray(mask)
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f"a mask must be a non-empty 2-D (H, W) array, got shape {mask.shape}")
    h, w = mask.shape
    nz = mask if mask.dtype == bool else mask != 0
    hit = np.flatnonzero(nz.any(axis=1))
    top, bottom = (int(hit[0]), int(hit[-1]) + 1) if hit.size else (h, h)
    rows = np.zeros((bottom - top, w + 1), dtype=np.uint8)  # each scanline: filter byte 0, then pixels
    np.multiply(nz[top:bottom], 255, out=rows[:, 1:], dtype=np.uint8)
    line = w + 1
    adler = _adler32_zeros(1, top * line)
    adler = zlib.adler32(rows.data, adler)
    adler = _adler32_zeros(adler, (h - bottom) * line)
    band = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    stream = b"".join((b"\x78\x01", _deflate_zeros(top * line),
                       band.compress(rows.data) + band.flush(zlib.Z_SYNC_FLUSH) if rows.size else b"",
                       _deflate_zeros((h - bottom) * line), b"\x03\x00", struct.pack(">I", adler)))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", stream) + chunk(b"IEND", b""))


def _adler32_zeros(adler: int, n: int) -> int:
    """Adler-32 after ``n`` more zero bytes: the byte sum stays, the sum of sums grows by n * sum."""
    a, b = adler & 0xFFFF, adler >> 16
    return ((b + n * a) % 65521) << 16 | a


def _deflate_zeros(n: int) -> bytes:
    """Raw deflate blocks (not final, byte-aligned, no back-reference before them) for n zero bytes:
    one cached block per set bit of n."""
    return b"".join(_zero_block(1 << k) for k in range(n.bit_length()) if n >> k & 1)


@lru_cache(maxsize=64)
def _zero_block(n: int) -> bytes:
    import zlib

    comp = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return comp.compress(bytes(n)) + comp.flush(zlib.Z_SYNC_FLUSH)


# --------------------------------------------------------------------------------------- reading
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


def load_npy(path: str | os.PathLike, shape: tuple[int | None, ...] | None = None, *,
             as_float32: bool = True) -> np.ndarray:
    """Load a float16/float32 ``.npy`` dump as float32, checking it is finite and of ``shape``.

    ``None`` entries in ``shape`` match any size. Raises :class:`DumpError` naming the file.
    ``as_float32=False`` returns the validated array in its stored dtype (the caller converts;
    NumPy's float16 cast is slow, ~2 ms per 1024 x 1024 matrix).
    """
    arr = read_npy(path, shape)
    if not all_finite(arr):
        raise DumpError(f"{Path(path)}: contains NaN or Inf")
    return arr.astype(np.float32, copy=False) if as_float32 else arr


def load_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DumpError(f"{path}: file is missing")
    try:
        obj = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DumpError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise DumpError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


class RunDir:
    """Paths and validated readers for one run directory. No path string is spelled elsewhere."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # paths ---------------------------------------------------------------------------------
    def overview_npy(self, sid: str) -> Path:
        return self.root / "overview" / f"{sid}.npy"

    def overview_json(self, sid: str) -> Path:
        return self.root / "overview" / f"{sid}.json"

    def focus_dir(self, sid: str) -> Path:
        return self.root / "focus" / sid

    def focus_file(self, sid: str, name: str) -> Path:
        return self.focus_dir(sid) / name

    def mask_png(self, sid: str) -> Path:
        return self.root / "masks" / f"{sid}.png"

    def mask_rel(self, sid: str) -> str:
        return f"masks/{sid}.png"

    def evolve_records(self, rank: int) -> Path:
        return self.root / "evolve" / f"records-{rank}.jsonl"

    def evolve_records_files(self) -> list[Path]:
        return sorted((self.root / "evolve").glob("records-*.jsonl"))

    def panel_rel(self, sid: str) -> str:
        return f"panels/{sid}.png"

    def panel_png(self, sid: str) -> Path:
        return self.root / self.panel_rel(sid)

    @property
    def index_html(self) -> Path:
        return self.root / "index.html"

    def maps_npz(self, sid: str) -> Path:
        return self.root / "maps" / f"{sid}.npz"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.jsonl"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def failures(self) -> Path:
        return self.root / "failures.jsonl"

    def config(self, stage: str) -> Path:
        return self.root / f"{stage}_config.json"

    # validated readers ---------------------------------------------------------------------
    def load_overview(self, sid: str) -> tuple[np.ndarray, dict]:
        """Return (maps float32 (1 + n_layers, gh, gw), sidecar dict); raise DumpError on mismatch."""
        meta = load_json(self.overview_json(sid))
        for key in ("grid", "layers", "weights"):
            if key not in meta:
                raise DumpError(f"{self.overview_json(sid)}: sidecar lacks '{key}'")
        gh, gw = (int(v) for v in meta["grid"])
        maps = load_npy(self.overview_npy(sid), (1 + len(meta["layers"]), gh, gw))
        return maps, meta

    def overview_valid(self, sid: str) -> bool:
        try:
            self.load_overview(sid)
            return True
        except DumpError:
            return False

    def load_focus(self, sid: str, name: str, *, as_float32: bool = True) -> np.ndarray:
        """Load one stage-2 map as a float32 (N, N) query-by-key matrix (N = r*r on the 32 grid).

        ``as_float32=False`` keeps the stored dtype (float16 or float32), see :func:`load_npy`.
        """
        path = self.focus_file(sid, name)
        arr = load_npy(path, as_float32=as_float32)
        if arr.ndim == 3:  # (r, r, r*r) layout of self_32 / self_16
            r = arr.shape[0]
            if arr.shape != (r, r, r * r):
                raise DumpError(f"{path}: shape {arr.shape}, expected (r, r, r*r)")
            arr = arr.reshape(r * r, r * r)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise DumpError(f"{path}: shape {arr.shape}, expected a square (N, N) matrix")
        return arr

    def read_failures(self) -> list[dict]:
        if not self.failures.is_file():
            return []
        out = []
        for line in self.failures.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue  # a torn line from a killed process; the rest stays readable
        return out

    def append_failure(self, sid: str, stage: str, error: str) -> None:
        """Append one failure record (a single short ``write`` of one line, O_APPEND)."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"sample_id": sid, "stage": stage, "error": error}) + "\n"
        fd = os.open(self.failures, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

"""The run directory: the one package that knows where every file lives and how it is validated.

``RunDir`` holds the paths; each stage's dump readers and writers live beside it
(``rundir/overview.py``, ``rundir/focus.py``, ``rundir/evolve.py``); the layout is described for
users in docs/run-directory.md.

Layout (docs/run-directory.md)::

    RUN/overview/<sample_id>.npy        float32|float16 (1 + n_layers, gh, gw): [0] fused A_C, [1:] raw a_l
    RUN/overview/<sample_id>.json       sidecar: prompt, answer, layers, weights, grid, image size, model, dtype
    RUN/focus/<sample_id>/self_32.npy   (32, 32, 1024) averaged self-attention, rows = queries
    RUN/focus/<sample_id>/self_64to32_released.npy   (1024, 1024)
    RUN/focus/<sample_id>/self_64to32_corrected.npy  (1024, 1024)
    RUN/focus/<sample_id>/meta.json
    RUN/masks/<sample_id>.png           uint8 0/255 at the original image size
    RUN/evolve/records-<rank>.jsonl     stage-3 per-sample records, append-only (assembled into predictions.jsonl)
    RUN/maps/<sample_id>.npz            stage-3 soft maps (opt-in --save-maps)
    RUN/panels/<sample_id>.png, RUN/thumbs/<sample_id>.jpg, RUN/index.html   tools/visualize.py
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
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..maskpng import encode_mask_png
from ..npyio import DumpError, load_npy

# Stage 2 file names (the 16-grid and full-64 maps are opt-in extras).
FOCUS_SELF_32 = "self_32.npy"
FOCUS_64TO32 = {"released": "self_64to32_released.npy", "corrected": "self_64to32_corrected.npy"}
FOCUS_16TO32 = {"released": "self_16to32_released.npy", "corrected": "self_16to32_corrected.npy"}
FOCUS_FULL_64 = "self_64.npy"
FOCUS_SELF_16 = "self_16.npy"
FOCUS_CROSS = "cross_{r}.npy"
FOCUS_META = "meta.json"


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


# --------------------------------------------------------------------------------------- reading
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
    """Paths and validated readers for one run directory. No path string is spelled elsewhere.

    source: where the stage-1/2 dumps are read from (``--from RUN``), when it is not ``root``;
    everything stage 3 and the evaluation write (masks, records, predictions, metrics, maps,
    configs, failures) still goes to ``root``.
    """

    def __init__(self, root: str | os.PathLike, source: str | os.PathLike | None = None):
        self.root = Path(root)
        self.source = Path(source) if source is not None else self.root

    @property
    def reads_elsewhere(self) -> bool:
        """True when the upstream dumps come from another run directory (``--from``)."""
        return self.source.resolve() != self.root.resolve()

    # paths ---------------------------------------------------------------------------------
    def overview_npy(self, sid: str) -> Path:
        return self.source / "overview" / f"{sid}.npy"

    def overview_json(self, sid: str) -> Path:
        return self.source / "overview" / f"{sid}.json"

    def focus_dir(self, sid: str) -> Path:
        return self.source / "focus" / sid

    def focus_file(self, sid: str, name: str) -> Path:
        return self.focus_dir(sid) / name

    def mask_png(self, sid: str) -> Path:
        return self.root / "masks" / f"{sid}.png"

    def mask_tif(self, sid: str) -> Path:
        """Stage 3's ``--georef`` GeoTIFF of the mask, beside its PNG."""
        return self.root / "masks" / f"{sid}.tif"

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

    def thumb_rel(self, sid: str) -> str:
        return f"thumbs/{sid}.jpg"

    def thumb_jpg(self, sid: str) -> Path:
        return self.root / self.thumb_rel(sid)

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

    def load_focus(self, sid: str, name: str) -> np.ndarray:
        """Load one stage-2 map as a float32 (N, N) query-by-key matrix (N = r*r on the 32 grid)."""
        path = self.focus_file(sid, name)
        arr = load_npy(path)
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

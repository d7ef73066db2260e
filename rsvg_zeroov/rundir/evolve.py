"""Stage 3's files in the run directory (docs/run-directory.md): the mask PNGs, the optional maps
npz, and the per-sample records that ``predictions.jsonl`` is assembled from and resume trusts.

    RUN/masks/<sample_id>.png           uint8 0/255 at the original image size
    RUN/maps/<sample_id>.npz            c, a_cs, seeds, region, a_e on the 32 grid (--save-maps)
    RUN/evolve/records-<rank>.jsonl     one JSON line per sample (RECORD_KEYS)

One append-only JSON-lines file per rank, ``RUN/evolve/records-<rank>.jsonl``. The masks of a batch
are written without a per-file fsync; appending the batch's records first flushes the file system
once (``syncfs``), so no record reaches the disk before its mask, then writes the lines in one
``write`` and fsyncs them.

A record names the config fingerprint it was computed under and the size and CRC-32 of the mask
PNG it describes, so it counts only while the mask file on disk is exactly the one it was written
with: a mask lost or cut short by a crash, overwritten by a run with other settings, or edited by
hand makes its sample "not done" again. A torn last line (a killed process) is skipped. Reruns
append; of several records that match the mask on disk (identical masks, hence identical boxes)
the last one read is used.
"""
from __future__ import annotations

import io
import json
import os
import zlib
from collections import defaultdict

import numpy as np

from ..maskpng import png_hw
from . import RunDir, atomic_write_bytes, save_mask_png, sync_filesystem

PREDICTION_KEYS = ("sample_id", "box", "mask", "sam_score")
RECORD_KEYS = (*PREDICTION_KEYS, "config", "png_bytes", "png_crc32")


def make_record(sid: str, box, mask_rel: str, sam_score, fingerprint: str, png: bytes) -> dict:
    """The record of one sample whose mask file holds exactly ``png``."""
    return {"sample_id": sid, "box": box, "mask": mask_rel, "sam_score": sam_score, "config": fingerprint,
            "png_bytes": len(png), "png_crc32": zlib.crc32(png)}


def missing_upstream(run: RunDir, needs_focus: bool = True) -> str | None:
    """Why stage 3 cannot start in ``run`` at all (its stage-1/2 dump folders are absent), or None."""
    folders = {"stage 1 (llmattn.py)": run.source / "overview"}
    if needs_focus:
        folders["stage 2 (generate_diffusion.py)"] = run.source / "focus"
    absent = [f"{what}: {path}/" for what, path in folders.items() if not path.is_dir()]
    if not absent:
        return None
    hint = ("check the --from run directory" if run.reads_elsewhere else
            "run those stages into this folder first, or read their dumps from another run "
            "directory with --from RUN (an ablation into a new run folder)")
    return f"{run.source} has no dumps of {'; '.join(absent)}; {hint}"


def write_mask(run: RunDir, sid: str, mask: np.ndarray) -> bytes:
    """``RUN/masks/<sid>.png`` (atomic, not yet durable: :meth:`Records.append` flushes the batch);
    returns the file's bytes for the record."""
    return save_mask_png(run.mask_png(sid), mask, durable=False)


def write_maps(run: RunDir, sid: str, maps: dict[str, np.ndarray]) -> None:
    """``RUN/maps/<sid>.npz`` with the 32-grid maps by name (atomic, flushed with the batch)."""
    buf = io.BytesIO()
    np.savez(buf, **maps)
    atomic_write_bytes(run.maps_npz(sid), buf.getvalue(), durable=False)


class Records:
    """The records of a run directory (every rank's file), and appending to this rank's file."""

    def __init__(self, run: RunDir, rank: int = 0):
        self.run, self.path = run, run.evolve_records(rank)
        self._by_id: dict[str, list[dict]] = defaultdict(list)
        self.reload()

    def reload(self) -> None:
        """(Re)read every rank's file; lines that do not parse as a complete record are skipped."""
        self._by_id.clear()
        for path in self.run.evolve_records_files():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                rec = _parse(line)
                if rec is not None:
                    self._by_id[rec["sample_id"]].append(rec)

    def append(self, records: list[dict]) -> None:
        """Make the files written so far durable (the records' masks), then append the records in
        one write and fsync them."""
        if not records:
            return
        sync_filesystem(self.run.root)
        data = "".join(json.dumps(rec) + "\n" for rec in records).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # end a torn line left by a killed process; it stays unparsable
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        for rec in records:
            self._by_id[rec["sample_id"]].append(rec)

    def valid(self, sid: str, fingerprint: str, size: tuple[int, int] | None = None) -> dict | None:
        """A record of ``sid`` under ``fingerprint`` whose mask file is byte-for-byte the one it was
        written with (the last one read, if several), or None; with ``size`` = (H, W), also None
        unless the mask PNG has that size."""
        mask_rel = self.run.mask_rel(sid)
        candidates = [r for r in self._by_id.get(sid, ()) if r["config"] == fingerprint and r["mask"] == mask_rel]
        if not candidates:
            return None
        try:
            png = self.run.mask_png(sid).read_bytes()
        except OSError:
            return None
        if size is not None and png_hw(png) != tuple(size):
            return None
        n_bytes, crc = len(png), zlib.crc32(png)
        for rec in reversed(candidates):
            if rec["png_bytes"] == n_bytes and rec["png_crc32"] == crc:
                return rec
        return None


def _parse(line: str) -> dict | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict) or any(k not in rec for k in RECORD_KEYS):
        return None
    return rec if isinstance(rec["sample_id"], str) else None

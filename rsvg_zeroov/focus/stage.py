"""Stage 2 over a data set: the files of ``RUN/focus/<sample_id>/`` (CONTRACTS.md), resume, failures.

Per sample, written atomically and ``meta.json`` last (so a folder with a valid meta.json is complete):

    self_32.npy                    storage dtype (32, 32, 1024)  S_32, rows = queries
    self_64to32_released.npy       storage dtype (1024, 1024)
    self_64to32_corrected.npy      storage dtype (1024, 1024)
    meta.json                      model, steps, guidance, inversion mode, chunks, dtype, files (no timings: dumps are byte-reproducible)
    opt-in: self_64.npy (64, 64, 4096), self_16.npy (16, 16, 256), self_16to32_{released,corrected}.npy
            (1024, 1024), cross_<r>.npy (r, r, 77)

With the default float16 storage a sample takes 6 MB.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..rundir import (FOCUS_16TO32, FOCUS_64TO32, FOCUS_CROSS, FOCUS_FULL_64, FOCUS_META, FOCUS_SELF_16,
                      FOCUS_SELF_32, DumpError, RunDir, load_json, load_npy, save_json, save_npy)
from .config import FocusConfig

STAGE = "focus"
META_KEYS = ("model", "steps", "guidance", "inversion", "chunks", "dtype", "storage_dtype", "files")


def expected_files(config: FocusConfig) -> dict[str, tuple[int, ...]]:
    """File name -> shape of every map this config writes (defaults first, then opt-in extras)."""
    files = {FOCUS_SELF_32: (32, 32, 1024), FOCUS_64TO32["released"]: (1024, 1024),
             FOCUS_64TO32["corrected"]: (1024, 1024)}
    if config.save_full_64:
        files[FOCUS_FULL_64] = (64, 64, 4096)
    if config.save_self_16:
        files[FOCUS_SELF_16] = (16, 16, 256)
        files.update({name: (1024, 1024) for name in FOCUS_16TO32.values()})
    for r in config.cross_resolutions:
        files[FOCUS_CROSS.format(r=r)] = (r, r, None)
    return files


def load_meta(run: RunDir, sid: str) -> dict:
    """The sample's meta.json, checked for the keys readers rely on (DumpError naming the file)."""
    path = run.focus_file(sid, FOCUS_META)
    meta = load_json(path)
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise DumpError(f"{path}: lacks {missing}; delete the folder and rerun generate_diffusion.py")
    return meta


def settings_match(meta: dict, config: FocusConfig) -> bool:
    """Whether a sample's meta.json was written with this config's steps, guidance, inversion mode,
    storage dtype and (except in noise mode, which runs one forward) timesteps (951, ..., 1 by default;
    runs of earlier versions recorded 950, ..., 0 and match ``steps_offset=0``)."""
    if (meta.get("steps"), meta.get("guidance"), meta.get("inversion"), meta.get("storage_dtype")) != \
            (config.num_steps, config.guidance, config.inversion, config.storage_dtype):
        return False
    return config.inversion == "noise" or "timesteps" not in meta or meta["timesteps"] == list(config.timesteps)


def is_done(run: RunDir, sid: str, config: FocusConfig) -> bool:
    """True when meta.json (written with this config's steps, guidance and inversion mode) and every map
    this config asks for exist and validate (shape, dtype, finite); otherwise the sample is recomputed."""
    try:
        if not settings_match(load_meta(run, sid), config):
            return False
        for name, shape in expected_files(config).items():
            load_npy(run.focus_file(sid, name), shape)
    except DumpError:
        return False
    return True


def write_result(run: RunDir, sid: str, result, config: FocusConfig) -> None:
    """Save every map of a FocusResult in the storage dtype, then meta.json."""
    dtype = np.dtype(config.storage_dtype)
    files = result.files()
    shapes = expected_files(config)
    if set(files) != set(shapes):
        raise RuntimeError(f"{sid}: result holds {sorted(files)}, config expects {sorted(shapes)}")
    for name, arr in files.items():
        save_npy(run.focus_file(sid, name), np.asarray(arr, dtype=dtype))
    meta = dict(result.meta, storage_dtype=config.storage_dtype, files={name: list(arr.shape) for name, arr in files.items()},
                bytes=sum(int(np.asarray(a).size) * dtype.itemsize for a in files.values()))
    save_json(run.focus_file(sid, FOCUS_META), meta)


def run_focus(run: RunDir, samples: Sequence, focus, rank: int = 0):
    """Compute and save the Focus maps of ``samples`` not yet done; returns runner.StageReport.

    ``focus`` is loaded (``focus.load()``) only if some sample is not done; its ``ModelNotFound``
    propagates to the caller before any sample runs."""
    from ..runner import run_stage

    config = focus.config

    def process(batch):
        results = focus([(s.image_path, s.expression) for s in batch])
        for s, result in zip(batch, results):
            write_result(run, s.sample_id, result, config)

    return run_stage(STAGE, run, samples, lambda s: is_done(run, s.sample_id, config), process,
                     batch_size=config.batch_size, desc=f"focus[{rank}]", setup=focus.load)


def stage_config(config: FocusConfig, extra: dict | None = None) -> dict:
    """What ``RUN/focus_config.json`` records: every resolved setting (+ data set / shard / device)."""
    from ..models.registry import DEFAULT_SD
    from ..runner import jsonable

    return {"config": jsonable(config), "model": config.model or DEFAULT_SD, "files": {k: list(v) for k, v in expected_files(config).items()},
            **(extra or {})}

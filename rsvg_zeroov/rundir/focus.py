"""Stage 2's files in the run directory (docs/run-directory.md): the maps of ``RUN/focus/<sample_id>/``.

Per sample, written atomically and ``meta.json`` last (so a folder with a valid meta.json is complete):

    self_32.npy                    dump dtype (32, 32, 1024)  S_32, rows = queries
    self_64to32_released.npy       dump dtype (1024, 1024)
    self_64to32_corrected.npy      dump dtype (1024, 1024)
    meta.json                      model, steps, timesteps, guidance, inversion mode, chunks, dtype,
                                   storage_dtype, files (no timings: dumps are byte-reproducible)
    opt-in: self_64.npy (64, 64, 4096), self_16.npy (16, 16, 256), self_16to32_{released,corrected}.npy
            (1024, 1024), cross_<r>.npy (r, r, 77)

The dump dtype is float32 by default, as released (12 MiB a sample); float16 (``--dump-dtype``,
6 MiB) is recorded in meta.json as ``storage_dtype``. Readers accept both, so runs of earlier
versions (float16, timesteps 950 ... 0) stay readable. ``config`` below is a FocusConfig.
"""
from __future__ import annotations

import numpy as np

from . import (FOCUS_16TO32, FOCUS_64TO32, FOCUS_CROSS, FOCUS_FULL_64, FOCUS_META, FOCUS_SELF_16, FOCUS_SELF_32,
               DumpError, RunDir, load_json, load_npy, save_json, save_npy)

META_KEYS = ("model", "steps", "guidance", "inversion", "chunks", "dtype", "storage_dtype", "files")


def expected_files(config) -> dict[str, tuple[int | None, ...]]:
    """File name -> shape of every map this config writes (defaults first, then opt-in extras)."""
    files: dict[str, tuple[int | None, ...]] = {FOCUS_SELF_32: (32, 32, 1024), FOCUS_64TO32["released"]: (1024, 1024),
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


def settings_match(meta: dict, config) -> bool:
    """Whether a sample's meta.json was written with this config's model (when one is named), input
    size, resize filter,
    steps, guidance, inversion mode, storage dtype and (except in noise mode, which runs one forward) timesteps (951, ..., 1 by default;
    runs of earlier versions recorded 950, ..., 0 and match ``steps_offset=0``)."""
    if (meta.get("steps"), meta.get("guidance"), meta.get("inversion"), meta.get("storage_dtype")) != \
            (config.num_steps, config.guidance, config.inversion, config.storage_dtype):
        return False
    from ..models.diffusion import DIFFUSIONS

    if config.model is not None:  # a model named explicitly must be the one that made the maps
        entry = DIFFUSIONS.entry(config.model)
        if (meta.get("model_key") != entry.key) if entry is not None else (meta.get("model") != config.model):
            return False
    if meta.get("image_size", config.image_size) != config.image_size or meta.get("resize", config.resize) != config.resize:
        return False
    return config.inversion == "noise" or "timesteps" not in meta or meta["timesteps"] == list(config.timesteps)


def is_done(run: RunDir, sid: str, config) -> bool:
    """True when meta.json (written with these settings, :func:`settings_match`) and every map this
    config asks for exist and validate (shape, float16/float32, finite); otherwise it is recomputed."""
    try:
        if not settings_match(load_meta(run, sid), config):
            return False
        for name, shape in expected_files(config).items():
            load_npy(run.focus_file(sid, name), shape)
    except DumpError:
        return False
    return True


def write_result(run: RunDir, sid: str, result, config) -> None:
    """Save every map of a FocusResult in the config's dump dtype, then meta.json."""
    dtype = np.dtype(config.storage_dtype)
    files = result.files()
    shapes = expected_files(config)
    if set(files) != set(shapes):
        raise RuntimeError(f"{sid}: result holds {sorted(files)}, config expects {sorted(shapes)}")
    for name, arr in files.items():
        save_npy(run.focus_file(sid, name), np.asarray(arr, dtype=dtype))
    meta = dict(result.meta, storage_dtype=config.storage_dtype,
                files={name: list(arr.shape) for name, arr in files.items()},
                bytes=sum(int(np.asarray(a).size) * dtype.itemsize for a in files.values()))
    save_json(run.focus_file(sid, FOCUS_META), meta)

"""``RUN/<stage>_config.json``: every setting of a stage run, in one schema for all stages.

    {"stage", "config": {every setting}, "resolved": {model source, dtype, ...},
     "run": {dataset, root, split, limit, shard, world_size, device, source_run}, "versions"}

Written by :func:`rsvg_zeroov.runner.run_stage` (rank 0 only) before any work and again after the
stage's setup; read back, also from the layouts of earlier versions, by :func:`read_stage_config`
(``--config`` reruns, the visualizer, ``eval/compare.py``). Described in docs/run-directory.md.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from . import RunDir, load_json, save_json


def write_config(run: RunDir, stage: str, config: dict, rank: int = 0) -> None:
    """Write ``RUN/<stage>_config.json`` = ``{"stage": stage, **config, "versions": ...}`` (rank 0
    only, so shards do not race). Stages write it through :func:`write_stage_config`."""
    if rank != 0:
        return
    save_json(run.config(stage), {"stage": stage, **config, "versions": library_versions()})


def stage_config_body(stage, run_info: dict) -> dict:
    """The one schema of ``RUN/<stage>_config.json`` for every stage (the ``stage`` and
    ``versions`` keys are added by :func:`write_config`)::

        {"stage", "config": {every setting}, "resolved": {model source, dtype, ...},
         "run": {dataset, root, split, limit, shard, world_size, device, source_run}, "versions"}
    """
    settings = stage.settings()
    return {"config": jsonable(settings.get("config", {})), "resolved": jsonable(settings.get("resolved", {})),
            "run": jsonable(run_info)}


def write_stage_config(run: RunDir, stage, run_info: dict, rank: int = 0) -> None:
    """``RUN/<stage.name>_config.json`` of a :class:`rsvg_zeroov.runner.Stage` in the one schema."""
    write_config(run, stage.name, stage_config_body(stage, run_info), rank)


def read_stage_config(path: str | os.PathLike) -> dict:
    """``{"stage", "layout", "config", "resolved", "run", "versions"}`` of a stage config file, also from the layouts
    of earlier versions (stage 3 wrote its settings at the top level; stages 1-2 nested them under
    "config" with the rest at the top level). Raises DumpError naming the file."""
    raw = load_json(path)
    base = {"stage": raw.get("stage"), "versions": raw.get("versions", {})}
    if isinstance(raw.get("config"), dict) and isinstance(raw.get("run"), dict):
        return {**base, "layout": "current", "config": raw["config"], "resolved": raw.get("resolved", {}),
                "run": raw["run"]}
    top = {k: v for k, v in raw.items() if k not in ("stage", "config", "versions")}
    if isinstance(raw.get("config"), dict):  # earlier stages 1-2
        return {**base, "layout": "nested", "config": raw["config"], "resolved": top, "run": top}
    return {**base, "layout": "flat", "config": top, "resolved": {}, "run": top}  # earlier stage 3


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("rsvg-zeroov", "torch", "transformers", "diffusers", "segment-anything", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out



def jsonable(obj):
    """Dataclass/Path/tuple -> plain JSON types (for configs)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(obj):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj

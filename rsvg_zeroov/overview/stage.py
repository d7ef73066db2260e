"""Stage 1 driver: write ``RUN/overview/<sample_id>.npy`` + ``.json`` for a data set or one image.

Resume: a sample is done when its dump and sidecar load and validate (:meth:`RunDir.load_overview`)
and the sidecar matches this run's layers, weights and the sample's image size; anything else
(missing, truncated, wrong shape, other layers) is recomputed. Writes are atomic; per-sample
failures go to ``RUN/failures.jsonl`` (:func:`rsvg_zeroov.runner.run_stage`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..rundir import DumpError, RunDir, save_json, save_npy
from .config import OverviewConfig
from .model import Overview, OverviewResult

STAGE = "overview"
DUMP_LAYOUT = "float32 (1 + n_layers, gh, gw): [0] fused A_C, [1:] raw per-layer maps a_l in 'layers' order"


def is_done(run: RunDir, sid: str, config: OverviewConfig, image_size: tuple[int, int] | None = None) -> bool:
    """True when the sample's outputs exist, validate, and were made with these layers/weights."""
    try:
        _, meta = run.load_overview(sid)
    except DumpError:
        return False
    if [int(v) for v in meta["layers"]] != list(config.layers):
        return False
    if [round(float(v), 9) for v in meta["weights"]] != [round(w, 9) for w in config.weights]:
        return False
    return image_size is None or [int(v) for v in meta.get("image_size", ())] == list(image_size)


def sidecar(result: OverviewResult, overview: Overview, sid: str, image: str) -> dict:
    """The ``<sample_id>.json`` next to the dump (docs/run-directory.md, plus everything that decided the maps)."""
    settings = overview.settings()
    cfg = overview.config
    return {
        "sample_id": sid, "image": image, "prompt": result.prompt, "chat_prompt": result.chat_prompt,
        "answer": result.answer, "generated_token_ids": list(result.token_ids),
        "num_generated_tokens": len(result.token_ids), "grid": list(result.grid),
        "image_size": list(result.image_size), "resized_size": list(result.resized_size),
        "layers": list(cfg.layers), "weights": list(cfg.weights), "model": settings["model"],
        "model_key": settings["model_key"], "dtype": settings["dtype"], "generation": settings["generation"],
        "max_pixels": cfg.max_pixels, "min_pixels": cfg.min_pixels, "dump": DUMP_LAYOUT, "dump_dtype": "float32",
    }


def write_result(run: RunDir, sid: str, result: OverviewResult, overview: Overview, image: str) -> None:
    """Dump then sidecar, each atomically (a dump without its sidecar is not 'done' and is redone)."""
    save_npy(run.overview_npy(sid), result.dump())
    save_json(run.overview_json(sid), sidecar(result, overview, sid, image))


def run_dataset(run: RunDir, samples: Sequence, config: OverviewConfig, device: str, rank: int = 0,
                world: int = 1):
    """Process this shard's samples; returns the :class:`rsvg_zeroov.runner.StageReport`."""
    from ..runner import run_stage

    extra: dict = {"world_size": world}
    overview = Overview(config, device)

    def setup() -> None:  # only when a sample needs it: a fully resumed run loads nothing
        overview.load()  # a missing model / bad layer: one error, before any sample
        _write_stage_config(run, config, device, rank, extra, overview)  # with the resolved settings

    def done(sample) -> bool:
        return is_done(run, sample.sample_id, config, (sample.width, sample.height))

    def process(batch) -> None:
        results = overview([(s.image_path, s.expression) for s in batch])  # the path, as released
        for s, result in zip(batch, results):
            write_result(run, s.sample_id, result, overview, str(s.image_path))

    _write_stage_config(run, config, device, rank, extra)
    return run_stage(STAGE, run, samples, done, process, batch_size=config.batch_size, setup=setup)


def run_single(out: str | Path, image_path: str | Path, question: str, config: OverviewConfig,
               device: str) -> tuple[Path, OverviewResult]:
    """One image (the released interface): writes ``OUT/overview/<image stem>.npy`` + ``.json``."""
    run, sid = RunDir(out), Path(image_path).stem
    overview = Overview(config, device).load()
    result = overview([(image_path, question)])[0]
    write_result(run, sid, result, overview, str(image_path))
    _write_stage_config(run, config, device, 0, extra={"image_path": str(image_path)}, overview=overview)
    return run.overview_npy(sid), result


def _write_stage_config(run: RunDir, config: OverviewConfig, device: str, rank: int, extra: dict,
                        overview: Overview | None = None) -> None:
    from ..runner import jsonable, write_config

    body = {"config": jsonable(config), "device": device, "dump": DUMP_LAYOUT, **extra}
    if overview is not None and overview.model is not None:
        body.update(overview.settings())
    write_config(run, STAGE, body, rank)

"""Stage 1 driver: ``RUN/overview/<sample_id>.npy`` + ``.json`` for a data set or one image.

:class:`OverviewStage` is the :class:`rsvg_zeroov.runner.Stage` of stage 1. Resume: a sample is
done when its dump and sidecar load and validate and the sidecar matches this run's layers,
weights and the sample's image size (:func:`rsvg_zeroov.rundir.overview.is_done`); anything else
(missing, truncated, wrong shape, other layers) is recomputed. Writes are atomic; per-sample
failures (an unreadable or too small image, an empty expression, an error) go to
``RUN/failures.jsonl`` (:func:`rsvg_zeroov.runner.run_stage`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..images import MIN_SIDE
from ..rundir import RunDir
from ..rundir import overview as dumps
from .config import OverviewConfig
from .fuse import released_heatmap
from .model import Overview, OverviewResult

STAGE = "overview"


class OverviewStage:
    """Stage 1 for :func:`rsvg_zeroov.runner.run_stage`: the model is loaded in :meth:`setup`, only
    when some sample is not done."""

    name = STAGE
    min_image_side = MIN_SIDE  # the VLM's 28-pixel cell: smaller images are recorded as failed

    def __init__(self, run: RunDir, config: OverviewConfig, device: str = "cpu", overview: Overview | None = None):
        self.run, self.config = run, config
        self.overview = overview or Overview(config, device)
        self._planned: tuple | None = None

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    def settings(self) -> dict:
        resolved = self.overview.resolved() if self.overview.model is not None else {}
        return {"config": self.config, "resolved": {**resolved, "dump": dumps.DUMP_LAYOUT} if resolved else {}}

    def setup(self) -> None:
        if self.overview.model is None:
            self.overview.load()  # a missing model / bad layer: one error, before any sample

    def layers(self) -> tuple | None:
        """The layers this run captures: the loaded model's, else decided from the model's entry or
        config.json without loading it (None when that cannot be told: nothing counts as done)."""
        if self.overview.model is not None:
            return self.overview.config.layers
        if self._planned is None:
            from .layers import planned_layers

            self._planned = planned_layers(self.config)
        return self._planned

    def is_done(self, sample) -> bool:
        layers = self.layers()
        return layers is not None and dumps.is_done(self.run, sample.sample_id, layers, self.config.weights,
                                                    (sample.height, sample.width), self.config)

    def process(self, batch: Sequence) -> None:
        results = self.overview([(s.image_path, s.expression) for s in batch])  # the path, as released
        settings = self.overview.resolved()  # once per batch: it copies the generation config
        for s, result in zip(batch, results):
            self.write(s.sample_id, result, str(s.image_path), settings)

    def write(self, sid: str, result: OverviewResult, image: str, settings: dict | None = None) -> None:
        settings = settings if settings is not None else self.overview.resolved()
        dumps.write_result(self.run, sid, result, image, self.overview.config, settings)

    def finalize(self, samples: Sequence) -> None:
        pass


def run_dataset(run: RunDir, samples: Sequence, config: OverviewConfig, device: str, rank: int = 0,
                world: int = 1, run_info: dict | None = None):
    """Process this shard's samples; returns the :class:`rsvg_zeroov.runner.StageReport`."""
    from ..runner import run_stage

    info = {"world_size": world, "device": device} if run_info is None else run_info
    return run_stage(OverviewStage(run, config, device), run, samples, rank=rank, run_info=info)


def run_single(out: str | Path, image_path: str | Path, question: str, config: OverviewConfig,
               device: str, run_info: dict | None = None) -> tuple[Path, OverviewResult]:
    """One image (the released interface): ``OUT/overview/<image stem>.npy`` + ``.json``, and the
    released float64 ``OUT/heatmap_<layers>.npy``. Checks the image and the expression first."""
    from ..images import check_expression, check_image
    from ..runner import write_stage_config

    check_image(image_path)
    check_expression(question)
    stage = OverviewStage(RunDir(out), config, device)
    stage.setup()
    sid = Path(image_path).stem
    result = stage.overview([(image_path, question)])[0]
    stage.write(sid, result, str(image_path))
    dumps.write_heatmap(out, result.layers, released_heatmap(result.per_layer, config.weights))
    write_stage_config(stage.run, stage, {"image_path": str(image_path), "device": device, **(run_info or {})})
    return stage.run.overview_npy(sid), result

"""Stage 2 over a data set: :class:`FocusStage`, the :class:`rsvg_zeroov.runner.Stage` of the Focus maps.

The files of ``RUN/focus/<sample_id>/``, their validation and resume rule live in
:mod:`rsvg_zeroov.rundir.focus` (re-exported here). The model is loaded in :meth:`FocusStage.setup`,
only when some sample is not done; ``RUN/focus_config.json`` is written by
:func:`rsvg_zeroov.runner.run_stage` in the schema shared by every stage; per-sample failures go to
``RUN/failures.jsonl``.
"""
from __future__ import annotations

from typing import Sequence

from ..rundir import RunDir
from ..rundir.focus import META_KEYS, expected_files, is_done, load_meta, settings_match, write_result  # noqa: F401
from .config import FocusConfig

STAGE = "focus"


class FocusStage:
    """Stage 2 for :func:`rsvg_zeroov.runner.run_stage`. ``focus``: a :class:`~.model.Focus` (built
    from ``config`` and ``device`` when not given; one already attached to a model is used as it is)."""

    name = STAGE

    def __init__(self, run: RunDir, config: FocusConfig | None = None, device: str = "cpu", focus=None):
        from .model import Focus

        self.run = run
        self.focus = focus if focus is not None else Focus(config or FocusConfig(), device)
        self.config = self.focus.config

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    def settings(self) -> dict:
        """The config, and what it resolves to: timesteps and files, plus the model once loaded."""
        resolved = {"timesteps": list(self.config.timesteps),
                    "files": {k: list(v) for k, v in expected_files(self.config).items()}}
        if self.focus.sd is not None:
            resolved.update(self.focus.resolved())
        return {"config": self.config, "resolved": resolved}

    def setup(self) -> None:
        if self.focus.sd is None:
            self.focus.load()  # a missing model: one error, before any sample

    def is_done(self, sample) -> bool:
        return is_done(self.run, sample.sample_id, self.config)

    def process(self, batch: Sequence) -> None:
        results = self.focus([(s.image_path, s.expression) for s in batch])  # the path, read as released
        for s, result in zip(batch, results):
            write_result(self.run, s.sample_id, result, self.config)

    def finalize(self, samples: Sequence) -> None:
        pass


def run_dataset(run: RunDir, samples: Sequence, config: FocusConfig, device: str = "cpu", rank: int = 0,
                world: int = 1, run_info: dict | None = None, focus=None):
    """Compute and save the Focus maps of this shard's samples not yet done; returns the
    :class:`rsvg_zeroov.runner.StageReport`. A missing model raises before any sample runs."""
    from ..runner import run_stage

    info = {"world_size": world, "device": device} if run_info is None else run_info
    return run_stage(FocusStage(run, config, device, focus), run, samples, rank=rank, run_info=info)


def run_focus(run: RunDir, samples: Sequence, focus, rank: int = 0):
    """The earlier entry point: :func:`run_dataset` with a :class:`~.model.Focus` (loaded in setup)."""
    return run_dataset(run, samples, focus.config, str(focus.device), rank, focus=focus)

"""Stage 3 in worker processes (the default without a refiner where the platform can fork): the same
files as with threads, per-sample failures recorded as with threads, a worker that dies."""
import os

import numpy as np
import pytest

from evolve_helpers import cli, make_crafted_run, read_evolve_config, read_jsonl
from rsvg_zeroov.evolve import workers
from rsvg_zeroov.rundir import FOCUS_64TO32, save_npy

pytestmark = pytest.mark.skipif(not workers.can_fork(), reason="worker processes need a platform that can fork")


def _files(run) -> dict:
    """Every file stage 3 wrote, by path relative to the run (config excluded), as bytes."""
    out = {p.relative_to(run.root).as_posix(): p.read_bytes()
           for sub in ("masks", "evolve") for p in sorted((run.root / sub).rglob("*")) if p.is_file()}
    out["predictions.jsonl"] = run.predictions.read_bytes()
    return out


def test_processes_write_what_threads_write(tmp_path):
    runs = {}
    for kind, extra in (("processes", ()), ("threads", ("--threads",))):
        jsonl, run, _ = make_crafted_run(tmp_path / kind)
        assert cli(jsonl, run, "--no-sam", "--workers", "2", "--batch-size", "3", *extra) == 0
        assert read_evolve_config(run)["resolved"]["worker_kind"] == kind
        runs[kind] = run
    assert _files(runs["processes"]) == _files(runs["threads"])
    assert len(read_jsonl(runs["processes"].predictions)) == 4


def test_a_failing_sample_reads_the_same_and_a_dead_worker_is_one_failure(tmp_path, monkeypatch):
    from rsvg_zeroov.evolve.stage import EvolveStage

    messages = {}
    for kind, extra in (("processes", ()), ("threads", ("--threads",))):
        jsonl, run, _ = make_crafted_run(tmp_path / kind)
        save_npy(run.focus_file("b1", FOCUS_64TO32["released"]), np.zeros((512, 512), np.float32))
        assert cli(jsonl, run, "--no-sam", "--workers", "2", *extra) == 1
        messages[kind] = {f["sample_id"]: f["error"].replace(str(tmp_path / kind), "RUN") for f in run.read_failures()}
    assert messages["processes"] == messages["threads"] and set(messages["threads"]) == {"b1"}
    assert messages["threads"]["b1"].startswith("DumpError: RUN/run/focus/b1/")

    # a worker killed while it works on a2: the batch fails, the runner retries each sample alone on
    # a new pool, a2 is recorded as failed (it kills its worker again) and the others complete
    whole = EvolveStage._whole

    def dies_on_a2(self, sample):
        if sample.sample_id == "a2":
            os._exit(3)
        return whole(self, sample)

    monkeypatch.setattr(EvolveStage, "_whole", dies_on_a2)
    jsonl, run, _ = make_crafted_run(tmp_path / "dies")
    assert cli(jsonl, run, "--no-sam", "--workers", "2") == 1
    failures = run.read_failures()
    assert [f["sample_id"] for f in failures] == ["a2"] and "worker process died" in failures[0]["error"]
    assert sorted(p["sample_id"] for p in read_jsonl(run.predictions)) == ["a1", "b1", "z1"]


class _Unpicklable(Exception):
    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")


def test_an_exception_that_cannot_be_pickled_keeps_its_name_and_message():
    sent = workers._portable(_Unpicklable("x.npy", "broken"))
    assert sent == ("_Unpicklable", "x.npy: broken")
    back = workers._restored(sent)
    assert type(back).__name__ == "_Unpicklable" and str(back) == "x.npy: broken"
    plain = ValueError("fine")
    assert workers._portable(plain) is plain and workers._restored(plain) is plain


def test_when_processes_are_used():
    assert workers.use_processes(None, 2, None) is True
    assert workers.use_processes(None, 1, None) is False  # one worker: no pool
    assert workers.use_processes(None, 4, "vit_h") is False  # the refiner's model stays in one process
    assert workers.use_processes(False, 4, None) is False
    with pytest.raises(ValueError, match="a refiner runs in the stage's own process"):
        workers.use_processes(True, 4, "tiny")

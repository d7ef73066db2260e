"""The K / tau / alpha sweep on cached dumps: grid parsing, one pass, agreement with the stage."""
import csv

import pytest

from evolve_helpers import CRAFTED, cli, exit_status, make_crafted_run, read_mask
from rsvg_zeroov.evolve.config import EvolveConfig
from rsvg_zeroov.evolve.sweep import SWEEP_CSV, SWEEP_MD, SWEEP_STAGE, Setting, parse_grid

GRID = "k=1,7 tau=0.3,0.6 alpha=0.4,0.9"


@pytest.fixture
def crafted(tmp_path):
    return make_crafted_run(tmp_path)


def test_parse_grid():
    cfg = EvolveConfig()
    assert parse_grid("k=5,7", cfg) == [Setting(5, 0.3, 0.4), Setting(7, 0.3, 0.4)]
    assert len(parse_grid("k=5,7,9 tau=0.2,0.3,0.4 alpha=0.3,0.4,0.5", cfg)) == 27
    assert parse_grid("", cfg.override(k=3)) == [Setting(3, 0.3, 0.4)]
    assert Setting(7, 0.3, 0.4).is_paper and not Setting(7, 0.3, 0.5).is_paper
    for bad in ("k=", "beta=1", "k=a", "k=0", "tau"):
        with pytest.raises(ValueError, match="--sweep"):
            parse_grid(bad, cfg)


def _rows(run):
    with open(run.root / SWEEP_CSV) as f:
        return {(int(r["k"]), float(r["tau"]), float(r["alpha"])): r for r in csv.DictReader(f)}


def _stage_metrics(jsonl, run, k, tau, alpha):
    """Run the stage with one setting, score its written masks with the evaluation API."""
    from rsvg_zeroov.datasets import load_samples
    from rsvg_zeroov.evaluation.scoring import score_sample, summarize

    assert cli(jsonl, run, "--no-sam", "--k", str(k), "--tau", str(tau), "--alpha", str(alpha)) == 0
    scores = [score_sample(read_mask(run.mask_png(s.sample_id)), s.load_mask(), s.box, "zeroov")
              for s in load_samples("jsonl", jsonl, "test")]
    return summarize(scores, "zeroov")


def test_sweep_scores_every_setting_like_the_stage(crafted):
    jsonl, run, _ = crafted
    assert cli(jsonl, run, "--sweep", GRID) == 0
    rows = _rows(run)
    assert len(rows) == 8
    default = rows[(7, 0.3, 0.4)]
    assert default["paper_default"] == "True" and sum(r["paper_default"] == "True" for r in rows.values()) == 1
    # 3 of 4 samples are exactly right, the empty one misses: 75 %
    assert float(default["rsrec_mIoU"]) == pytest.approx(75.0)
    assert float(default["rsres_mIoU"]) == pytest.approx(75.0)
    assert float(default["rsres_Pr@0.5"]) == pytest.approx(75.0)
    for setting in ((7, 0.3, 0.4), (1, 0.6, 0.9)):
        ref = _stage_metrics(jsonl, run, *setting)
        for task in ("rsrec", "rsres"):
            for metric in ("mIoU", "Pr@0.5"):
                assert float(rows[setting][f"{task}_{metric}"]) == pytest.approx(ref[task][metric], abs=1e-3)
    md = (run.root / SWEEP_MD).read_text()
    assert md.count("\n| ") == 1 + 8 and "(paper)" in md and "RSRES mIoU" in md
    assert (run.root / "sweep_config.json").is_file()


def test_sweep_writes_no_predictions_and_scores_missing_dumps_as_misses(crafted):
    jsonl, run, _ = crafted
    run.overview_npy("a1").unlink()
    assert cli(jsonl, run, "--sweep", "k=7") == 1
    assert not run.predictions.exists() and not (run.root / "masks").exists()
    fails = [f for f in run.read_failures() if f["stage"] == SWEEP_STAGE]
    assert [f["sample_id"] for f in fails] == ["a1"] and "a1.npy" in fails[0]["error"]
    row = _rows(run)[(7, 0.3, 0.4)]
    assert float(row["rsres_mIoU"]) == pytest.approx(50.0) and int(row["n"]) == len(CRAFTED)
    assert "without dumps" in (run.root / SWEEP_MD).read_text()
    # a later sweep with the dump back replaces the stale failure records
    make_crafted_run(run.root.parent)
    assert cli(jsonl, run, "--sweep", "k=7") == 0
    assert [f for f in run.read_failures() if f["stage"] == SWEEP_STAGE] == []


def test_bad_sweep_arguments_exit_2(crafted, capsys):
    jsonl, run, _ = crafted
    assert exit_status(cli, jsonl, run, "--sweep", "gamma=1") == 2
    assert exit_status(cli, jsonl, run, "--sweep", "k=7", "--protocol", "nope") == 2
    assert "--sweep" in capsys.readouterr().err

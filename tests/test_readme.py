"""The README is a contract: every command it shows is listed here and run (tiny models, synthetic data).

Where each command runs:
- ``make setup`` / ``make test``: CI (``.ci/run`` is exactly ``make test``, which runs setup first);
- ``make demo``: below, with the quick stage-2 settings the demo script documents;
- ``python ground.py ...``: tests/test_ground.py (``--tiny``); the two "Your own imagery" commands and
  that section's Python block: tests/test_scene.py (``--tiny``, generated GeoTIFFs);
- ``python llmattn.py --image_path ...`` (the released one-image interface) and
  ``python -m rsvg_zeroov.models``: below;
- the "From Python" block: below, with ``PipelineConfig.quick_tiny()`` and a synthetic image;
- ``python -m rsvg_zeroov.datasets ...``: below and tests/test_datasets_cli.py;
- the four "Reproducing the paper" commands and the ``--from`` ablation block after them: below, on
  a synthetic RRSIS-D-format set, with ``--model tiny`` / ``--sam-type tiny`` and quick generation
  settings appended;
- the multi-GPU ``NUM_GPUS=... bash llmattn.sh / generate_diffusion.sh``: tests/test_robustness.py
  (``NUM_GPUS=2``, torchrun on the CPU, byte-identical to one process);
- the multi-node ``NNODES=2 NODE_RANK=... bash llmattn.sh``: tests/test_robustness.py (two launches on
  this machine, one process each, meeting at MASTER_ADDR:MASTER_PORT; byte-identical to one process);
- ``python app.py ...`` and ``bash scripts/screenshot_app.sh ...``: tests/test_app.py (``--tiny``
  with quick settings; the real models' command stops at start, their weights being absent);
- ``python tools/visualize.py`` and ``bash scripts/screenshot_index.sh``: tests/test_visualize.py;
- ``python -m rsvg_zeroov.reproduce ...`` and ``bash reproduce.sh ...``: tests/test_reproduce.py.
"""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

SHOWN = [
    "make setup", "make demo", "make test",
    'python ground.py --image scene.jpg --text "the storage tank left of the road" --out grounded/',
    'python ground.py --image scene.tif --text "the storage tank" --vector gpkg --out grounded/',
    "python ground.py --image scene.tif --bands 3,2,1 --texts phrases.txt --vector gpkg,geojson --simplify 0.5 "
    "--out grounded/",
    'python llmattn.py --image_path scene.jpg --question "the plane on the left" --out grounded/',
    "python -m rsvg_zeroov.models",
    "python -m rsvg_zeroov.datasets --dataset rrsisd --root datasets/rrsisd --split test | head",
    "DATASET=rrsisd ROOT=datasets/rrsisd SPLIT=test NUM_GPUS=8 bash llmattn.sh",
    "DATASET=rrsisd ROOT=datasets/rrsisd SPLIT=test NUM_GPUS=8 bash generate_diffusion.sh",
    "NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 MASTER_PORT=29500 NUM_GPUS=8 DATASET=rrsisd ROOT=datasets/rrsisd "
    "bash llmattn.sh",
    "python tools/visualize.py --dataset rrsisd --root datasets/rrsisd --split test --out outputs/rrsisd_test",
    "bash scripts/screenshot_index.sh outputs/rrsisd_test",
    "python app.py --tiny", "python app.py --vlm qwen2.5-vl-7b --sd sd-v1-4 --refiner vit_h",
    "bash scripts/screenshot_app.sh docs/app_screenshot.png",
    "python -m rsvg_zeroov.reproduce --dataset rrsisd --root datasets/rrsisd --split test --out outputs/rrsisd_test",
    "DATASET=rrsisd ROOT=datasets/rrsisd SPLIT=test OUT=outputs/rrsisd_test bash reproduce.sh --table ablation --no-sam",
]
QUICK = {"llmattn.py": ["--model", "tiny", "--max-new-tokens", "4"],
         "generate_diffusion.py": ["--model", "tiny", "--inversion", "ddim", "--steps", "2"],
         "rs_evolve.py": ["--sam-type", "tiny"], "eval/evaluate.py": [], "eval/compare.py": []}


def _bash_blocks() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        lines += [ln.split("  #")[0].strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    return lines


def test_every_shown_command_is_known_to_this_file():
    shown = _bash_blocks()
    reproduce = [c for c in shown if c not in SHOWN and any(c.startswith(f"python {s}") for s in QUICK)]
    assert len(reproduce) >= 4, "the 'Reproducing the paper' block lost a stage"
    unknown = [c for c in shown if c not in SHOWN and c not in reproduce]
    assert not unknown, f"README shows commands no test runs: {unknown}"
    for cmd in SHOWN:
        assert cmd in shown, f"README no longer shows {cmd!r}; update SHOWN and its test"


@pytest.fixture(scope="module")
def rrsisd(tmp_path_factory):
    from rsvg_zeroov.synthetic import write_dataset

    return write_dataset("rrsisd", tmp_path_factory.mktemp("rrsisd"), n=2, size=96)


def _env(tiny_dir):
    return dict(os.environ, RSVG_ZEROOV_TINY_DIR=str(tiny_dir), HF_HUB_OFFLINE="1")


def _run_shown(cmd: str, rrsisd: Path, outputs: Path, tiny_dir) -> subprocess.CompletedProcess:
    argv = shlex.split(cmd.replace("datasets/rrsisd", str(rrsisd)).replace("outputs/", f"{outputs}/"))
    argv = [sys.executable, str(REPO / argv[1]), *argv[2:], *QUICK[argv[1]]]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(tiny_dir), cwd=REPO, timeout=600)
    assert proc.returncode == 0, (cmd, proc.stderr[-2000:])
    return proc


def test_reproduce_commands_run_in_order(rrsisd, tiny_dir, tmp_path):
    outputs = tmp_path / "outputs"
    run = outputs / "rrsisd_test"
    commands = [c for c in _bash_blocks() if "--dataset rrsisd" in c and c.startswith("python ")
                and any(c.startswith(f"python {s}") for s in QUICK)]
    base = [c for c in commands if c.endswith("--out outputs/rrsisd_test")]
    assert [c.split()[1] for c in base] == ["llmattn.py", "generate_diffusion.py", "rs_evolve.py",
                                            "eval/evaluate.py"]
    for cmd in base:
        proc = _run_shown(cmd, rrsisd, outputs, tiny_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"] == "rrsisd" and metrics["n"] == 2 and "rsres" in metrics
    assert "31.39" in proc.stdout  # the paper's numbers are printed beside ours
    # the --from ablation block: a new run folder from the same dumps, evaluated and compared
    ablation = [c for c in _bash_blocks() if "--from outputs/rrsisd_test" in c or "rrsisd_test_nosam" in c]
    assert [c.split()[1] for c in ablation] == ["rs_evolve.py", "eval/evaluate.py", "eval/compare.py"]
    for cmd in ablation:
        proc = _run_shown(cmd, rrsisd, outputs, tiny_dir)
    new = outputs / "rrsisd_test_nosam"
    assert (new / "metrics.json").is_file() and not (new / "overview").exists() and not (new / "focus").exists()
    assert "rrsisd_test" in proc.stdout and "rrsisd_test_nosam" in proc.stdout


def test_models_listing_and_released_one_image_commands(tiny_dir, tmp_path):
    listing = subprocess.run([sys.executable, "-m", "rsvg_zeroov.models"], capture_output=True, text=True,
                             cwd=REPO, env=_env(tiny_dir), timeout=120)
    assert listing.returncode == 0 and "| vlm | qwen2.5-vl-7b |" in listing.stdout
    assert "| refiner | vit_h |" in listing.stdout and "| diffusion | sd-v1-4 |" in listing.stdout
    cmd = next(c for c in _bash_blocks() if c.startswith("python llmattn.py --image_path"))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(
        tmp_path / "scene.jpg")
    argv = [sys.executable, str(REPO / "llmattn.py"), *shlex.split(cmd)[2:], "--model", "tiny",
            "--max-new-tokens", "4"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=_env(tiny_dir), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    heatmap = np.load(tmp_path / "grounded" / "heatmap_16171819.npy")
    assert heatmap.dtype == np.float64 and heatmap.shape[0] == 5
    assert (tmp_path / "grounded" / "overview" / "scene.npy").is_file()


def test_python_example_runs(tiny_dir, tmp_path, monkeypatch):
    block = re.search(r"## From Python\n\n```python\n(.*?)```", README, flags=re.S).group(1)
    assert len(block.strip().splitlines()) == 5 and "PipelineConfig()" in block
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "scene.jpg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(block.replace("PipelineConfig()", "PipelineConfig.quick_tiny()"), namespace)  # noqa: S102 - our README
    result = namespace["result"]
    assert result.mask.shape == (64, 64) and result.mask.dtype == bool and namespace["mask"] is result.mask


def test_dataset_listing_command(rrsisd):
    proc = subprocess.run([sys.executable, "-m", "rsvg_zeroov.datasets", "--dataset", "rrsisd", "--root",
                           str(rrsisd), "--split", "test"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    assert {"sample_id", "image", "expression", "box", "mask_area"} <= set(json.loads(proc.stdout.splitlines()[0]))


GOLDEN = Path(__file__).parent / "golden" / "demo_quick.json"


def test_make_demo_quick(tiny_dir, tmp_path):
    """The demo runs end to end, and its dumps, masks and metrics are byte-identical to the hashes
    recorded in tests/golden/demo_quick.json (one thread: the thread count changes float reductions).
    A change that is meant to change an output updates that file in the same commit and says why."""
    from golden_hashes import run_hashes

    env = dict(_env(tiny_dir), DEMO_DIR=str(tmp_path / "demo"), DEMO_N="2", OMP_NUM_THREADS="1",
               DEMO_STAGE1_ARGS="--max-new-tokens 4", DEMO_STAGE2_ARGS="--inversion ddim --steps 2",
               PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "RANDOM-WEIGHT" in proc.stdout and "| RSREC (box) |" in proc.stdout
    run = tmp_path / "demo" / "run"
    for name in ("metrics.json", "predictions.jsonl", "index.html", "overview_config.json",
                 "focus_config.json", "evolve_config.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "panels").glob("*.png"))) == 2
    log = proc.stdout + proc.stderr
    assert log.count("bbox convention detected") == 1, "the data set's note is shown once per demo"
    assert not [p for p in run.rglob("*.lock")], "no lock files left after a clean finish"
    makefile = (REPO / "Makefile").read_text()
    assert "scripts/demo.sh" in makefile  # `make demo` is this script
    hashes = run_hashes(run)
    if os.environ.get("RSVG_ZEROOV_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    assert hashes == json.loads(GOLDEN.read_text())

"""Scale-out and hard faults, end to end on the tiny offline models (issue: torchrun, SIGKILL, hostile input).

- torchrun --nproc_per_node 2 (CPU, gloo) gives byte-identical outputs to one process, per stage;
- a stage killed with SIGKILL part-way and rerun ends byte-identical to an uninterrupted run, and no
  partial file is ever visible under its final name;
- two runs with the same inputs give identical dumps (determinism on the CPU: every comparison here);
- damaged images and awkward expressions are recorded or handled, never a crash of the run.

Both sides of every byte comparison run with OMP_NUM_THREADS=1: on the CPU the number of threads
changes the order of float reductions (torchrun itself defaults to one thread per process).
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsvg_zeroov.runner import read_stage_config

REPO = Path(__file__).resolve().parents[1]
STAGE1 = ["llmattn.py", "--model", "tiny", "--max-new-tokens", "4"]
# null-text optimisation itself is covered by tests/test_focus_inversion.py; here the cheap DDIM inversion
STAGE2 = ["generate_diffusion.py", "--model", "tiny", "--steps", "2", "--inversion", "ddim"]
STAGE3 = ["rs_evolve.py", "--sam-type", "tiny"]


def _env(tiny_dir):
    return dict(os.environ, RSVG_ZEROOV_TINY_DIR=str(tiny_dir), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
                PYTHONUNBUFFERED="1")


def _data_args(root, out):
    return ["--dataset", "jsonl", "--root", str(root), "--split", "test", "--out", str(out)]


def _run(stage, root, out, tiny_dir, *extra, torchrun=False, check=True):
    script, *flags = stage
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] \
        if torchrun else [sys.executable]
    proc = subprocess.run([*launcher, str(REPO / script), *_data_args(root, out), *flags, *extra],
                          capture_output=True, text=True, env=_env(tiny_dir), cwd=REPO, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _tree(run: Path) -> dict:
    """sha1 of every output file of a run (configs excluded: they record the launch, not results).

    Stage 3's record files (one per rank) enter as one entry: the sorted set of all their lines.
    """
    out, records = {}, set()
    for p in sorted(run.rglob("*")):
        rel = p.relative_to(run).as_posix()
        if not p.is_file() or rel.endswith("_config.json") or p.name.startswith("."):
            continue
        if rel.startswith("evolve/records-"):
            records.update(p.read_text().splitlines())
        else:
            out[rel] = hashlib.sha1(p.read_bytes()).hexdigest()
    if records:
        out["evolve/records-*.jsonl"] = hashlib.sha1("\n".join(sorted(records)).encode()).hexdigest()
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from rsvg_zeroov.synthetic import write_dataset

    return write_dataset("jsonl", tmp_path_factory.mktemp("data"), n=3, size=96)


@pytest.fixture(scope="module")
def reference(data, tiny_dir, tmp_path_factory):
    """One uninterrupted single-process run of all three stages."""
    run = tmp_path_factory.mktemp("ref") / "run"
    for stage in (STAGE1, STAGE2, STAGE3):
        _run(stage, data, run, tiny_dir)
    return run


def test_reference_run_is_complete(reference):
    """Determinism itself is shown by every comparison below: each is a second, independent run
    (other processes, other order, resumed after a kill) that must reproduce these bytes."""
    tree = _tree(reference)
    for sid in ("syn-0000", "syn-0002"):
        assert f"overview/{sid}.npy" in tree and f"focus/{sid}/meta.json" in tree and f"masks/{sid}.png" in tree
    assert len(Path(reference, "predictions.jsonl").read_text().splitlines()) == 3


def _launch_sh(script, data, run, tiny_dir, extra):
    """The README's multi-GPU form: DATASET=... NUM_GPUS=2 bash <stage>.sh (torchrun, gloo on the CPU)."""
    env = dict(_env(tiny_dir), DATASET="jsonl", ROOT=str(data), SPLIT="test", OUT=str(run), MODEL="tiny",
               NUM_GPUS="2", EXTRA_ARGS=" ".join(extra), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO / script)], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_torchrun_two_processes_equal_one(reference, data, tiny_dir, tmp_path):
    run = tmp_path / "tr"
    _launch_sh("llmattn.sh", data, run, tiny_dir, STAGE1[3:])
    _launch_sh("generate_diffusion.sh", data, run, tiny_dir, STAGE2[3:])
    _run(STAGE3, data, run, tiny_dir, torchrun=True)
    assert _tree(run) == _tree(reference)
    cfg = json.loads((run / "overview_config.json").read_text())
    assert cfg["stage"] == "overview"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_nodes(cmd_for_node, env) -> None:
    """Start both 'nodes' at once (here two launches on this machine) and wait for both."""
    port = str(_free_port())
    procs = [subprocess.Popen(cmd_for_node(rank), env=dict(env, MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                                                            NNODES="2", NODE_RANK=str(rank)),
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    for rank, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"node {rank}:\n{log[-3000:]}"


def test_two_node_rendezvous_equals_one(reference, data, tiny_dir, tmp_path):
    """Multi-node form: NNODES=2 NODE_RANK=0|1 MASTER_ADDR MASTER_PORT, one process per node; the
    torchrun agents meet at the master's rendezvous and the workers get RANK 0/1 of WORLD_SIZE 2."""
    run = tmp_path / "nodes"
    env = dict(_env(tiny_dir), DATASET="jsonl", ROOT=str(data), SPLIT="test", OUT=str(run), MODEL="tiny",
               NUM_GPUS="1", PYTHON=sys.executable)
    for script, extra in (("llmattn.sh", STAGE1[3:]), ("generate_diffusion.sh", STAGE2[3:])):
        _two_nodes(lambda rank: ["bash", str(REPO / script)], dict(env, EXTRA_ARGS=" ".join(extra)))
    script, *flags = STAGE3  # no .sh wrapper for stage 3: torchrun's own multi-node arguments
    torchrun = ('exec "$0" -m torch.distributed.run --nnodes "$NNODES" --node_rank "$NODE_RANK" '
                '--master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --nproc_per_node 1 "$@"')
    _two_nodes(lambda rank: ["bash", "-c", torchrun, sys.executable, str(REPO / script), *_data_args(data, run),
                             *flags], _env(tiny_dir))
    assert _tree(run) == _tree(reference)
    assert {p.name for p in (run / "evolve").glob("records-*.jsonl")} == {"records-0.jsonl", "records-1.jsonl"}
    for stage, key, value in (("overview", "world_size", 2), ("focus", "world_size", 2), ("evolve", "shard", "0/2")):
        assert read_stage_config(run / f"{stage}_config.json")["run"][key] == value


def test_explicit_shards_are_disjoint_and_complete(reference, data, tiny_dir, tmp_path):
    run = tmp_path / "sh"
    _run(STAGE1, data, run, tiny_dir, "--shard", "0/2")
    first = set(_tree(run))
    assert first == {"overview/syn-0000.npy", "overview/syn-0000.json", "overview/syn-0002.npy", "overview/syn-0002.json"}
    _run(STAGE1, data, run, tiny_dir, "--shard", "1/2")
    assert _tree(run) == {k: v for k, v in _tree(reference).items() if k.startswith("overview/")}


def _all_visible_files_complete(run: Path) -> None:
    for p in run.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue  # temp files are hidden (.name.XXXX.tmp) and never a final name
        if p.suffix == ".npy":
            np.load(p, allow_pickle=False)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".png":
            Image.open(p).load()


def test_sigkill_then_resume_is_byte_identical(reference, data, tiny_dir, tmp_path):
    run = tmp_path / "killed"
    script, *flags = STAGE2
    cmd = [sys.executable, str(REPO / script), *_data_args(data, run), *flags]
    proc = subprocess.Popen(cmd, env=_env(tiny_dir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and not list(run.glob("focus/*/meta.json")):
            _all_visible_files_complete(run) if run.exists() else None
            time.sleep(0.05)
        assert list(run.glob("focus/*/meta.json")), "stage 2 produced nothing before the deadline"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _all_visible_files_complete(run)
    finished = len(list(run.glob("focus/*/meta.json")))
    assert 1 <= finished < 3, "the kill should land part-way through the run"
    _run(STAGE2, data, run, tiny_dir)
    _run(STAGE1, data, run, tiny_dir)
    _run(STAGE3, data, run, tiny_dir)
    assert _tree(run) == _tree(reference)


def _stage3_inputs(run: Path, n: int, templates: Path) -> None:
    """Stage 1/2 dumps of ``n`` samples as hard links to 7 template samples (no disk cost)."""
    for i in range(n):
        src, sid = templates / f"t{i % 7}", f"s{i:04d}"
        (run / "overview").mkdir(parents=True, exist_ok=True)
        (run / "focus" / sid).mkdir(parents=True, exist_ok=True)
        for ext in ("npy", "json"):
            os.link(src / f"overview.{ext}", run / "overview" / f"{sid}.{ext}")
        for f in (src / "focus").iterdir():
            os.link(f, run / "focus" / sid / f.name)


def test_sigkill_in_stage3_then_resume_is_byte_identical(tmp_path):
    """Stage 3 killed while writing: masks whose records were not yet appended are redone, and the
    run ends byte-identical to an uninterrupted one (masks, predictions.jsonl, record lines)."""
    from rsvg_zeroov.rundir import FOCUS_64TO32, FOCUS_SELF_32, RunDir, save_json, save_npy

    n, rng = 600, np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(data / "scene.png")
    (data / "test.jsonl").write_text("".join(json.dumps({"id": f"s{i:04d}", "image": "scene.png",
                                                         "expression": "x"}) + "\n" for i in range(n)))
    templates = tmp_path / "templates"
    s = rng.random((1024, 1024)).astype(np.float32) ** 8
    s /= s.sum(1, keepdims=True)
    for t in range(7):
        tdir = templates / f"t{t}"
        a_c = rng.random((29, 29)).astype(np.float32)
        save_npy(tdir / "overview.npy", np.repeat(a_c[None], 5, axis=0))
        save_json(tdir / "overview.json", {"grid": [29, 29], "layers": [16, 17, 18, 19], "weights": [0.1, 0.1, 0.3, 0.5]})
        save_npy(tdir / "focus" / FOCUS_SELF_32, s.reshape(32, 32, 1024).astype(np.float16))
        for name in FOCUS_64TO32.values():
            save_npy(tdir / "focus" / name, s.T.astype(np.float16))
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    for run in (ref, killed):
        _stage3_inputs(run, n, templates)

    def argv(run):
        return [sys.executable, str(REPO / "rs_evolve.py"), *_data_args(data / "test.jsonl", run), "--no-sam",
                "--batch-size", "16"]

    records = RunDir(killed).evolve_records(0)
    proc = subprocess.Popen(argv(killed), env=_env(tmp_path), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not (records.exists() and records.stat().st_size):
            time.sleep(0.002)
        time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = len(records.read_text().splitlines())
    assert 0 < done < n, f"the kill should land part-way through the run ({done} of {n} records)"
    assert not RunDir(killed).predictions.exists()
    import rs_evolve  # the resumed and the reference run in this process (no second start-up)

    for run in (killed, ref):
        assert rs_evolve.main(argv(run)[2:]) == 0
    assert len(RunDir(killed).predictions.read_text().splitlines()) == n
    assert _tree(killed) == _tree(ref)


def test_corrupt_dump_is_recomputed_and_named_downstream(reference, data, tiny_dir, tmp_path):
    import shutil

    run = tmp_path / "corrupt"
    shutil.copytree(reference, run)
    target = run / "focus" / "syn-0001" / "self_32.npy"
    target.write_bytes(target.read_bytes()[:1000])  # truncated
    (run / "masks" / "syn-0001.png").unlink()
    proc = _run(STAGE3, data, run, tiny_dir, check=False)  # stage 3 names the bad dump
    assert proc.returncode == 1
    fails = [json.loads(l) for l in (run / "failures.jsonl").read_text().splitlines()]
    assert [f["sample_id"] for f in fails] == ["syn-0001"] and "self_32.npy" in fails[0]["error"]
    _run(STAGE2, data, run, tiny_dir)  # resume recomputes only the bad sample
    _run(STAGE3, data, run, tiny_dir)
    assert not (run / "failures.jsonl").read_text().strip()  # the retry cleared the failure
    (run / "failures.jsonl").unlink()
    assert _tree(run) == _tree(reference)


def _hostile_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    rgb = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(root / "ok.png")
    Image.fromarray(rgb[..., 0]).save(root / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((60, 80), 128, np.uint8)])).save(root / "rgba.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(root / "deep16.png")
    Image.fromarray(np.zeros((2400, 3000, 3), np.uint8)).save(root / "huge.jpg")
    (root / "zero.png").write_bytes(b"")
    (root / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    rows = [("ok", "ok.png", "the red car"), ("gray", "gray.png", "a gray roof"),
            ("rgba", "rgba.png", "the tank"), ("deep", "deep16.png", "the field"),
            ("huge", "huge.jpg", "the pond"), ("zero", "zero.png", "the road"), ("junk", "junk.png", "x"),
            ("long", "ok.png", "the large white storage tank. " * 40),
            ("nonascii", "ok.png", "le réservoir à gauche 储罐 🚗")]
    with open(root / "test.jsonl", "w", encoding="utf-8") as f:
        for sid, img, expr in rows:
            f.write(json.dumps({"id": sid, "image": img, "expression": expr}, ensure_ascii=False) + "\n")
    return root / "test.jsonl"


def test_hostile_images_and_expressions(tiny_dir, tmp_path):
    data = _hostile_data(tmp_path)
    run = tmp_path / "run"
    for stage in (STAGE1, STAGE2 + ["--inversion", "ddim"], STAGE3):
        proc = _run(stage, data, run, tiny_dir, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    fails = [json.loads(l) for l in (run / "failures.jsonl").read_text().splitlines()]
    assert {f["sample_id"] for f in fails} == {"zero", "junk"}
    assert {f["stage"] for f in fails} == {"overview", "focus", "evolve"}
    assert all(("zero.png" in f["error"]) or ("junk.png" in f["error"]) for f in fails)
    preds = [json.loads(l) for l in (run / "predictions.jsonl").read_text().splitlines()]
    assert {p["sample_id"] for p in preds} == {"ok", "gray", "rgba", "deep", "huge", "long", "nonascii"}
    assert Image.open(run / "masks" / "huge.png").size == (3000, 2400)
    meta = json.loads((run / "focus" / "long" / "meta.json").read_text())
    assert len(meta["chunks"]) >= 2  # > 75 CLIP tokens: chunked, the first chunk used

"""Small helpers the benchmarks share: one variant per fresh worker process, machine description,
peak-RSS sampling, and the released stage-1 recipe (eager attention + output_attentions)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path


def run_worker(cmd: list[str], variant: str) -> dict:
    """Run one benchmark variant in a fresh process; its last stdout line is a JSON result."""
    proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        raise SystemExit(f"benchmark worker {variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1 / 5 / 15-minute load averages, or "n/a"."""
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine_info(device: str, library: str) -> str:
    """CPU model and cores, GPU name, torch / ``library`` / Python versions, one line."""
    import importlib

    import torch

    lib = importlib.import_module(library)
    cpu = cpu_model()
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    return (f"CPU {cpu} ({os.cpu_count()} cores visible), GPU {gpu}, torch {torch.__version__}, "
            f"{library} {lib.__version__}, Python {platform.python_version()}")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssPeak:
    """Peak RSS (MB) and its increase over the block, sampled every ``interval_s`` by a thread
    (large tensors are mmap'ed, so RSS follows them)."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s

    def __enter__(self):
        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(self.interval_s)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())
        self.increase = self.peak - self.base


def released_maps(model, batch, gc, layers):
    """The released approach: eager + output_attentions for every layer, then the per-layer maps."""
    import torch

    out = model.generate(**batch.inputs.to(model.device), generation_config=gc, output_attentions=True,
                         return_dict_in_generate=True)
    (start, end), (gh, gw) = batch.spans[0], batch.grids[0]
    return [torch.stack([step[layer][0, :, -1, start:end].float().mean(0) for step in out.attentions]).mean(0)
            .reshape(gh, gw).cpu() for layer in layers]


def stage3_parser(doc: str):
    """The argument parser the stage-3 benchmarks share: --n, --size, --dtype, --repeats, --workers,
    --threads and --dir (their synthetic dumps and the stage's workers)."""
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--size", type=int, default=800)
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--threads", action="store_true",
                   help="stage 3 in worker threads (rs_evolve.py --threads) instead of its default worker processes")
    p.add_argument("--dir", default=None, help="scratch folder (default: a temp folder under outputs/, "
                   "where runs live, removed after; file creation costs differ between file systems)")
    return p

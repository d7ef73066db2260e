"""Small helpers the CPU benchmarks share: one variant per fresh worker process, machine description."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def run_worker(cmd: list[str], variant: str) -> dict:
    """Run one benchmark variant in a fresh process; its last stdout line is a JSON result."""
    proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        raise SystemExit(f"benchmark worker {variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_info(device: str, library: str) -> str:
    """CPU model and cores, GPU name, torch / ``library`` / Python versions, one line."""
    import importlib

    import torch

    lib = importlib.import_module(library)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    return (f"CPU {cpu} ({os.cpu_count()} cores visible), GPU {gpu}, torch {torch.__version__}, "
            f"{library} {lib.__version__}, Python {platform.python_version()}")

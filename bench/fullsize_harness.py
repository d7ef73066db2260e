"""The measurement harness of the full-size benchmark: samples, a timer/memory meter, released-style storage.

- :func:`make_samples`: N synthetic 800x800 scenes (rsvg_zeroov.synthetic.scenes) with one or more
  referring expressions each.
- :class:`Meter`: wall seconds per sample (CUDA synchronised) and peak GPU memory per call
  (``torch.cuda.max_memory_allocated``, reset before every call).
- :class:`HostSumStore`: the released stage-2 storage cost (every attention map copied to the host)
  with bounded host memory, for when the library's ``HostListStore`` would not fit in host RAM.
- :func:`tf32`, :func:`machine`, :func:`blob`, :func:`iou`: small helpers shared with check_precision.py.
"""
from __future__ import annotations

import os
import platform
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import torch

from bench_common import cpu_model
from rsvg_zeroov.evaluation.iou import mask_inter_union
from rsvg_zeroov.focus import capture as focus_capture

GIB = 2 ** 30
SIZE = 800


def make_samples(n: int, per_image: int, seed: int) -> list[dict]:
    """``n`` samples {rgb uint8 (800, 800, 3), expression, key (scene id), mask bool (800, 800)}."""
    from rsvg_zeroov.synthetic.scenes import make_scene

    out, index = [], 0
    while len(out) < n:
        scene = make_scene(seed, index, SIZE, SIZE, max_objects=3)
        for obj in scene.objects[:per_image]:
            out.append(dict(rgb=scene.image, expression=obj.expression, key=f"scene{index}", mask=obj.mask))
        index += 1
    return out[:n]


class Meter:
    """Seconds per sample and peak device memory (GiB) of every measured call, by (stage, variant)."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.seconds, self.peak, self.above = defaultdict(list), defaultdict(float), defaultdict(float)
        self.record = True

    def __call__(self, key, n_samples: int, fn):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        t0 = time.perf_counter()
        out = fn()
        if self.cuda:
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        if self.record:
            self.seconds[key].append(seconds / n_samples)
            if self.cuda:
                peak = torch.cuda.max_memory_allocated(self.device)
                self.peak[key] = max(self.peak[key], peak / GIB)
                self.above[key] = max(self.above[key], (peak - base) / GIB)
        return out


@contextmanager
def tf32(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


class HostSumStore(focus_capture.RunningMeanStore):
    """Released-style storage with bounded host memory: every map is copied to the host (the released
    cost: one device-to-host transfer per head, layer and step) and added to a host running sum."""

    def _ensure(self, key, probs):
        if key not in self.counts:
            self.counts[key] = [0] * self.batch
            self.sums[key] = torch.zeros((self.batch, *probs.shape), dtype=torch.float32)

    def add(self, key, b, probs, weight):
        self._ensure(key, probs)
        self.sums[key][b].add_(probs.detach().to("cpu", copy=True), alpha=weight)


def blob(mask: np.ndarray) -> np.ndarray:
    """Stand-in A_C float32 (29, 29) when stage 1 is not run: the object's mask, area-averaged."""
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((29, 29), Image.BILINEAR), np.float32) / 255


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mask IoU, 1.0 when both masks are empty (two identical empty outputs agree)."""
    inter, union = mask_inter_union(a, b)
    return 1.0 if union == 0 else inter / union


def machine(device: str) -> str:
    import diffusers
    import transformers

    dev = torch.device(device)
    if dev.type == "cuda":
        name = f"{torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda})"
    else:
        name = f"{cpu_model()} ({os.cpu_count()} cores), no GPU"
    return (f"{name}; torch {torch.__version__}, transformers {transformers.__version__}, "
            f"diffusers {diffusers.__version__}, Python {platform.python_version()}")

"""Shared fixtures for the stage 3 tests: crafted data sets and dumps, and plain reference code
(a breadth-first region growing, torch's bilinear resize) to compare the vectorised paths with."""
from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsvg_zeroov.rundir import FOCUS_16TO32, FOCUS_64TO32, FOCUS_SELF_32, RunDir, save_json, save_npy


def bfs_region(a_cs: np.ndarray, seeds: np.ndarray, tau: float) -> np.ndarray:
    """Reference growing: breadth-first from every seed through 8-neighbours with ``a_cs > tau``."""
    h, w = a_cs.shape
    region = seeds.copy()
    queue = deque(zip(*np.nonzero(seeds)))
    while queue:
        y, x = queue.popleft()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and not region[ny, nx] and a_cs[ny, nx] > tau:
                    region[ny, nx] = True
                    queue.append((ny, nx))
    return region


def torch_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torch ``interpolate(bilinear, align_corners=False)`` of a float (h, w) map, float32 out."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def write_image(path: Path, h: int, w: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def write_dataset(folder: Path, rows: list[dict]) -> Path:
    """A JSONL data set. ``rows``: {"id", "image" (name), "hw", "box"?, "mask"? bool array}.

    Images are written once per name (random RGB of size ``hw``); masks as 0/255 PNGs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, row in enumerate(rows):
        img = folder / row["image"]
        if not img.exists():
            write_image(img, *row["hw"], seed=i)
        rec = {"id": row["id"], "image": row["image"], "expression": row.get("expression", f"object {i}")}
        if row.get("box") is not None:
            rec["box"] = list(row["box"])
        if row.get("mask") is not None:
            Image.fromarray(np.asarray(row["mask"], dtype=np.uint8) * 255).save(folder / f"{row['id']}_gt.png")
            rec["mask"] = f"{row['id']}_gt.png"
        lines.append(json.dumps(rec))
    path = folder / "test.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_overview(run: RunDir, sid: str, a_c: np.ndarray, dtype=np.float32) -> None:
    """Stage 1 dump: (1 + 4, gh, gw) with [0] = a_c, and its sidecar."""
    gh, gw = a_c.shape
    maps = np.concatenate([a_c[None], np.repeat(a_c[None], 4, axis=0)]).astype(dtype)
    save_npy(run.overview_npy(sid), maps)
    save_json(run.overview_json(sid), {"grid": [gh, gw], "layers": [16, 17, 18, 19],
                                       "weights": [0.1, 0.1, 0.3, 0.5], "dtype": np.dtype(dtype).name})


def write_focus(run: RunDir, sid: str, s32: np.ndarray, s64: np.ndarray | None = None,
                s16: np.ndarray | None = None, dtype=np.float32) -> None:
    """Stage 2 dumps: self_32 as (32, 32, 1024); the 64->32 (and optional 16->32) matrices, the
    same matrix written for both fidelities unless a dict {fidelity: matrix} is given."""
    save_npy(run.focus_file(sid, FOCUS_SELF_32), s32.reshape(32, 32, 1024).astype(dtype))
    for extra, names in ((s64, FOCUS_64TO32), (s16, FOCUS_16TO32)):
        if extra is None:
            continue
        for fid, name in names.items():
            mat = extra[fid] if isinstance(extra, dict) else extra
            save_npy(run.focus_file(sid, name), np.asarray(mat).astype(dtype))
    save_json(run.focus_file(sid, "meta.json"), {"model": "crafted", "dtype": np.dtype(dtype).name})


def blob_a_c(rows: slice, cols: slice, seed: int = 0, second: tuple[slice, slice] | None = None) -> np.ndarray:
    """A 32 x 32 VLM map: a blob of distinct values in 0.90..0.99 on a background of distinct
    values below 0.05; an optional second blob at 0.5 (high, but holding no seed)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.0, 0.05, (32, 32)).astype(np.float32)
    blob = a[rows, cols]
    a[rows, cols] = np.linspace(0.90, 0.99, blob.size, dtype=np.float32).reshape(blob.shape)
    if second is not None:
        a[second] = 0.5
    return a


def identity_s() -> np.ndarray:
    """S = I (each query attends only to itself): then p = c, so A_CS is c rescaled."""
    return np.eye(1024, dtype=np.float32)


# ------------------------------------------------------------------------------ a crafted run
EPS = 1e-6
BLOB = (slice(4, 10), slice(10, 16))  # the object every non-empty sample points at
SECOND = (slice(20, 24), slice(2, 6))  # high A_CS but no seed: must not be in the region
CRAFTED = [  # data set order interleaves the two images, so grouping by image reorders
    {"id": "a1", "image": "A.png", "hw": (64, 48)},
    {"id": "b1", "image": "B.png", "hw": (40, 40)},
    {"id": "a2", "image": "A.png", "hw": (64, 48)},
    {"id": "z1", "image": "B.png", "hw": (40, 40), "empty": True},
]


def expected_mask(a_c: np.ndarray, hw: tuple[int, int], alpha: float = 0.4) -> np.ndarray:
    """The mask stage 3 must give for a 32 x 32 ``a_c`` with S = I and seeds inside BLOB, computed
    here independently: A_CS = normalised c, region = BLOB, torch bilinear upsampling."""
    c = (a_c - a_c.min()) / (a_c.max() + EPS)
    p = c.ravel() / (np.linalg.norm(c.ravel()) + EPS)
    q = p - p.min()
    a_cs = (q / (q.max() + EPS)).reshape(32, 32)
    region = np.zeros((32, 32), bool)
    region[BLOB] = True
    return torch_resize(np.where(region, a_cs, 0), hw) > alpha


def make_crafted_run(tmp: Path, dtypes=(np.float32, np.float16)) -> tuple[Path, RunDir, dict]:
    """JSONL data set + stage 1/2 dumps for CRAFTED. Returns (jsonl path, run, {id: expected mask}).

    Ground truth: the box and mask of each sample are its expected prediction (the empty sample's
    ground truth is the blob, which it misses)."""
    run = RunDir(tmp / "run")
    expected, rows = {}, []
    for i, spec in enumerate(CRAFTED):
        a_c = np.zeros((32, 32), np.float32) if spec.get("empty") else blob_a_c(*BLOB, seed=i, second=SECOND)
        mask = expected_mask(a_c, spec["hw"])
        expected[spec["id"]] = mask
        gt = mask if mask.any() else expected_mask(blob_a_c(*BLOB, seed=0), spec["hw"])
        ys, xs = np.nonzero(gt)
        rows.append({**spec, "box": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())], "mask": gt})
        write_overview(run, spec["id"], a_c)
        write_focus(run, spec["id"], identity_s(), identity_s(), dtype=dtypes[i % len(dtypes)])
    return write_dataset(tmp / "data", rows), run, expected


def cli(jsonl: Path, run: RunDir, *extra: str) -> int:
    """rs_evolve.main on the crafted data set."""
    import rs_evolve

    return rs_evolve.main(["--dataset", "jsonl", "--root", str(jsonl), "--split", "test",
                           "--out", str(run.root), *extra])


def read_mask(path: Path) -> np.ndarray:
    arr = np.asarray(Image.open(path))
    assert arr.dtype == np.uint8 and set(np.unique(arr)) <= {0, 255}, path
    return arr > 0


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def exit_status(fn, *args) -> int:
    """The exit status of a script's main: its return value, or the code of the SystemExit that
    :func:`rsvg_zeroov.cli.main` raises for a user error."""
    try:
        return fn(*args)
    except SystemExit as exc:
        return exc.code


def read_evolve_config(run: RunDir) -> dict:
    """``RUN/evolve_config.json`` flattened as earlier versions wrote it: the settings, ``stage``,
    ``sam`` (whether a refiner ran) and ``sam_resolved`` (the refiner's key as ``type``)."""
    from rsvg_zeroov.evolve.config import EvolveConfig
    from rsvg_zeroov.runner import read_stage_config

    raw = json.loads(run.config("evolve").read_text())
    body = read_stage_config(run.config("evolve"))
    flat = {**body["config"], "stage": raw["stage"], "run": body["run"], "resolved": body["resolved"],
            "sam": EvolveConfig.from_recorded(body["config"]).sam}
    refiner = body["resolved"].get("refiner")
    if refiner:
        flat["sam_resolved"] = {"type": refiner["key"], "checkpoint": refiner["checkpoint"], "device": refiner["device"]}
    return flat


# ------------------------------------------------------------------------------ shared fixtures
@pytest.fixture
def crafted(tmp_path):
    """(jsonl, run, {id: expected mask}) of :func:`make_crafted_run`."""
    return make_crafted_run(tmp_path)


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    """Only the tiny SAM, written where the registry looks for it (no other tiny model built)."""
    from rsvg_zeroov.tiny.sam import build_tiny_sam

    root = tmp_path_factory.mktemp("tiny_sam")
    return build_tiny_sam(root / "sam" / "sam_tiny.pth", seed=0)

#!/usr/bin/env python
"""A 12,000 x 12,000 3-band uint16 GeoTIFF grounded with the tiny models: coarse to fine (read by
windows, ``ground.py``) against the whole image loaded into memory, time and peak memory measured
in one run, each variant in its own fresh process.

    python bench/bench_scene.py [--size 12000] [--out bench/results_scene.md] [--scene FILE]

Variants (the same models and settings: ``--tiny --max-new-tokens 4 --steps 2``, VLM pixel budget
448 x 448):

- ``scene``: ``ground.py`` on the file: stage 1 on the overview, the pipeline on one focus window;
- ``whole image``: how ``ground.py`` read a GeoTIFF before: every band read at once
  (``rasterio`` ``read()``), per-band min-max to 8 bits, then ``Grounder.ground`` on the array;
- ``small``: ``ground.py`` on a 448 x 448 GeoTIFF (what the models and the pipeline cost alone).

Peak memory is each process's own ``VmHWM`` (:func:`run_measured`); CPU time is user + system
(``os.wait4``). The scene is
written by :func:`write_scene` (also used by tests/test_scene.py): tiled 512 x 512, deflate, a
400-pixel nodata (0) border, one bright 600 x 400 rectangle, EPSG:32633 at 0.5 m.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--tiny", "--max-new-tokens", "4", "--steps", "2", "--max-pixels", str(448 * 448)]
TRANSFORM = (500000.0, 4200000.0, 0.5)  # west, north, pixel size (m)


def write_scene(path, size: int = 12000, bands: int = 3, border: int = 400, tile: int = 512) -> Path:
    """A ``size`` x ``size`` uint16 GeoTIFF written by tiles (never whole in memory): a checkered
    field, a bright rectangle at rows 5000-5400, columns 7000-7600 (scaled with ``size``), nodata 0
    within ``border`` pixels of the edge."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    west, north, res = TRANSFORM
    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype="uint16", crs="EPSG:32633",
                   transform=from_origin(west, north, res, res), tiled=True, blockxsize=tile, blockysize=tile,
                   compress="deflate", predictor=2, nodata=0)
    s = size / 12000
    rows, cols = (int(5000 * s), int(5400 * s)), (int(7000 * s), int(7600 * s))
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, tile):
            for c in range(0, size, tile):
                h, w = min(tile, size - r), min(tile, size - c)
                yy, xx = np.mgrid[r:r + h, c:c + w]
                base = (1000 + (yy // 64 + xx // 64) % 8 * 300).astype(np.uint16)
                block = np.stack([base + 100 * b for b in range(bands)])
                bright = (yy >= rows[0]) & (yy < rows[1]) & (xx >= cols[0]) & (xx < cols[1])
                block[:, bright] = np.array([9000, 2000, 1500, 4000][:bands], np.uint16)[:, None]
                edge = (yy < border) | (yy >= size - border) | (xx < border) | (xx >= size - border)
                block[:, edge] = 0
                dst.write(block, window=Window(c, r, w, h))
    return Path(path)


WHOLE = """
import json, os, sys, time
import numpy as np, rasterio
sys.path.insert(0, {repo!r})
import ground
from rsvg_zeroov.pipeline import Grounder
t0 = time.perf_counter()
with rasterio.open({path!r}) as src:
    bands = src.read()[:3]
out = np.empty(bands.shape, np.uint8)
for i, b in enumerate(bands.astype(np.float64)):
    lo, hi = float(b.min()), float(b.max())
    out[i] = np.clip(np.rint((b - lo) / max(hi - lo, 1e-12) * 255), 0, 255)
rgb = np.ascontiguousarray(out.transpose(1, 2, 0))
del bands, out
read_s = time.perf_counter() - t0
args = ground.build_parser().parse_args(["--image", {path!r}, "--text", "x", *{flags!r}])
grounder = Grounder(ground.build_config(args)).load(ground.FLAGS)
result = grounder.ground(rgb, "the bright roof")
print(json.dumps({{"read_s": read_s, "box": result.box}}))
"""


PEAK = "peak_rss_kb="
# Runs a script (argv[1:]) and reports the process's own peak RSS (VmHWM) on stderr at exit. The
# kernel's ru_maxrss of a child also counts the parent's memory at fork time; VmHWM does not.
LAUNCHER = f"""import atexit, runpy, sys
def _peak():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                sys.stderr.write('{PEAK}' + line.split()[1] + '\\n')
atexit.register(_peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def run_measured(script_args: list[str], cwd, env: dict) -> dict:
    """Run ``python SCRIPT ARGS...`` in a fresh process: its return code, wall and CPU seconds (user +
    system), peak RSS in MiB (its VmHWM), stdout and stderr."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, *map(str, script_args)], cwd=cwd, env=env,
                                stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    peaks = [int(line[len(PEAK):]) for line in stderr.splitlines() if line.startswith(PEAK)]
    return {"returncode": os.waitstatus_to_exitcode(status), "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mb": peaks[-1] / 1024 if peaks else float("nan"), "stdout": stdout, "stderr": stderr}


def run_child(script_args: list[str], cwd, env: dict) -> dict:
    """:func:`run_measured`, stopping the benchmark when the variant fails."""
    result = run_measured(script_args, cwd, env)
    if result["returncode"] != 0:
        raise SystemExit(f"{' '.join(map(str, script_args[:2]))} failed:\n{result['stderr'][-3000:]}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=12000)
    p.add_argument("--scene", default=None, help="use this GeoTIFF instead of writing one")
    p.add_argument("--out", default=str(REPO / "bench" / "results_scene.md"))
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from bench_common import load_average, machine_info

    from rsvg_zeroov.tiny import build_all

    work = Path(tempfile.mkdtemp(prefix="bench_scene."))
    tiny = build_all(work / "tiny")
    env = dict(os.environ, RSVG_ZEROOV_TINY_DIR=str(tiny), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               RSVG_ZEROOV_PROGRESS="0")
    t0 = time.perf_counter()
    scene = Path(args.scene) if args.scene else write_scene(work / "scene.tif", args.size)
    write_s = time.perf_counter() - t0
    small = write_scene(work / "small.tif", 448, border=40)
    load = [load_average()]
    ground = [str(REPO / "ground.py"), "--text", "the bright roof", *FLAGS]
    rows = {"small": run_child([*ground, "--image", str(small), "--out", str(work / "small")], work, env)}
    load.append(load_average())
    rows["scene"] = run_child([*ground, "--image", str(scene), "--out", str(work / "scene_out"), "--vector",
                               "geojson,gpkg"], work, env)
    load.append(load_average())
    (work / "whole.py").write_text(WHOLE.format(repo=str(REPO), path=str(scene), flags=FLAGS))
    rows["whole image"] = run_child([work / "whole.py"], work, env)
    load.append(load_average())
    read_s = json.loads(rows["whole image"]["stdout"].strip().splitlines()[-1])["read_s"]
    record = json.loads((work / "scene_out" / "box.json").read_text())
    lines = [f"# Scene benchmark (`bench/bench_scene.py`)", "",
             f"Machine: {machine_info('cpu', 'rasterio')}; load average (1/5/15 min) before and after each "
             f"variant: {' | '.join(load)} (the machine is shared: wall times are noisy, CPU times less so).",
             "", f"Scene: {args.size} x {args.size} x 3 uint16, tiled 512, deflate "
             f"({scene.stat().st_size / 2**20:.1f} MiB on disk, {args.size ** 2 * 6 / 2**20:.0f} MiB as one array); "
             f"written in {write_s:.1f} s. Settings: `{' '.join(FLAGS)}`.", "",
             "| variant | wall (s) | CPU (s) | peak RSS (MiB) |", "|---|---|---|---|"]
    for name in ("small", "scene", "whole image"):
        r = rows[name]
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} |")
    lines += ["", f"- whole image: reading and converting the raster alone took {read_s:.1f} s wall",
              f"- scene: overview {record['scene']['overview']}, windows "
              f"{[w['window'] for w in record['scene']['windows']]}, peak RSS "
              f"{rows['scene']['peak_mb'] - rows['small']['peak_mb']:+.0f} MiB against the small run",
              "- small: ground.py on a 448 x 448 scene (the models and the pipeline alone); scene: ground.py "
              "on the file, coarse to fine; whole image: the raster read whole and min-max stretched, as "
              "ground.py did before, then Grounder.ground on the array",
              f"- command: `python bench/bench_scene.py --size {args.size}`"]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

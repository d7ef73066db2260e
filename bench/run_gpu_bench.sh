#!/usr/bin/env bash
# The full-size GPU benchmark as ONE device-tool command (issue 6). Prepared; run it in a session that
# has a GPU (device tool `status`: can_start_another true). Writes under $OUT (what comes back):
#   results_gpu_fullsize.md   faithful mode (float32 SD) against the released style, same run, and the
#                             run-to-run difference of ours (the GPU determinism tolerance, issue 7)
#   results_gpu_fast.md       ours only, opt-in fast settings (float16 SD + TF32, batch 4)
#   results_precision_full.md float32 vs float16/bfloat16 maps on the full-size random models
#   device.txt, log_*.txt     GPU name, versions, stderr of each phase
# Each phase has its own time limit; the whole command ends within 570 s (the tool allows 600).
#
# 1) Here, once (needs PyPI): the packages the device image lacks, as wheels for its Python 3.12
#    (KINDS.md: torch 2.11, transformers 5.17 there; transformers 5.24 travels so the tested version runs):
#      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#        diffusers==0.42.1 segment-anything==1.0 qwen-vl-utils==0.0.14 transformers==5.24.0 \
#        importlib_metadata==10.2.0 regex==2026.11.19 tokenizers==0.23.3
#    (.whl/ is git-ignored; about 24 MB. qwen-vl-utils' `av` is only for videos and is not needed.)
# 2) Device tool:  run(command="bash bench/run_gpu_bench.sh", carry=[".whl"], timeout_s=600)
# 3) Copy the tables from files_at into BENCHMARKS.md, naming the device.
set -uo pipefail
OUT=${OUT:-/tmp/rsvg_gpu_bench}
mkdir -p "$OUT"
cd "$(dirname "$0")/.." || exit 1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  echo "no .whl/ wheels carried: using the installed packages" >&2
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers, diffusers, segment_anything, qwen_vl_utils; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), '| transformers', transformers.__version__, '| diffusers', diffusers.__version__)"
} 2>&1 | tee "$OUT/device.txt" || exit 1

phase() {  # phase NAME LIMIT_S COMMAND...: run only if it can end (LIMIT_S + 10 s) within 570 s
  local name=$1 limit=$2; shift 2
  if (( SECONDS + limit + 10 > 570 )); then echo "skip $name: ${SECONDS}s used" | tee -a "$OUT/device.txt"; return; fi
  echo "== $name (limit ${limit}s, at ${SECONDS}s)" | tee -a "$OUT/device.txt"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/log_$name.txt"
  echo "== $name exit ${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$OUT/device.txt"
}

# Faithful mode (float32 SD, library defaults) and the released style in the same run.
phase faithful 280 python3 bench/gpu_fullsize.py --scale full --device cuda --n 6 --batch-size 2 \
  --time-budget 230 --out "$OUT/results_gpu_fullsize.md"
# Opt-in fast settings, ours only (speed; their effect on the maps is the next phase's table).
phase fast 120 python3 bench/gpu_fullsize.py --scale full --device cuda --n 8 --batch-size 4 \
  --dtype float16 --tf32 --skip-released --time-budget 90 --out "$OUT/results_gpu_fast.md"
phase precision 120 python3 bench/check_precision.py --scale full --device cuda --n 1 --steps 20 \
  --inner-steps 10 --out "$OUT/results_precision_full.md"
ls -la "$OUT"

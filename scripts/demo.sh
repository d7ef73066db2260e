#!/usr/bin/env bash
# The bundled demo (README command 1, via `make demo`): the whole pipeline on tiny RANDOM-WEIGHT
# stand-in models and a small SYNTHETIC RRSIS-D-format data set, all built offline here.
# The numbers it prints exercise the code; they are NOT the paper's (those need the real models).
#   DEMO_DIR [demo]  DEMO_N [3 samples]  PYTHON [python]
#   VLM [tiny]: the stage-1 VLM key (`make demo VLM=tiny-qwen3-vl`; python -m rsvg_zeroov.models lists them)
#   REFINER []: a stage-3 refiner key, passed as --refiner (`make demo REFINER=box-fill`); unset = --sam-type tiny
#   (with VLM or REFINER set the run goes to DEMO_DIR/run-<VLM>-<REFINER>, not DEMO_DIR/run)
#   DEMO_STAGE1_ARGS [--max-new-tokens 8]
#   DEMO_STAGE2_ARGS [--inversion ddim]: stage 2 uses the documented cheap DDIM-inversion mode so the
#   demo fits in a few minutes on 2 CPU cores; DEMO_FAITHFUL=1 runs the paper's 20-step null-text
#   schedule instead (minutes per sample on a CPU even for the tiny model).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-demo}; N=${DEMO_N:-3}; PY=${PYTHON:-python}
export RSVG_ZEROOV_TINY_DIR="${RSVG_ZEROOV_TINY_DIR:-$DEMO_DIR/tiny_models}" PYTHON="$PY"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/6 tiny offline models (random weights - stand-ins for Qwen2.5-VL-7B, SD v1.4, SAM ViT-H)"
[ -d "$RSVG_ZEROOV_TINY_DIR" ] || "$PY" -m rsvg_zeroov.tiny --out "$RSVG_ZEROOV_TINY_DIR"
say "2/6 synthetic data set in the RRSIS-D (REFER) format: $N samples"
[ -d "$DEMO_DIR/data" ] || "$PY" -m rsvg_zeroov.synthetic --format rrsisd --out "$DEMO_DIR/data" --n "$N"

# another VLM or refiner gets its own run folder, so no stage resumes on the other models' dumps
export DATASET=rrsisd ROOT="$DEMO_DIR/data" SPLIT=test OUT="$DEMO_DIR/run${VLM:+-$VLM}${REFINER:+-$REFINER}" MODEL=tiny
say "3/6 stage 1 Overview (llmattn.sh${VLM:+, VLM $VLM})"
MODEL="${VLM:-tiny}" EXTRA_ARGS="${DEMO_STAGE1_ARGS:---max-new-tokens 8}" bash llmattn.sh
if [ "${DEMO_FAITHFUL:-0}" = 1 ]; then stage2=""; else stage2=${DEMO_STAGE2_ARGS:---inversion ddim}; fi
say "4/6 stage 2 Focus (generate_diffusion.sh ${stage2:-with the null-text inversion of the paper})"
EXTRA_ARGS="$stage2" bash generate_diffusion.sh
if [ -n "${REFINER:-}" ]; then refine=(--refiner "$REFINER"); else refine=(--sam-type tiny); fi
say "5/6 stage 3 Evolve + ${REFINER:-SAM} refinement (rs_evolve.py)"
"$PY" rs_evolve.py --dataset rrsisd --root "$ROOT" --split test --out "$OUT" "${refine[@]}"
say "6/6 evaluation (eval/evaluate.py)"
"$PY" eval/evaluate.py --dataset rrsisd --root "$ROOT" --split test --out "$OUT"
"$PY" tools/visualize.py --out "$OUT" --dataset rrsisd --root "$ROOT" --split test

cat <<MSG

Done in ${SECONDS} s. These models are RANDOM-WEIGHT stand-ins and the data is synthetic: the metrics above only
show that every stage ran; the paper's numbers need the real models (README, "Using the real models").
Outputs in $OUT/:
  overview/<id>.npy, .json      stage 1 VLM attention maps (fused A_C + per layer) and sidecars
  focus/<id>/                   stage 2 diffusion self-attention (self_32, self_64to32_*) + meta.json
  masks/<id>.png                final masks;  predictions.jsonl  boxes and SAM scores
  metrics.json                  RSREC / RSRES metrics;  *_config.json  every setting of each stage
  panels/<id>.png, index.html   attention panels, worst IoU first
MSG

# The paper's tables and figures from the same dumps (python -m rsvg_zeroov.reproduce, docs/reproduce.md), labelled as random stand-ins:
"$PY" -m rsvg_zeroov.reproduce --dataset rrsisd --root "$ROOT" --split test --out "$OUT" --refiner "${REFINER:-tiny}" >/dev/null
echo "Tables (random stand-ins) and figures: $OUT/tables/ (main, ablation, sensitivity .md/.csv/.png)"

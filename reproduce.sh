#!/usr/bin/env bash
# The paper's tables from one run's stage-1/2 dumps (python -m rsvg_zeroov.reproduce; docs/reproduce.md),
# driven by the same environment variables as llmattn.sh / generate_diffusion.sh. Extra arguments go
# to the command, e.g. --table ablation, --no-sam, --refiner tiny.
#   DATASET=rrsisd ROOT=datasets/rrsisd SPLIT=test OUT=outputs/rrsisd_test bash reproduce.sh
# Environment (defaults in brackets): DATASET [rrsisd]  ROOT [datasets/$DATASET]  SPLIT [test]
#   OUT [outputs/$DATASET_$SPLIT]  LIMIT []  PYTHON [python]  EXTRA_ARGS []
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATASET=${DATASET:-rrsisd}; SPLIT=${SPLIT:-test}
args=(--dataset "$DATASET" --root "${ROOT:-datasets/$DATASET}" --split "$SPLIT" --out "${OUT:-outputs/${DATASET}_${SPLIT}}")
[ -n "${LIMIT:-}" ] && args+=(--limit "$LIMIT")
# shellcheck disable=SC2206
[ -n "${EXTRA_ARGS:-}" ] && args+=(${EXTRA_ARGS})
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"  # a plain checkout works too
exec "${PYTHON:-python}" -m rsvg_zeroov.reproduce "${args[@]}" "$@"

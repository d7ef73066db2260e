#!/usr/bin/env bash
# Shared launcher for llmattn.sh / generate_diffusion.sh: runs one stage script over a data set,
# on one process or, with NUM_GPUS>1 or NNODES>1, one process per GPU through torchrun
# (each process takes its shard from RANK/WORLD_SIZE).
#   usage: scripts/launch.sh STAGE_SCRIPT.py [extra args...]
# Environment (defaults in brackets):
#   DATASET [rrsisd]  ROOT [datasets/rrsisd]  SPLIT [test]  OUT [outputs/$DATASET_$SPLIT]  MODEL [library default]
#   LIMIT []  BATCH_SIZE []  NUM_GPUS [1]  NNODES [1]  NODE_RANK [0]  MASTER_ADDR [127.0.0.1]  MASTER_PORT [29500]
#   PYTHON [python]  EXTRA_ARGS []
set -euo pipefail
script=$1; shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATASET=${DATASET:-rrsisd}; SPLIT=${SPLIT:-test}
args=(--dataset "$DATASET" --root "${ROOT:-datasets/$DATASET}" --split "$SPLIT" --out "${OUT:-outputs/${DATASET}_${SPLIT}}")
[ -n "${MODEL:-}" ] && args+=(--model "$MODEL")
[ -n "${LIMIT:-}" ] && args+=(--limit "$LIMIT")
[ -n "${BATCH_SIZE:-}" ] && args+=(--batch-size "$BATCH_SIZE")
# shellcheck disable=SC2206
[ -n "${EXTRA_ARGS:-}" ] && args+=(${EXTRA_ARGS})
NUM_GPUS=${NUM_GPUS:-1}; NNODES=${NNODES:-1}
if [ "$NUM_GPUS" -gt 1 ] || [ "$NNODES" -gt 1 ]; then
  if [ "$NNODES" -gt 1 ]; then
    rdzv=(--nnodes "$NNODES" --node_rank "${NODE_RANK:-0}" --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}")
  else
    rdzv=(--standalone)
  fi
  exec "${PYTHON:-python}" -m torch.distributed.run --nproc_per_node "$NUM_GPUS" "${rdzv[@]}" "$here/$script" "${args[@]}" "$@"
else
  exec "${PYTHON:-python}" "$here/$script" "${args[@]}" "$@"
fi

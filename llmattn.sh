#!/usr/bin/env bash
# Stage 1 (Overview) over a data set, driven by environment variables; one process per GPU via
# torchrun when NUM_GPUS>1 (or NNODES>1). Extra arguments go to llmattn.py, e.g. --batch-size 4.
#   DATASET=rrsisd ROOT=datasets/rrsisd SPLIT=test OUT=outputs/rrsisd_test MODEL=qwen2.5-vl-7b NUM_GPUS=8 bash llmattn.sh
# All variables and their defaults: scripts/launch.sh.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/scripts/launch.sh" llmattn.py "$@"

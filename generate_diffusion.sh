#!/usr/bin/env bash
# Stage 2 (Focus) over a data set, driven by environment variables; one process per GPU via
# torchrun when NUM_GPUS>1 (or NNODES>1). Extra arguments go to generate_diffusion.py, e.g. --batch-size 4.
#   DATASET=rrsisd ROOT=datasets/rrsisd SPLIT=test OUT=outputs/rrsisd_test MODEL=sd-v1-4 NUM_GPUS=8 bash generate_diffusion.sh
# All variables and their defaults: scripts/launch.sh.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/scripts/launch.sh" generate_diffusion.py "$@"

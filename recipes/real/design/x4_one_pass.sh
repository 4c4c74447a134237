#!/usr/bin/env bash
# The ×4 model of x4_one_pass.yaml, and the comparison with the shipped cascade (real → default) and with `real`'s
# first round (only ×2 pairs; its weights from git, commit 12796a6) on the held-back photos of recipes/real/cascade.py.
#   bash recipes/real/design/x4_one_pass.sh [DATA_DIR]    (≈30 min on 2 cores)
set -euo pipefail
DATA=${1:-../shared/data}
fmboost prepare "$DATA/train" "$DATA/train_hr" --out runs/real_x4/shards --vae fmboost/weights/default/autoencoder \
    --size 128 --scale 4 --crops-per-image 8 --upsampling pixel --holdout-every 10 --degradation realesrgan --device cpu
rm -rf runs/real_round1 && mkdir -p runs/real_round1
git archive 12796a6 fmboost/weights/real | tar -x -C runs/real_round1 --strip-components=3
fmboost train --config recipes/real/design/x4_one_pass.yaml --resume auto
OMP_NUM_THREADS=1 python recipes/real/cascade.py --data "$DATA" --max-images 16 \
    --compare "real, first round only=runs/real_round1" --compare "one ×4 model=runs/real_x4/cfm/model"

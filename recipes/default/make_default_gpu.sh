#!/usr/bin/env bash
# The default's flow at GPU scale (recipes/default/cfm_gpu.yaml) on the embedded default's autoencoder: prepare
# 128 px crops (64 a photo, every 10th photo held back), train, then score the learning curve on the held-back
# photos. Resumable: run it again to continue. Not run on this project's CPU machines beyond a smoke test.
#   bash recipes/default/make_default_gpu.sh [DATA_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
RUN=runs/default_gpu
fmboost prepare "$DATA/train" "$DATA/train_hr" --out "$RUN/shards" --vae default --size 128 --scale 2 \
    --crops-per-image 64 --upsampling pixel --holdout-every 10 --device cuda
fmboost train --config recipes/default/cfm_gpu.yaml --resume auto
python recipes/default/design/curves.py "$RUN/cfm" --data "$DATA" --every 5
python recipes/default/design/curves.py "$RUN/cfm/model" --data "$DATA"

#!/usr/bin/env bash
# The design runs of the new default, side by side at one torch thread each for MINUTES (default 20) of wall clock,
# so that every design sees the same machine; then their learning curves on held-back training photos.
#   bash recipes/default/design/run.sh [DATA_DIR]        (DATA_DIR holds train/ and train_hr/; default ../shared/data)
# Shards: the default's 64 px crops, 32 per photo, every 10th photo held back (made here when missing).
set -euo pipefail
DATA=${1:-../shared/data}
MINUTES=${MINUTES:-20}
DESIGNS=${DESIGNS:-"unet_small sr sr_pixel"}
# A later round writes its curves elsewhere: the patch design's were made by DESIGNS=s2d MINUTES=75
# RESULTS=results/default_model/design_patch (its run stopped early, at step 2,056; scored with curves.py --every 3).
RESULTS=${RESULTS:-results/default_model/design}
fmboost prepare "$DATA/train" "$DATA/train_hr" --out runs/design/shards --vae default --size 64 --scale 2 \
    --crops-per-image 32 --upsampling pixel --holdout-every 10 --device cpu   # resumes; nothing to do when complete
for d in $DESIGNS; do
    OMP_NUM_THREADS=1 fmboost train --config recipes/default/design/$d.yaml --max-minutes "$MINUTES" --resume auto \
        > runs/design/$d.log 2>&1 &
done
wait
OMP_NUM_THREADS=2 python recipes/default/design/curves.py $(for d in $DESIGNS; do echo runs/design/$d; done) --data "$DATA" --out "$RESULTS"

#!/usr/bin/env bash
# Rebuilds fmboost's embedded `real` model (degraded super-resolution) from photos; needs the embedded default
# (recipes/default/make_default.sh) first. Every stage resumes where it stopped.
#   bash recipes/real/make_real.sh [DATA_DIR]      (DATA_DIR holds train/, train_hr/ and val/; default ../shared/data)
# The shipped `real` weights were made by this recipe (their training.json says with what); it prepares like
# recipes/default/make_default.sh, with degradations. On a 2-core CPU: prepare ≈5 min, fine-tuning 10–30 min (600
# steps, 1 thread) in each of two rounds, choose_steps.py ≈5 min, evaluate.py ≈15 min, cascade.py ≈15 min.
set -euo pipefail
DATA=${1:-../shared/data}
RUN=runs/real
fmboost prepare "$DATA/train" "$DATA/train_hr" --out "$RUN/shards" --vae fmboost/weights/default/autoencoder \
    --size 64 --scale 2 --crops-per-image 16 --upsampling pixel --holdout-every 10 --degradation realesrgan --device cpu
fmboost train --config recipes/real/cfm.yaml --resume auto  # from the newest complete checkpoint, if any
rm -rf fmboost/weights/real
cp -r "$RUN/cfm/model" fmboost/weights/real
# Round 2: pairs for the first pass of ×4 (crops twice the size degraded ×1/4 → their clean ↓2), so that
# `--scale 4` hands a clean image to its second pass; fine-tuned from round 1 (recipes/real/cfm_x4.yaml's init).
fmboost prepare "$DATA/train" "$DATA/train_hr" --out runs/real4/shards --vae fmboost/weights/default/autoencoder \
    --size 64 --scale 2 --cascade 2 --crops-per-image 16 --upsampling pixel --holdout-every 10 \
    --degradation realesrgan --device cpu
fmboost train --config recipes/real/cfm_x4.yaml --resume auto
rm -rf fmboost/weights/real
cp -r runs/real4/cfm/model fmboost/weights/real
# Its sampling steps, chosen on 16 held-back training photos (results/real/heldback_steps.json), ≈5 min
OMP_NUM_THREADS=1 python recipes/real/choose_steps.py --data "$DATA"
fmboost info real
python recipes/real/evaluate.py --data "$DATA"
# ×4 (--scale 4): which model runs the second ×2 pass, re-measured on held-back training photos for these weights
# (16 photos, ≈15 min); docs/real_world_x4.md says whether the choice still matches next_model in cfm.yaml.
OMP_NUM_THREADS=1 python recipes/real/cascade.py --data "$DATA" --max-images 16

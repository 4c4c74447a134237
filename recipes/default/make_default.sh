#!/usr/bin/env bash
# Rebuilds fmboost's embedded default model from photos. Every stage resumes where it stopped.
#   bash recipes/default/make_default.sh [DATA_DIR]      (DATA_DIR holds train/ and train_hr/; default ../shared/data)
# On a 2-core CPU: autoencoder ≈40 min (5000 steps), prepare ≈10 min, CFM 45 min at τ=400 then 40 min of
# fine-tuning at τ=100 (cfm_finetune.yaml); then evaluate.py ≈20 min. About 2 h 40 min in all.
# The autoencoder caps every latent method (docs/default_model.md). A longer run continues from this one's weights,
# a session at a time, until its 60000 steps are done; the default is rebuilt from it once it beats 26.7 dB:
#   python -m fmboost.autoencoders.train --config recipes/default/autoencoder_long.json --max-minutes 60
set -euo pipefail
DATA=${1:-../shared/data}
RUN=runs/default
python -m fmboost.autoencoders.train --config recipes/default/autoencoder.json \
    --data "$DATA/train" "$DATA/train_hr" --out "$RUN/autoencoder"
fmboost prepare "$DATA/train" "$DATA/train_hr" --out "$RUN/shards" --vae "$RUN/autoencoder/autoencoder" \
    --size 128 --scale 2 --crops-per-image 16 --device cpu
# --resume auto: from the newest complete checkpoint in OUT/checkpoints, or from step 0 if there is none.
fmboost train --config recipes/default/cfm.yaml --data "$RUN/shards" --out "$RUN/cfm" --resume auto
fmboost train --config recipes/default/cfm_finetune.yaml --data "$RUN/shards" --resume auto
rm -rf fmboost/weights/default
cp -r "$RUN/cfm_finetune/model" fmboost/weights/default
cp "$RUN/autoencoder/autoencoder/training.json" fmboost/weights/default/autoencoder/
fmboost info fmboost/weights/default
python recipes/default/evaluate.py --data "$DATA"

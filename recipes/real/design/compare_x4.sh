#!/usr/bin/env bash
# Other ways to ×4 beside the shipped cascade (real → default), on the held-back photos of recipes/real/cascade.py:
#   - `real`'s first round alone (only ×2 pairs; its weights from git, commit 12796a6);
#   - one ×4 model (x4_one_pass.yaml): round 1 fine-tuned on ×4 pairs, 128 px crops degraded to 1/4;
#   - the second round trained and sampled at τ 200 and at τ 400 (detail_t200.yaml, detail_t400.yaml): detail
#     drawn from the noise the flow was trained on; and the τ 400 one trained four times as long
#     (detail_t400_long.yaml, 2400 steps, ≈19 min at 2 threads), also at `--tau 0` (MODEL@0): is the `--tau` dial
#     still there on a flow trained at τ 400?
# Each of the others trained for as many steps as the shipped second round (600), from round 1.
#   bash recipes/real/design/compare_x4.sh [DATA_DIR]    (≈65 min on 2 cores)
set -euo pipefail
DATA=${1:-../shared/data}
rm -rf runs/real_round1 && mkdir -p runs/real_round1
git archive 12796a6 fmboost/weights/real | tar -x -C runs/real_round1 --strip-components=3
fmboost prepare "$DATA/train" "$DATA/train_hr" --out runs/real_x4/shards --vae fmboost/weights/default/autoencoder \
    --size 128 --scale 4 --crops-per-image 8 --upsampling pixel --holdout-every 10 --degradation realesrgan --device cpu
fmboost train --config recipes/real/design/x4_one_pass.yaml --resume auto
# the shipped second round's pairs (recipes/real/make_real.sh makes them)
for t in 200 400 400_long; do fmboost train --config recipes/real/design/detail_t$t.yaml --resume auto; done
OMP_NUM_THREADS=1 python recipes/real/cascade.py --data "$DATA" --max-images 16 \
    --compare "real, first round only=runs/real_round1" --compare "one ×4 model=runs/real_x4/cfm/model" \
    --compare "round 2 at τ 200=runs/real4_t200/cfm/model" --compare "round 2 at τ 400=runs/real4_t400/cfm/model" \
    --compare "round 2 at τ 400, 2400 steps=runs/real4_t400_long/cfm/model" \
    --compare "round 2 at τ 400, 2400 steps, from the clean x0=runs/real4_t400_long/cfm/model@0" \
    --taus 50,75,100,125,150,200 ${PEERS_PY:+--peers-python "$PEERS_PY"}

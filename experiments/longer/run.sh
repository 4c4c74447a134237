#!/usr/bin/env bash
# The diffusion baseline at 3× the ablations' step budget, seed 0: does it learn enough for 50 DDIM steps to beat 4?
# About an hour of training and 15 min of evaluation on 2 cores; run after experiments/run_all.sh has prepared
# runs/experiments/shards_psu. Writes results/ablations_longer/seed0/diffusion_x3_<set>.json, which
# experiments/report.py adds to docs/results.md's ablation section.
#   bash experiments/longer/run.sh [DATA_DIR]   (DATA_DIR holds val/bsd68 and val/set14; ../shared/data)
set -euo pipefail
DATA=${1:-../shared/data}
CONFIG=experiments/longer/diffusion_x3.yaml RUN=runs/experiments/seed0/diffusion_x3 RESULTS=results/ablations_longer
TUNED_ON="nothing: every run uses the settings in experiments/configs, at one step budget"
export OMP_NUM_THREADS=${THREADS:-1}
[ -f "$RUN/done" ] || { fmboost train --config "$CONFIG" --resume auto && touch "$RUN/done"; }
pids=()
for set in bsd68 set14; do  # side by side, as run_all.sh's evaluations: the same crops and metrics
  out=runs/experiments/seed0/eval_longer/diffusion_x3_$set
  [ -f "$out/results.md" ] || fmboost eval "$DATA/val/$set" --center-crop 224 --tuned-on "$TUNED_ON" \
      --metrics psnr,ssim,sharpness,niqe --model "$RUN/model" --methods model --steps 4,50 --out "$out" \
      --results-out "$RESULTS/seed0/diffusion_x3_$set.json" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done  # a failed evaluation fails the script
echo "docs: python experiments/report.py (then commit $RESULTS and docs together)"

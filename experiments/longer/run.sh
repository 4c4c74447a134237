#!/usr/bin/env bash
# Seed 0's diffusion and CFM runs at 3× the ablations' step budget: does the diffusion baseline learn enough for 50
# DDIM steps to beat 4, and how do the two compare at equal NFE when both train longer? About 50 min of training
# and 25 of evaluation on 2 cores; run after experiments/run_all.sh has prepared runs/experiments/shards_psu.
# Writes results/ablations_longer/seed0/*.json, which experiments/report.py adds to docs/results.md.
#   bash experiments/longer/run.sh [DATA_DIR]   (DATA_DIR holds val/bsd68 and val/set14; ../shared/data)
set -euo pipefail
DATA=${1:-../shared/data}
RUNS=runs/experiments/seed0 RESULTS=results/ablations_longer/seed0
TUNED_ON="nothing: every run uses the settings in experiments/configs, at one step budget"
export OMP_NUM_THREADS=${THREADS:-1}
for name in diffusion_x3 cfm_x3; do
  [ -f "$RUNS/$name/done" ] || { fmboost train --config "experiments/longer/$name.yaml" --resume auto \
                                   && touch "$RUNS/$name/done"; }
done

evaluate() {  # NAME SET ARGS...: skipped once done; the same crops and metrics as run_all.sh's evaluations
  local out=$RUNS/eval_longer/$1_$2
  [ -f "$out/results.md" ] || fmboost eval "$DATA/val/$2" --center-crop 224 --tuned-on "$TUNED_ON" \
      --metrics psnr,ssim,sharpness,niqe --methods model "${@:3}" --out "$out" --results-out "$RESULTS/$1_$2.json"
}
pids=()
for set in bsd68 set14; do  # the two sets side by side; a failed evaluation fails the script
  { evaluate diffusion_x3 "$set" --model "$RUNS/diffusion_x3/model" --steps 4,50 &&
    evaluate equal_x3 "$set" --model "$RUNS/cfm_x3/model" "$RUNS/diffusion_x3/model" --steps 1,4; } &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "docs: python experiments/report.py (then commit results/ablations_longer and docs together)"

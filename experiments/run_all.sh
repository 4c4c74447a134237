#!/usr/bin/env bash
# The paper's ablations at CPU scale: tiny preset, 750 steps of batch 16 per run (11 runs), then evaluation on
# BSD68 and Set14. Every stage resumes where it stopped; finished runs are skipped.
#   bash experiments/run_all.sh [DATA_DIR]     (DATA_DIR holds train/, train_hr/, val/; default ../shared/data)
# JOBS runs side by side, THREADS torch threads each (default 2 × 1: about 65 min of training and 60 min of
# evaluation on a 2-core CPU). MAX_IMAGES photos of each validation set are scored (default 12; SOLVER_IMAGES = 6
# for the solver comparison).
set -euo pipefail
DATA=${1:-../shared/data}
VAE=${VAE:-fmboost/weights/default/autoencoder}
JOBS=${JOBS:-2} THREADS=${THREADS:-1} MAX_IMAGES=${MAX_IMAGES:-12} SOLVER_IMAGES=${SOLVER_IMAGES:-6}
ROOT=runs/experiments
export OMP_NUM_THREADS=$THREADS ROOT
mkdir -p "$ROOT/logs"

# One set of crops for every run: the upsampling ablation re-upsamples the same z_lr, nothing else changes.
fmboost prepare "$DATA/train" "$DATA/train_hr" --out "$ROOT/shards_psu" --vae "$VAE" --size 128 --scale 2 \
    --crops-per-image 16 --upsampling psu --device cpu
for up in bilinear nearest; do
  fmboost prepare --from "$ROOT/shards_psu" --upsampling "$up" --out "$ROOT/shards_$up"
done

train_one() {  # skipped once done; `--resume auto` continues an interrupted run
  local name; name=$(basename "$1" .yaml)
  [ -f "$ROOT/$name/done" ] && return 0
  fmboost train --config "$1" --resume auto > "$ROOT/logs/$name.log" 2>&1 && touch "$ROOT/$name/done" \
    || { echo "$name failed: see $ROOT/logs/$name.log"; return 1; }
}
export -f train_one
ls experiments/configs/*.yaml | grep -v /base.yaml | xargs -P "$JOBS" -I{} bash -c 'train_one {}'

models() { for n in "$@"; do echo "$ROOT/$n/model"; done; }
evals=()  # longest first, so the two workers finish together
for set in set14 bsd68; do
  ev="fmboost eval $DATA/val/$set --max-images $MAX_IMAGES"
  # Baselines: flows and diffusion (DDIM) at 1-50 steps, regression once.
  evals+=("$ev --model $(models cfm_psu naive_fm diffusion regression_l1 regression_l2 | tr '\n' ' ') \
      --methods model,bicubic --steps 1,4,8,50 --out $ROOT/eval/baselines_$set")
  # Upsampling, noise augmentation and σ_min: CFM at NFE 1 and 4, against its start x0 and bicubic.
  evals+=("$ev --model $(models cfm_psu cfm_bilinear cfm_nearest cfm_tau0 cfm_tau200 cfm_tau600 cfm_sigma1e-2 \
      | tr '\n' ' ') --methods model,x0,bicubic --steps 1,4 --out $ROOT/eval/cfm_$set")
done
for set in set14 bsd68; do
  for solver in rk4 midpoint heun dopri5 euler; do
    evals+=("fmboost eval $DATA/val/$set --max-images $SOLVER_IMAGES --model $ROOT/cfm_psu/model --methods cfm \
        --solver $solver --steps 1,2,4 --metrics psnr,ssim,sharpness --out $ROOT/eval/solver_${solver}_$set")
  done
done
eval_one() {  # skipped once its results.md exists, or while another process holds its lock
  local out=${1##*--out }
  mkdir -p "$out"
  [ -f "$out/results.md" ] && return 0
  flock -n "$out/.lock" bash -c "$1 > $ROOT/logs/eval_$(basename "$out").log 2>&1" \
    || { echo "failed or running elsewhere: $1 (see $ROOT/logs)"; return 1; }
}
export -f eval_one
printf '%s\n' "${evals[@]}" | xargs -P "$JOBS" -d '\n' -I{} bash -c 'eval_one "{}"'
echo "results: $ROOT/eval/*/results.md; tables and plots for docs: python experiments/report.py"

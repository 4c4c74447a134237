#!/usr/bin/env bash
# The paper's ablations at CPU scale: tiny preset, 750 steps of batch 16 per run (11 runs per seed), then evaluation
# on BSD68 and Set14. Every stage resumes where it stopped; finished runs are skipped.
#   SEEDS='0 1 2' bash experiments/run_all.sh [DATA_DIR]   (DATA_DIR holds train/, train_hr/, val/; ../shared/data)
# Each seed trains every config again with `seed: S` (initialisation, batch order, noise) on the same crops, and
# each evaluation writes its raw results to RESULTS/seed<S>/<eval>.json (committed; experiments/report.py renders
# mean ± std over the seeds into docs/results.md). JOBS runs side by side, THREADS torch threads each (default
# 2 × 1: about 65 min of training and 60 min of evaluation per seed on a 2-core CPU). MAX_IMAGES photos of each
# validation set are scored (default 12; SOLVER_IMAGES = 6 for the solver comparison; 0 = all).
set -euo pipefail
DATA=${1:-../shared/data}
VAE=${VAE:-fmboost/weights/default/autoencoder}
JOBS=${JOBS:-2} THREADS=${THREADS:-1} MAX_IMAGES=${MAX_IMAGES:-12} SOLVER_IMAGES=${SOLVER_IMAGES:-6}
SEEDS=${SEEDS:-0 1 2} RESULTS=${RESULTS:-results/ablations}
TUNED_ON="nothing: every run uses the settings in experiments/configs, at one step budget"
ROOT=${ROOT:-runs/experiments}
export OMP_NUM_THREADS=$THREADS ROOT
mkdir -p "$ROOT/logs"
limit() { [ "$1" -gt 0 ] && echo "--max-images $1" || true; }

# One set of crops for every run: the upsampling ablation re-upsamples the same z_lr, nothing else changes.
fmboost prepare "$DATA/train" "$DATA/train_hr" --out "$ROOT/shards_psu" --vae "$VAE" --size 128 --scale 2 \
    --crops-per-image 16 --upsampling psu --device cpu
for up in bilinear nearest; do
  fmboost prepare --from "$ROOT/shards_psu" --upsampling "$up" --out "$ROOT/shards_$up"
done

# One config per (seed, ablation): the ablation's own config, with the seed and an output folder of that seed.
configs=()
for seed in $SEEDS; do
  mkdir -p "$ROOT/seed$seed/configs"
  for cfg in $(ls experiments/configs/*.yaml | grep -v /base.yaml); do
    name=$(basename "$cfg" .yaml)
    printf 'base: %s\nseed: %s\nout: %s\n' "$PWD/$cfg" "$seed" "$ROOT/seed$seed/$name" \
      > "$ROOT/seed$seed/configs/$name.yaml"
    configs+=("$ROOT/seed$seed/configs/$name.yaml")
  done
done
train_one() {  # skipped once done; `--resume auto` continues an interrupted run
  local name seed_dir; name=$(basename "$1" .yaml); seed_dir=$(dirname "$(dirname "$1")")
  [ -f "$seed_dir/$name/done" ] && return 0
  fmboost train --config "$1" --resume auto > "$ROOT/logs/$(basename "$seed_dir")_$name.log" 2>&1 \
    && touch "$seed_dir/$name/done" || { echo "$1 failed: see $ROOT/logs"; return 1; }
}
export -f train_one
printf '%s\n' "${configs[@]}" | xargs -P "$JOBS" -I{} bash -c 'train_one {}'

evals=()  # longest first, so the two workers finish together
for seed in $SEEDS; do
  S=$ROOT/seed$seed
  models() { for n in "$@"; do echo "$S/$n/model"; done; }
  save() { echo "--out $S/eval/$1 --results-out $RESULTS/seed$seed/$1.json"; }
  for set in set14 bsd68; do
    ev="fmboost eval $DATA/val/$set $(limit "$MAX_IMAGES") --tuned-on '$TUNED_ON'"
    # Baselines: flows and diffusion (DDIM) at 1-50 steps, regression once.
    evals+=("$ev --model $(models cfm_psu naive_fm diffusion regression_l1 regression_l2 | tr '\n' ' ') \
        --methods model,bicubic --steps 1,4,8,50 $(save "baselines_$set")")
    # Upsampling, noise augmentation and σ_min: CFM at NFE 1 and 4, against its start x0 and bicubic.
    evals+=("$ev --model $(models cfm_psu cfm_bilinear cfm_nearest cfm_tau0 cfm_tau200 cfm_tau600 cfm_sigma1e-2 \
        | tr '\n' ' ') --methods model,x0,bicubic --steps 1,4 $(save "cfm_$set")")
  done
  for set in set14 bsd68; do
    for solver in rk4 midpoint heun dopri5 euler; do
      evals+=("fmboost eval $DATA/val/$set $(limit "$SOLVER_IMAGES") --tuned-on '$TUNED_ON' \
          --model $S/cfm_psu/model --methods cfm --solver $solver --steps 1,2,4 --metrics psnr,ssim,sharpness,niqe \
          $(save "solver_${solver}_$set")")
    done
  done
done
eval_one() {  # skipped once its results.md exists, or while another process holds its lock
  local out=${1##*--out }
  out=${out%% *}
  mkdir -p "$out"
  [ -f "$out/results.md" ] && return 0
  flock -n "$out/.lock" bash -c "$1 > $ROOT/logs/$(basename "$(dirname "$(dirname "$out")")")_eval_$(basename "$out").log 2>&1" \
    || { echo "failed or running elsewhere: $1 (see $ROOT/logs)"; return 1; }
}
export -f eval_one
printf '%s\n' "${evals[@]}" | xargs -P "$JOBS" -d '\n' -I{} bash -c 'eval_one "{}"'
echo "raw results: $RESULTS/seed*/; docs: python experiments/report.py (then commit both)"

#!/usr/bin/env bash
# The paper's ablations at CPU scale on the embedded default's latent space (factor 2, 8 channels): the `small`
# preset, 750 steps of batch 16 per run (11 runs per seed) on 64 px crops, then evaluation on every photo of
# BSD68 and Set14. Every stage resumes where it stopped; finished runs and evaluations are skipped.
#   SEEDS='0 1 2' bash experiments/run_all.sh [DATA_DIR]   (DATA_DIR holds train/, train_hr/, val/; ../shared/data)
# Seeds run one after another (train, then evaluate), so each finished seed is a complete set of raw results:
# `seed: S` changes initialisation, batch order and noise; the crops stay the same. Each evaluation writes
# RESULTS/seed<S>/<eval>.json (committed; experiments/report.py renders mean ± std over the seeds into
# docs/results.md). JOBS run side by side, THREADS torch threads each (default 2 × 1). On a 2-core CPU a seed
# takes about 55 min of training and 35 min of evaluation.
# CROP: evaluations score the central CROP×CROP square of each photo (default 224; 0 = whole photos, ~3× slower):
# all 82 photos count, which a CPU could not afford at full size for 3 seeds × 11 models.
# WHOLE_SEEDS: seeds whose baselines are evaluated again on whole photos (RESULTS_whole/seed<S>/, ~50 min a seed
# on 2 cores), to check that the crops do not decide the orderings; e.g. WHOLE_SEEDS=0 (none by default).
# FROM: prepared shards to derive the crops from instead of the photos, e.g. FROM=runs/default/shards (the
# default recipe's: the same photos, crops, seed and autoencoder), which saves the encoding.
set -euo pipefail
DATA=${1:-../shared/data}
VAE=${VAE:-fmboost/weights/default/autoencoder}
JOBS=${JOBS:-2} THREADS=${THREADS:-1} CROP=${CROP:-224} SEEDS=${SEEDS:-0 1 2} RESULTS=${RESULTS:-results/ablations}
TUNED_ON="nothing: every run uses the settings in experiments/configs, at one step budget"
ROOT=${ROOT:-runs/experiments}
export OMP_NUM_THREADS=$THREADS ROOT
mkdir -p "$ROOT/logs"

# One set of crops for every run: the upsampling ablation re-upsamples the same z_lr, nothing else changes.
# Every 10th photo is held back, as in the default recipe (the crops are the same as its own).
if [ -n "${FROM:-}" ]; then
  fmboost prepare --from "$FROM" --upsampling psu --out "$ROOT/shards_psu"
else
  fmboost prepare "$DATA/train" "$DATA/train_hr" --out "$ROOT/shards_psu" --vae "$VAE" --size 64 --scale 2 \
      --crops-per-image 16 --upsampling psu --holdout-every 10 --device cpu
fi
for up in bilinear nearest; do
  fmboost prepare --from "$ROOT/shards_psu" --upsampling "$up" --out "$ROOT/shards_$up"
done

train_one() {  # skipped once done, or while another process holds its lock; `--resume auto` continues a run
  local name seed_dir; name=$(basename "$1" .yaml); seed_dir=$(dirname "$(dirname "$1")")
  [ -f "$seed_dir/$name/done" ] && return 0
  flock -n "$seed_dir/configs/$name.lock" fmboost train --config "$1" --resume auto \
      > "$ROOT/logs/$(basename "$seed_dir")_$name.log" 2>&1 \
    && touch "$seed_dir/$name/done" || { echo "$1 failed or running elsewhere (see $ROOT/logs)"; return 1; }
}
eval_one() {  # skipped once its results.md exists, or while another process holds its lock
  local out=${1##*--out }
  out=${out%% *}
  mkdir -p "$out"
  [ -f "$out/results.md" ] && return 0
  local log; log=$(basename "$(dirname "$(dirname "$out")")")_$(basename "$(dirname "$out")")_$(basename "$out")
  flock -n "$out/.lock" bash -c "$1 > $ROOT/logs/$log.log 2>&1" \
    || { echo "failed or running elsewhere: $1 (see $ROOT/logs)"; return 1; }
}
export -f train_one eval_one

for seed in $SEEDS; do
  S=$ROOT/seed$seed
  # One config per ablation: the ablation's own, with the seed and an output folder of this seed.
  mkdir -p "$S/configs"
  for cfg in $(ls experiments/configs/*.yaml | grep -v /base.yaml); do
    name=$(basename "$cfg" .yaml)
    printf 'base: %s\nseed: %s\nout: %s\n' "$PWD/$cfg" "$seed" "$S/$name" > "$S/configs/$name.yaml"
  done
  ls "$S"/configs/*.yaml | xargs -P "$JOBS" -I{} bash -c 'train_one {}'

  # Equal NFE throughout: NFE 1 (regression's one call) and 4 (the default's), diffusion also at its usual 50.
  models() { for n in "$@"; do echo -n "$S/$n/model "; done; }
  save() { echo "--out $S/eval/$1 --results-out $RESULTS/seed$seed/$1.json"; }
  evals=()  # longest first, so the workers finish together
  for set in bsd68 set14; do
    ev="fmboost eval $DATA/val/$set --center-crop $CROP --tuned-on '$TUNED_ON' --metrics psnr,ssim,sharpness,niqe"
    [ "$CROP" -gt 0 ] || ev=${ev/--center-crop $CROP /}
    evals+=("$ev --model $(models diffusion) --methods model --steps 50 $(save "diffusion50_$set")")
    # The baselines: same U-Net, data and budget; flows with Euler, diffusion with DDIM, regression once.
    evals+=("$ev --model $(models cfm_psu naive_fm diffusion regression_l1 regression_l2) --methods model,bicubic \
        --steps 1,4 $(save "baselines_$set")")
    # Upsampling of the low-res latent: x0 and CFM at NFE 1 and 4.
    evals+=("$ev --model $(models cfm_psu cfm_bilinear cfm_nearest) --methods model,x0,bicubic --steps 1,4 \
        $(save "cfm_$set")")
    # Noise augmentation: τ = 100 is cfm_psu (above); each sampled at its training τ.
    evals+=("$ev --model $(models cfm_tau0 cfm_tau200 cfm_tau400 cfm_tau600) --methods model --steps 4 \
        $(save "tau_$set")")
    # Solvers on cfm_psu at NFE 4 (Euler's is in the baselines): midpoint and Heun in 2 steps, RK4 in 1.
    for solver in midpoint:2 heun:2 rk4:1; do
      evals+=("$ev --model $S/cfm_psu/model --methods cfm --solver ${solver%:*} --steps ${solver#*:} \
          $(save "solver_${solver%:*}_$set")")
    done
  done
  if [[ " ${WHOLE_SEEDS:-} " == *" $seed "* ]]; then  # the baselines again, on whole photos
    for set in bsd68 set14; do
      evals+=("fmboost eval $DATA/val/$set --tuned-on '$TUNED_ON' --metrics psnr,ssim,sharpness,niqe \
          --model $(models cfm_psu naive_fm diffusion regression_l1 regression_l2) --methods model,bicubic \
          --steps 1,4 --out $S/eval_whole/baselines_$set --results-out ${RESULTS}_whole/seed$seed/baselines_$set.json")
    done
  fi
  printf '%s\n' "${evals[@]}" | xargs -P "$JOBS" -d '\n' -I{} bash -c 'eval_one "{}"'
  echo "seed $seed done: raw results in $RESULTS/seed$seed/"
done
echo "docs: python experiments/report.py (then commit $RESULTS and docs together)"

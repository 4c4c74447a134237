#!/usr/bin/env bash
# The paper's ablations at CPU scale: tiny preset, 25 minutes of training per run on a 2-core CPU (11 runs,
# about 5 hours with preparation and evaluation). Every stage resumes where it stopped; finished runs are skipped.
#   bash experiments/run_all.sh [DATA_DIR]     (DATA_DIR holds train/, train_hr/, val/; default ../shared/data)
set -euo pipefail
DATA=${1:-../shared/data}
VAE=${VAE:-fmboost/weights/default/autoencoder}
ROOT=runs/experiments
for up in psu bilinear nearest; do
  fmboost prepare "$DATA/train" "$DATA/train_hr" --out "$ROOT/shards_$up" --vae "$VAE" --size 128 --scale 2 \
      --crops-per-image 16 --upsampling "$up" --device cpu
done
for cfg in experiments/configs/*.yaml; do
  name=$(basename "$cfg" .yaml)
  [ "$name" = base ] || [ -f "$ROOT/$name/done" ] && continue
  fmboost train --config "$cfg" --resume auto && touch "$ROOT/$name/done"  # continues an interrupted run
done
models() { for n in "$@"; do echo "$ROOT/$n/model"; done; }
for set in bsd68 set14; do
  # Upsampling, noise augmentation and σ_min: CFM at NFE 1-8.
  fmboost eval "$DATA/val/$set" --model $(models cfm_psu cfm_bilinear cfm_nearest cfm_tau0 cfm_tau200 cfm_tau600 \
      cfm_sigma1e-2) --methods model,x0,bicubic --steps 1,2,4,8 --out "$ROOT/eval/cfm_$set"
  # Baselines: flows at 1-50 steps, diffusion (DDIM) at 1-50, regression once.
  fmboost eval "$DATA/val/$set" --model $(models cfm_psu naive_fm diffusion regression_l1 regression_l2) \
      --methods model,bicubic --steps 1,2,4,8,20,50 --out "$ROOT/eval/baselines_$set"
  for solver in euler midpoint heun rk4 dopri5; do
    fmboost eval "$DATA/val/$set" --model "$ROOT/cfm_psu/model" --methods cfm --solver $solver --steps 1,2,4,8 \
        --out "$ROOT/eval/solver_${solver}_$set"
  done
done
echo "results: $ROOT/eval/*/results.md"

#!/usr/bin/env bash
# One lease of a GPU (about 9 minutes of command time): prepare 128 px shards of the training photos on it, train
# the two GPU designs side by side (cfm_gpu_finetune.yaml: the default's own network from its weights;
# cfm_gpu.yaml: 5.3 M parameters from scratch), each with a cosine schedule sized to the lease from its step rate in
# the first minute, and pack their logs, final models and EMA checkpoints into OUT (lease.tar.NN pieces of 15 MiB).
# Score them afterwards on the CPU with recipes/default/design/curves.py, on the held-back photos.
#   bash recipes/default/gpu_lease.sh PHOTOS OUT [SECONDS]
# PHOTOS holds train/ and train_hr/ *without* their held-back photos (every 10th, as `prepare --holdout-every 10`
# leaves out): a lease carries only the photos it trains on. SECONDS (default 510) is when the training must end.
# DEVICE, CROPS, RANKS, BATCH override the device, crops a photo, prepare processes and batch (for a CPU smoke test);
# DESIGNS picks the two runs (default "finetune large"; "patch" is cfm_gpu_patch.yaml, untested).
# How the lease behind docs/default_model.md ran it: this repository and the kept photos together exceed what one
# call of the device tool carries, so a first call copied most of train/ (from an ignored .gpu/ folder) to
# /tmp/photos and installed the diffusers wheels the GPU machine lacks into /tmp/site; a second call, on the still
# warm machine, copied the rest and ran `PYTHONPATH=/tmp/site:$PWD bash recipes/default/gpu_lease.sh /tmp/photos $OUT`.
set -uo pipefail
PHOTOS=$1; OUT=$2; BUDGET=${3:-510}
DEVICE=${DEVICE:-cuda}; CROPS=${CROPS:-64}; RANKS=${RANKS:-8}; BATCH=${BATCH:-}
RUN=runs/default_gpu; T0=$(date +%s)
declare -A KNOWN=([finetune]=recipes/default/cfm_gpu_finetune.yaml [large]=recipes/default/cfm_gpu.yaml
                  [patch]=recipes/default/cfm_gpu_patch.yaml)
declare -A CONFIG=()
for name in ${DESIGNS:-finetune large}; do
    [ -n "${KNOWN[$name]:-}" ] || { echo "lease: unknown design $name (${!KNOWN[*]})" >&2; exit 2; }
    CONFIG[$name]=${KNOWN[$name]}
done
mkdir -p "$RUN"  # a lease's working tree has no runs/ (ignored by git, so never sent)
FMB="python3 -m fmboost.cli.main"
left() { echo $((BUDGET - ($(date +%s) - T0))); }
echo "lease: $(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")')"

# Shards: RANKS processes (prepare's own sharding), one shard per 16 photos; all on the one GPU.
for r in $(seq 0 $((RANKS - 1))); do
    OMP_NUM_THREADS=2 $FMB prepare "$PHOTOS/train" "$PHOTOS/train_hr" --out $RUN/shards --vae default --size 128 \
        --scale 2 --crops-per-image "$CROPS" --images-per-shard 16 --upsampling pixel --device "$DEVICE" \
        --rank "$r" --world-size "$RANKS" >$RUN.prepare.$r.log 2>&1 &
done
wait
$FMB prepare --merge $RUN/shards 2>/dev/null || true
python3 -c "import json; m = json.load(open('$RUN/shards/manifest.json')); print('lease: shards', m['count'], 'pairs')"
echo "lease: prepared at $(( $(date +%s) - T0 )) s"

train() {  # NAME MAX_STEPS MINUTES
    OMP_NUM_THREADS=4 $FMB train --config "${CONFIG[$1]}" --out "$RUN/$1" --resume auto --max-steps "$2" \
        --max-minutes "$3" ${BATCH:+--batch-size $BATCH} >>"$RUN/$1.log" 2>&1
    echo "lease: $1 exit $? at $(( $(date +%s) - T0 )) s, step $(tail -1 $RUN/$1/log.csv | cut -d, -f1)"
}
# Phase 1: one minute at a flat learning rate (max_steps far away), to measure the step rate side by side.
for name in "${!CONFIG[@]}"; do train "$name" 1000000 1 & done
wait
# Phase 2: resume with the cosine ending when the lease's training time does (minus a restart's 30 s).
for name in "${!CONFIG[@]}"; do
    steps=$(python3 recipes/default/gpu_lease.py steps "$RUN/$name" $(( $(left) - 30 )))
    echo "lease: $name to step $steps"
    train "$name" "$steps" "$(python3 -c "print(max(0.2, ($(left) - 10) / 60))")" &
done
wait
python3 recipes/default/gpu_lease.py pack "$OUT" $(for name in "${!CONFIG[@]}"; do echo "$RUN/$name"; done) $RUN.*.log $RUN/*.log
echo "lease: done at $(( $(date +%s) - T0 )) s"

#!/usr/bin/env bash
# Rebuilds fmboost's embedded default model from photos. Every stage resumes where it stopped: run it again (in
# later sessions too) until it reaches the end.
#   bash recipes/default/make_default.sh [DATA_DIR]      (DATA_DIR holds train/ and train_hr/; default ../shared/data)
# Every 10th photo of each folder is held back by both the autoencoder and prepare; settings are tuned on those
# photos (recipes/default/tune.py), never on BSD68/Set14.
# The shipped flow was then fine-tuned on a GPU (gpu_lease.sh; installed below when its result is there).
# On an idle 2-core CPU: the autoencoder ≈1 h (12,000 steps; its finished checkpoint is committed in
# recipes/default/progress, so a fresh machine skips it), prepare ≈10 min, the flow ≈2 h (3,000 steps of the sr network with the pixel term, across sessions:
# MINUTES=90 bash recipes/default/make_default.sh adds 90 minutes), tuning,
# evaluation and the README grid ≈30 min.
set -euo pipefail
DATA=${1:-../shared/data}
RUN=runs/default
MINUTES=${MINUTES:-}   # e.g. MINUTES=60: stop the autoencoder or the flow after an hour (resumably) and go no further
# A machine does not keep runs/ between sessions: the last session's checkpoint is committed in
# recipes/default/progress/autoencoder (safetensors), and a fresh machine resumes from it exactly.
if [ ! -d "$RUN/autoencoder/checkpoint" ] && [ -d recipes/default/progress/autoencoder/checkpoint ]; then
    mkdir -p "$RUN/autoencoder" && cp -r recipes/default/progress/autoencoder/. "$RUN/autoencoder/"
fi
fmboost train-autoencoder --config recipes/default/autoencoder.yaml --data "$DATA/train" "$DATA/train_hr" \
    --out "$RUN/autoencoder" ${MINUTES:+--max-minutes "$MINUTES"}
steps=$(python -c "import json; print(json.load(open('$RUN/autoencoder/autoencoder/training.json'))['trained_steps'])")
if [ "$steps" -lt 12000 ]; then echo "autoencoder at step $steps of 12000: run again to continue"; exit 0; fi
fmboost prepare "$DATA/train" "$DATA/train_hr" --out "$RUN/shards" --vae "$RUN/autoencoder/autoencoder" \
    --size 64 --scale 2 --crops-per-image 32 --upsampling pixel --holdout-every 10 --device cpu
# The flow trains across sessions like the autoencoder: its newest checkpoint is committed in
# recipes/default/progress/cfm (python recipes/default/keep_progress.py copies it there).
if [ ! -d "$RUN/cfm/checkpoints" ] && [ -d recipes/default/progress/cfm/checkpoints ]; then
    mkdir -p "$RUN/cfm" && cp -r recipes/default/progress/cfm/. "$RUN/cfm/"
fi
fmboost train --config recipes/default/cfm.yaml --data "$RUN/shards" --out "$RUN/cfm" --resume auto \
    ${MINUTES:+--max-minutes "$MINUTES"}
steps=$(python -c "import json; print(json.load(open('$RUN/cfm/model/training.json'))['steps'])" 2>/dev/null || echo 0)
max=$(python -c "import yaml; print(yaml.safe_load(open('recipes/default/cfm.yaml'))['max_steps'])")
if [ "$steps" -lt "$max" ]; then echo "flow at step $steps of $max: run again to continue"; exit 0; fi
# The video model's temporal layers fit the flow they were trained beside: they go with the old flow.
if [ -d fmboost/weights/default/temporal ]; then
    echo "fmboost/weights/default/temporal goes with the old flow: bash recipes/video/make_temporal.sh trains it again"
fi
rm -rf fmboost/weights/default
cp -r "$RUN/cfm/model" fmboost/weights/default
cp "$RUN/autoencoder/autoencoder/training.json" fmboost/weights/default/autoencoder/
# The shipped flow went one step further, on a GPU: fine-tuned from these weights by one lease of
# recipes/default/gpu_lease.sh (docs/default_model.md, "What a GPU lease bought"). With its result unpacked in
# runs/default_gpu, this installs it; without one, the default stays the CPU-trained flow.
if [ -f runs/default_gpu/finetune/model/training.json ]; then
    python recipes/default/gpu_lease.py install runs/default_gpu/finetune/model
fi
# The decoder, fine-tuned on this flow's one-step outputs (docs/default_model.md, "The decoder, fine-tuned");
# ≈1 h on one core. It installs itself into the model's autoencoder/ once it reaches its steps.
python recipes/default/train_decoder.py "$DATA/train" "$DATA/train_hr" --out "$RUN/decoder" --steps 2000 \
    --lr 2e-4 --resume --install ${MINUTES:+--max-minutes "$MINUTES"}
steps=$(python -c "import json; print(json.load(open('$RUN/decoder/autoencoder/training.json'))['decoder_steps'])")
if [ "$steps" -lt 2000 ]; then echo "decoder at step $steps of 2000: run again to continue"; exit 0; fi
# The flow, fine-tuned for the one Euler step from the clean x0 through that decoder (docs/default_model.md, "One
# Euler step, fine-tuned"), in two rounds of ≈30 min on 2 cores: the second from the first's flow (its teacher), on
# crops of another seed. Each round first scores the held-back photos (for the docs' table), then installs itself
# into the model's cfm/ once it reaches its steps.
one_step_round() {  # OUT SEED SCORES_BEFORE
    if [ ! -d "$1/checkpoints" ]; then
        python recipes/default/tune.py --model fmboost/weights/default --data "$DATA" --taus 0,50,100,200 \
            --steps 1,2,4 --out "$3"
    fi
    python recipes/default/train_onestep.py "$DATA/train" "$DATA/train_hr" --out "$1" --steps 1200 --seed "$2" \
        --resume --install ${MINUTES:+--max-minutes "$MINUTES"}
    steps=$(python -c "import json; print(json.load(open('$1/cfm/training.json'))['one_step_steps'])")
    if [ "$steps" -lt 1200 ]; then echo "one-step fine-tune $1 at step $steps of 1200: run again to continue"; exit 0; fi
}
one_step_round "$RUN/onestep" 0 results/default_model/onestep/before.json
one_step_round "$RUN/onestep2" 1 results/default_model/onestep/round1.json
fmboost info fmboost/weights/default
# Sampling τ and colour fix, measured on the held-back photos (cfm.yaml's sample_tau and color_fix were set from it)
python recipes/default/tune.py --model fmboost/weights/default --data "$DATA"
python recipes/default/evaluate.py --data "$DATA" --steps 1,4
python recipes/default/readme_grid.py --data "$DATA"
python recipes/default/autoencoder_progress.py --data "$DATA"
python experiments/report.py

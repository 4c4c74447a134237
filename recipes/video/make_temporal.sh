#!/usr/bin/env bash
# Trains the embedded default's temporal layers, installs them as fmboost/weights/default/temporal, measures the
# flicker on a pan over BSD68 photos and regenerates docs/video.md. Resumable: run it again (in later sessions too)
# until every stage is done; MINUTES=60 stops the training after an hour (resumably) and goes no further.
#   bash recipes/video/make_temporal.sh [DATA_DIR]      (DATA_DIR holds train/, train_hr/ and val/bsd68; ../shared/data)
# Every 10th photo of train/ and train_hr/ is held back, as for the image model; BSD68 is for reporting only.
#
# Stage 1: 2,000 steps from layers that compute the image model, λ_T (the decoded temporal term) 1. Its result is
# committed in recipes/video/stage1/ (a temporal/ folder). Stage 2: 600 steps from stage 1 with λ_T 4 and a fresh
# warm-up and cosine, weighing the frame-to-frame error more once the layers have learnt to use their neighbours.
# Stage 3: 600 steps with a layer after every block instead of every second (stage 2's where they were, identity
# ones between), λ_T 4; stage 4: 600 more from stage 3 at 2·10⁻⁴. Stages 2-4 run again on the installed flow
# whenever that changes (stage 1 was trained beside the CPU-trained flow).
# The running stage's newest checkpoint is committed in recipes/video/checkpoint/ at the end of a session (runs/ is
# not kept): a fresh checkout continues from it. Once stage 4 is installed beside the installed flow (its
# training.json names the --init it started from and the flow's sha256), the script goes straight to the benchmark.
set -euo pipefail
DATA=${1:-../shared/data}
RUN=${RUN:-runs/video}
MINUTES=${MINUTES:-}
STAGE1=recipes/video/stage1
train() {  # OUT STEPS TEMPORAL_WEIGHT LR [extra args]
    local out=$1 steps=$2 weight=$3 lr=$4 saved=recipes/video/checkpoint; shift 4
    if [ ! -d "$out/checkpoints" ] && [ -f "$saved/config.json" ] && grep -q "\"out\": \"$out\"" "$saved/config.json"; then
        local name; name=$(python -c "import json; print('step_%07d' % json.load(open('$saved/complete.json'))['step'])")
        mkdir -p "$out/checkpoints/$name" && cp "$saved"/* "$out/checkpoints/$name/"
    fi
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python recipes/video/train_temporal.py "$DATA/train" "$DATA/train_hr" \
        --model fmboost/weights/default --out "$out" --steps "$steps" --resume --temporal-weight "$weight" \
        --lr "$lr" ${MINUTES:+--max-minutes "$MINUTES"} "$@"
    local reached; reached=$(python -c "import json; print(json.load(open('$out/temporal/training.json'))['steps'])")
    if [ "$reached" -lt "$steps" ]; then echo "$out at step $reached of $steps: run again to continue"; exit 0; fi
}
if [ ! -f "$STAGE1/training.json" ]; then
    train "$RUN" 2000 1.0 5e-4
    mkdir -p "$STAGE1" && cp "$RUN"/temporal/* "$STAGE1/"
fi
# Stages 2-4 again whenever the default's flow changed since its layers were trained (their training.json names the
# flow's sha256): stage 1's layers are a start, not a fit, for another flow. Stage 3 spreads stage 2's layers to one
# after every block (the new ones start as the identity: TemporalLayers.denser), stage 4 continues it at a lower rate.
INSTALLED=fmboost/weights/default/temporal/training.json
FLOW=$(sha256sum fmboost/weights/default/cfm/diffusion_pytorch_model.safetensors | cut -d' ' -f1)
if ! python -c "
import json, sys
c = json.load(open('$INSTALLED'))
sys.exit(not (c['steps'] >= 600 and c['config']['every'] == 1 and c['config']['init']
              and c.get('flow_sha256') == '$FLOW'))" 2>/dev/null; then
    S="$RUN-${FLOW:0:8}"
    train "$S-stage2" 600 4.0 3e-4 --init "$STAGE1"
    train "$S-stage3" 600 4.0 3e-4 --init "$S-stage2/temporal" --every 1
    train "$S-stage4" 600 4.0 2e-4 --init "$S-stage3/temporal" --every 1 --install
fi
fmboost info fmboost/weights/default
python benchmarks/video_flicker.py --data "$DATA/val/bsd68"
python experiments/report.py

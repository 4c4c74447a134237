#!/usr/bin/env bash
# Trains the embedded default's temporal layers, installs them as fmboost/weights/default/temporal, measures the
# flicker on a pan over BSD68 photos and regenerates docs/video.md. Resumable: run it again (in later sessions too)
# until it reaches STEPS; MINUTES=60 stops the training after an hour (resumably) and goes no further.
#   bash recipes/video/make_temporal.sh [DATA_DIR]      (DATA_DIR holds train/, train_hr/ and val/bsd68; ../shared/data)
# Every 10th photo of train/ and train_hr/ is held back, as for the image model; BSD68 is for reporting only.
set -euo pipefail
DATA=${1:-../shared/data}
RUN=${RUN:-runs/video}
STEPS=${STEPS:-2000}
MINUTES=${MINUTES:-}
# λ_T of the decoded temporal term: the run on the sr default (started 2026-12-04) uses 1; earlier short runs used 0.
TEMPORAL_WEIGHT=${TEMPORAL_WEIGHT:-1.0}
# A run's newest checkpoint is committed in recipes/video/checkpoint/ at the end of a session (runs/ is not kept):
# a fresh checkout continues from it.
if [ ! -d "$RUN/checkpoints" ] && [ -d recipes/video/checkpoint ]; then
    mkdir -p "$RUN/checkpoints" && cp -r recipes/video/checkpoint/step_* "$RUN/checkpoints/"
fi
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python recipes/video/train_temporal.py "$DATA/train" "$DATA/train_hr" \
    --model fmboost/weights/default --out "$RUN" --steps "$STEPS" --resume --install \
    --temporal-weight "$TEMPORAL_WEIGHT" ${MINUTES:+--max-minutes "$MINUTES"}
steps=$(python -c "import json; print(json.load(open('$RUN/temporal/training.json'))['steps'])")
if [ "$steps" -lt "$STEPS" ]; then echo "temporal layers at step $steps of $STEPS: run again to continue"; exit 0; fi
fmboost info fmboost/weights/default
python benchmarks/video_flicker.py --data "$DATA/val/bsd68"
python experiments/report.py

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
python recipes/video/train_temporal.py "$DATA/train" "$DATA/train_hr" --model fmboost/weights/default --out "$RUN" \
    --steps "$STEPS" --resume --install ${MINUTES:+--max-minutes "$MINUTES"}
steps=$(python -c "import json; print(json.load(open('$RUN/temporal/training.json'))['steps'])")
if [ "$steps" -lt "$STEPS" ]; then echo "temporal layers at step $steps of $STEPS: run again to continue"; exit 0; fi
fmboost info fmboost/weights/default
python benchmarks/video_flicker.py --data "$DATA/val/bsd68"
python experiments/report.py

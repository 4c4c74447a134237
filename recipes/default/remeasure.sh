#!/usr/bin/env bash
# Everything the README and docs quote of the embedded default, measured again after its weights change.
#   [TIMING=0] bash recipes/default/remeasure.sh DATA_DIR [PEERS_PYTHON]
# DATA_DIR holds train/ and val/ (e.g. ../shared/data); PEERS_PYTHON is ../shared/tools/peers/setup.sh's python
# (SRMD beside fmboost; without it the peer columns say they were not run). Each raw file records the commit it
# was measured on, so the tree must be committed: each step's results are committed before the next starts.
# Run it on an idle CPU (timings): ≈1 h on 2 cores.
set -euo pipefail
DATA=${1:?DATA_DIR (with train/ and val/)}
PY=${2:-/tmp/fmboost-peers-venv/bin/python}
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "commit your changes first: every raw file records the commit it was measured on" >&2; exit 2
fi
step() {
    echo "== $*"
    "$@"
    git add -A results docs README.md
    git commit -qm "Remeasured the embedded default: $*" || true
}
step python recipes/default/tune.py --model fmboost/weights/default --data "$DATA" --taus 0,50,100,200 --steps 1,2,4
step python recipes/default/evaluate.py --data "$DATA" --steps 1,2,4
step python recipes/default/precision.py --data "$DATA"
step python recipes/default/canary.py
step python recipes/default/readme_grid.py --data "$DATA"
# τ 200: the detail setting tune.py chose on the held-back photos (lowest NIQE; results/default_model/tuning.json)
step python benchmarks/peers.py --data "$DATA" --peers-python "$PY" --steps 1,2 --taus 200
# Timings: TIMING=0 skips them when only weights changed, not the networks (the same arithmetic takes the same time)
if [ "${TIMING:-1}" != 0 ]; then
    step python benchmarks/contention.py --peers-python "$PY"
    step python benchmarks/large_photo.py --peers-python "$PY"
    step python benchmarks/contention.py --peers-python "$PY" --busy-session own --threads 3 --repeats 5 \
        --out results/bench/contention_own_cpu.json
    step python benchmarks/upscale.py --size 256
    step python benchmarks/upscale.py --size 512
fi
# The video path runs the default's flow too (its temporal layers ride on it)
step python benchmarks/video_flicker.py --data "$DATA/val/bsd68"
step python benchmarks/video_flicker.py --data "$DATA" --heldback --photos 8
step python experiments/report.py

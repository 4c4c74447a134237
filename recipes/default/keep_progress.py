"""Keeps the default's flow run across sessions: copies its newest complete checkpoint, config.json and log.csv
from runs/default/cfm into recipes/default/progress/cfm (replacing the one there), to be committed.

    python recipes/default/keep_progress.py [--run runs/default/cfm]

make_default.sh copies it back to runs/default/cfm on a fresh machine, and `fmboost train --resume auto` continues
from it exactly (the checkpoint's record, complete.json, is verified on resume).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from fmboost.training.checkpoints import checkpoint_folders, checkpoint_problem

ROOT = Path(__file__).resolve().parents[2]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/default/cfm")
    p.add_argument("--to", default=str(ROOT / "recipes" / "default" / "progress" / "cfm"))
    args = p.parse_args()
    run, dest = Path(args.run), Path(args.to)
    newest = next((f for f in checkpoint_folders(run) if checkpoint_problem(f) is None), None)
    if newest is None:
        raise SystemExit(f"{run}: no complete checkpoint to keep")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(newest, tmp / "checkpoints" / newest.name)
    for name in ("config.json", "log.csv"):
        shutil.copy2(run / name, tmp / name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)  # the old copy goes only once the new one is whole
    print(f"kept {newest} in {dest}")


if __name__ == "__main__":
    main()

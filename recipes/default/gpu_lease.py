"""Helpers of gpu_lease.sh: the schedule's length from a run's measured step rate, and the lease's results packed
into pieces small enough to come back from the GPU machine.

    python recipes/default/gpu_lease.py steps RUN SECONDS     the step at which a cosine over SECONDS more ends
    python recipes/default/gpu_lease.py pack OUT RUN... [FILE...]
    python recipes/default/gpu_lease.py install MODEL       a fine-tuned model's flow becomes the embedded default's
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save

PIECE = 15 * 2 ** 20   # the GPU machine returns files of at most 16 MiB ...
BUDGET = 56 * 2 ** 20  # ... and 64 MiB in all, with the log beside them
WARM = 15.0            # seconds of a run's start (CUDA kernels chosen, shards read) left out of its rate


def steps_for(run: Path, seconds: float) -> int:
    rows = [(int(r["step"]), float(r["seconds"])) for r in csv.DictReader((run / "log.csv").open())]
    warm = [r for r in rows if r[1] >= WARM] or rows
    if len(warm) < 2:  # too few steps logged to tell (a CPU smoke test): max_minutes ends the run instead
        return (warm[-1][0] if warm else 0) + 100_000
    (s0, t0), (s1, t1) = warm[0], warm[-1]
    rate = (s1 - s0) / (t1 - t0) if t1 > t0 else s1 / max(t1, 1.0)
    return int(s1 + rate * max(0.0, seconds))


def checkpoint_emas(run: Path) -> list[Path]:
    return sorted(run.glob("checkpoints/step_*/ema.safetensors"), key=lambda p: int(p.parent.name[5:]))


def half(path: Path) -> bytes:
    """A checkpoint's EMA in fp16: for the learning curve only (the final model travels in fp32)."""
    return save({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(path)).items()})


def members(runs: list[Path], files: list[Path]) -> list[tuple[str, bytes]]:
    """(name in the tar, bytes): each run's config, log and model in full, then its checkpoints' EMAs (in fp16,
    evenly spaced, the newest kept) while they fit the budget."""
    out = []
    for run in runs:
        for p in [run / "config.json", run / "log.csv", *sorted((run / "model").rglob("*"))]:
            if p.is_file() and "autoencoder" not in p.parts:  # the default's own, unchanged: not sent back
                out.append((f"{run.name}/{p.relative_to(run)}", p.read_bytes()))
    out += [(f"logs/{p.name}", p.read_bytes()) for p in files if p.is_file()]
    used = sum(len(b) for _, b in out)
    emas = {run: checkpoint_emas(run) for run in runs}
    for k in range(1, 1 + max(map(len, emas.values()), default=0)):  # newest first, then spread back
        for run, paths in emas.items():
            picks = paths[::-1][::max(1, len(paths) // k)][:k]
            for p in picks:
                name = f"{run.name}/{p.relative_to(run)}"
                if any(n == name for n, _ in out):
                    continue
                data = half(p)
                if used + len(data) > BUDGET:
                    return out
                out.append((name, data))
                used += len(data)
    return out


def pack(out: Path, paths: list[Path]) -> None:
    runs = [p for p in paths if p.is_dir()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members(runs, [p for p in paths if not p.is_dir()]):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(data), PIECE):
        (out / f"lease.tar.{i // PIECE:02d}").write_bytes(data[i:i + PIECE])
    print(f"lease: packed {len(data) / 2 ** 20:.1f} MiB into {-(-len(data) // PIECE)} pieces")


def install(model: Path, default: Path = Path("fmboost/weights/default")) -> None:
    """The flow of `model` (fine-tuned from the default: same network, autoencoder and sampling settings) replaces
    the default's; training.json keeps the training it started from and the settings chosen after training."""
    old = json.loads((default / "training.json").read_text())
    new = json.loads((model / "training.json").read_text())
    if new["config"]["init"] != "default":
        sys.exit(f"{model} was not fine-tuned from the default (init: {new['config']['init']})")
    keep = {k: v for k, v in json.loads((model / "fmboost.json").read_text()).items() if k != "steps"}
    if {k: v for k, v in json.loads((default / "fmboost.json").read_text()).items() if k != "steps"} != keep:
        sys.exit(f"{model}/fmboost.json samples differently from the default: install it by hand")
    shutil.copytree(model / "cfm", default / "cfm", dirs_exist_ok=True)
    started = {k: v for k, v in old.items() if k != "after_training"}
    (default / "training.json").write_text(json.dumps(
        {**new, "started_from": started, "after_training": old["after_training"]}, indent=2) + "\n")
    print(f"installed {model}/cfm as {default}/cfm ({new['steps']} steps from the default's {old['steps']})")


def main():
    torch.set_num_threads(4)
    if sys.argv[1] == "steps":
        print(steps_for(Path(sys.argv[2]), float(sys.argv[3])))
    elif sys.argv[1] == "install":
        install(Path(sys.argv[2]))
    elif sys.argv[1] == "pack":
        pack(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

"""Learning curves of the design runs on held-back *training* photos (never BSD68/Set14).

    python recipes/default/design/curves.py runs/design/unet_small runs/design/sr ... [--data ../shared/data]

For every checkpoint of each run (or, for a model folder, the model itself: written as model_NAME.json) (OUT/checkpoints/step_N, its EMA weights), the centre `--crop` px of each held-back
photo (every 10th of train/ and train_hr/, which neither the autoencoder nor the shards saw) is downscaled ×2
(bicubic) and upscaled back at NFE `--steps` (Euler, the run's sampling τ and colour fix). Writes
results/default_model/design/RUN.json: per checkpoint the step, the training seconds (log.csv) and the mean PSNR and
SSIM, with bicubic's on the same crops; checkpoints already in the file are not evaluated again.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from fmboost.data.images import resize, to_pil, to_tensor
from fmboost.data.photos import held_back_pairs
from fmboost.evaluation import metrics as M
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.models.presets import build_model
from fmboost.pipelines.upscale import FMBoostPipeline
from fmboost.training.checkpoints import checkpoint_folders

ROOT = Path(__file__).resolve().parents[3]
TUNED_ON = "held-back training photos (every 10th of train/ and train_hr/)"


def held_back_crops(data: str, crop: int, holdout_every: int = 10):
    """(low-res, high-res) PIL pairs: each held-back photo's centre crop and its bicubic ×½."""
    return [(lr, hr) for _, hr, lr in held_back_pairs([f"{data}/train", f"{data}/train_hr"], holdout_every, crop)]


def seconds_at(run: Path) -> dict[int, float]:
    """Training seconds at each logged step (log.csv restarts its clock on resume: the pieces are summed)."""
    rows = list(csv.DictReader((run / "log.csv").open()))
    total, last, out = 0.0, 0.0, {}
    for r in rows:
        s = float(r["seconds"])
        total += s - last if s >= last else s
        last = s
        out[int(r["step"])] = total
    return out


def seconds_at_or_before(seconds: dict[int, float], step: int) -> float | None:
    """The clock at `step`, or at the last step logged before it (a run stopped by --max-minutes checkpoints a
    step that log.csv, written every log_every steps, may not hold)."""
    logged = [s for s in seconds if s <= step]
    return seconds[max(logged)] if logged else None


def label(path: Path) -> str:
    """The raw file's name: a run folder's own, or its parent's for the recipes' `RUN/cfm`; `model_` + the name of a
    model folder (of the run, for `RUN/cfm/model`)."""
    if (path / "fmboost.json").exists():
        inside = path.name == "model" and path.parent.name == "cfm"  # RUN/cfm/model: named by RUN
        return "model_" + (path.parent.parent.name if inside else path.parent.name if path.name == "model" else path.name)
    return f"{path.parent.name}_cfm" if path.name == "cfm" else path.name


def score(pipe, pairs, steps: int) -> dict:
    psnr, ssim = [], []
    for lr, hr in pairs:
        out = pipe.upscale_tensor(to_tensor(lr)[None], "cfm", steps)[0]
        y = to_pil(out[0])
        psnr.append(M.psnr(y, hr, "rgb", 2))
        ssim.append(M.ssim(y, hr, "rgb", 2))
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--crop", type=int, default=192)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--every", type=int, default=1, help="evaluate every n-th checkpoint (and the last)")
    p.add_argument("--out", default=str(ROOT / "results" / "default_model" / "design"))
    args = p.parse_args()
    pairs = held_back_crops(args.data, args.crop)
    bicubic = {"psnr": float(np.mean([M.psnr(resize(lr, hr.size), hr, "rgb", 2) for lr, hr in pairs])),
               "ssim": float(np.mean([M.ssim(resize(lr, hr.size), hr, "rgb", 2) for lr, hr in pairs]))}
    default = FMBoostPipeline.from_pretrained("default")  # each run's network is scored on its autoencoder
    for run in map(Path, args.runs):
        if (run / "fmboost.json").exists():  # a finished model folder (the previous default): one point
            pipe = FMBoostPipeline.from_pretrained(run)
            with torch.no_grad():
                point = score(pipe, pairs, args.steps)
            print(f"{run}: PSNR {point['psnr']:.3f} SSIM {point['ssim']:.4f}", flush=True)
            write_json(Path(args.out) / f"{label(run)}.json",
                       {"meta": run_meta(tuned_on=TUNED_ON),
                        "settings": {"model": str(run), "crop": args.crop, "steps": args.steps,
                                     "photos": len(pairs), "training": json.loads((run / "training.json").read_text())
                                     if (run / "training.json").exists() else None,
                                     "autoencoder_training": json.loads((run / "autoencoder" / "training.json")
                                                                        .read_text())
                                     if (run / "autoencoder" / "training.json").exists() else None},
                        "bicubic": bicubic, "model": point})
            continue
        cfg = json.loads((run / "config.json").read_text())
        dest = Path(args.out) / f"{label(run)}.json"
        done = {c["step"]: c for c in json.loads(dest.read_text())["checkpoints"]} if dest.exists() else {}
        net = build_model(cfg["preset"], 8, **cfg["model"]).eval()
        tau = cfg["sample_tau"] if cfg["sample_tau"] is not None else cfg["tau"]
        pipe = FMBoostPipeline(default.autoencoder, net, default.config.replace(tau=tau, color_fix=cfg["color_fix"]))
        seconds = seconds_at(run)
        folders = sorted(checkpoint_folders(run), key=lambda f: int(f.name[5:]))
        chosen = folders[args.every - 1::args.every] + ([folders[-1]] if len(folders) % args.every else [])
        for folder in chosen:
            step = int(folder.name[5:])
            if step in done:
                done[step]["seconds"] = seconds_at_or_before(seconds, step)
                continue
            net.load_state_dict(load_file(str(folder / "ema.safetensors")))
            with torch.no_grad():
                done[step] = {"step": step, "seconds": seconds_at_or_before(seconds, step),
                              **score(pipe, pairs, args.steps)}
            print(f"{run.name} step {step}: PSNR {done[step]['psnr']:.3f} SSIM {done[step]['ssim']:.4f}", flush=True)
        write_json(dest, {"meta": run_meta(tuned_on=TUNED_ON),
                          "settings": {"run": run.name, "config": cfg, "crop": args.crop, "steps": args.steps,
                                       "photos": len(pairs)},
                          "bicubic": bicubic,
                          "checkpoints": [done[s] for s in sorted(done)]})


if __name__ == "__main__":
    main()

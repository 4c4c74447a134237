"""Which model should run the second ×2 pass of `fmboost upscale --model real --scale 4`: chosen on held-back
training photos, never on BSD68/Set14.

    OMP_NUM_THREADS=1 python recipes/real/cascade.py [--data ../shared/data] [--max-images N] [--crop 384]
        [--compare "LABEL=MODEL" ...] [--taus 50,100,150] [--peers-python PY]

Each held-back photo of train/ (every 10th: the photos `make_real.sh` never trains on) is centre-cropped and
degraded ×1/4 (seeded Real-ESRGAN model, as `fmboost degrade --scale 4`). `real` runs the first ×2 pass; the second is
`real` again, `default` (the clean model: the first pass already removed the degradation), or bicubic; bicubic ×4
for reference. Each pass at its model's own step count. Scored like benchmarks/real4.py (PSNR, SSIM, 4 px shaved;
NIQE; sharpness; colour shift). Writes results/real4/cascade.json. The rule (experiments/doc_tables.py
cascade_choice): the highest PSNR, except that candidates within 0.1 dB of it (a tie on a few photos) are ranked by
NIQE. The winner is `next_model:` in recipes/real/cfm.yaml, which the exported fmboost.json carries.

--compare LABEL=MODEL adds a row for another model folder's ×4 as `fmboost upscale --model MODEL --scale 4` runs it
(a ×4 model in one pass; a ×2 model through its own next_model; MODEL@T: with `--tau T`):
recipes/real/design/compare_x4.sh compares a ×4 model and `real`'s first round with the cascade this way. Those rows
are not second-pass candidates.

--taus adds `real`'s own ×4 at each `--tau T` (generated detail for fidelity), and --peers-python (the peers' venv:
`bash ../shared/tools/peers/setup.sh`) Real-ESRGAN x4plus on the same low-res files: together the
perception–distortion frontier of fmboost's ×4 against the peer, on photos the reporting sets never see
(docs/real_world_x4.md).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from fmboost.data.degradations import degrade_named
from fmboost.data.images import resize_by
from fmboost.data.photos import held_back_pairs
from fmboost.data.sources import resolve_model
from fmboost.evaluation.evaluate import load_metric_nets
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.pipelines.upscale import FMBoostPipeline

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from peers import row, run_peer, timed  # noqa: E402
SCALE = 4
SECOND = ("real", "default", "bicubic")  # candidates for the second pass
METRICS = ("psnr", "ssim", "sharpness", "niqe")
PEER = "esrgan4"


def degraded_pairs(folders: list[str], crop: int, seed: int, max_images: int | None) -> list[dict]:
    """The held-back photos' centre crops (a multiple of 8 px) and their seeded degradation ×1/4."""
    pairs = []
    for path, hr, _ in held_back_pairs(folders, 10, crop, SCALE)[:max_images]:
        pairs.append({"name": path.stem, "hr": hr, "lr": degrade_named(hr, SCALE, seed, path.name)})
    return pairs


def second_pass(name: str, pipes: dict):
    if name in ("bicubic", "lanczos"):
        return lambda im: resize_by(im, 2, name)
    return lambda im: pipes[name].upscale(im)[0]


def own_x4(folder: str, tau: float | None = None):
    """A model folder's ×4 as `fmboost upscale --model FOLDER --scale 4 [--tau T]` runs it (pipelines/cascade.py)."""
    from fmboost.pipelines.cascade import Cascade, passes_for

    cascade = Cascade(FMBoostPipeline.from_pretrained(folder), folder, "cpu")
    passes = passes_for(SCALE, cascade.config.scale)
    return lambda im: cascade.upscale(im, passes, tau=tau)[0]


def compare_target(model: str) -> tuple[str, float | None]:
    """--compare's MODEL, a folder with an optional @T: the folder and the `--tau T` to run it at (None: its own)."""
    folder, at, tau = model.rpartition("@")
    if not at:
        return model, None
    try:
        return folder, float(tau)
    except ValueError:
        raise SystemExit(f"cascade.py: error: --compare …={model}: the τ after @ must be a number") from None


def measure(label: str, upscale, pairs: list, active, nets) -> dict:
    """benchmarks/peers.py's row (PSNR, SSIM, sharpness, NIQE, colour shift, seconds) of one way to ×4."""
    outs, seconds = timed(upscale, pairs)
    return row(label, outs, [q["hr"] for q in pairs], seconds, active, nets, SCALE)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--crop", type=int, default=384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-images", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=MODEL",
                   help="also a model folder's own ×4 (`--model MODEL --scale 4`; MODEL@T: with `--tau T`), in a "
                        "row named LABEL")
    p.add_argument("--taus", default="", help="comma-separated: also `real`'s ×4 at each --tau T")
    p.add_argument("--peers-python", help="the peers' venv python: also Real-ESRGAN x4plus (esrgan4)")
    p.add_argument("--out", default=str(ROOT / "results" / "real4" / "cascade.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    meta = run_meta(tuned_on="nothing: this run makes the choice, on held-back training photos")
    pairs = degraded_pairs([str(Path(args.data) / "train")], args.crop, args.seed, args.max_images)
    pipes = {m: FMBoostPipeline.from_pretrained(m) for m in ("real", "default")}
    nets, _, active = load_metric_nets(METRICS, None, "cpu", len(pairs))
    rows = [measure("bicubic ×4", lambda im: resize_by(im, SCALE, "bicubic"), pairs, active, nets)]
    for second in SECOND:
        after = second_pass(second, pipes)
        rows.append(measure(f"real → {second}", lambda im, after=after: after(pipes["real"].upscale(im)[0]),
                            pairs, active, nets))
    for label, model in (c.split("=", 1) for c in args.compare):
        folder, tau = compare_target(model)
        rows.append({**measure(label, own_x4(folder, tau), pairs, active, nets), "model": folder,
                     **({"compare_tau": tau} if tau is not None else {})})
    for tau in (float(t) for t in args.taus.split(",") if t.strip()):
        rows.append({**measure(f"real at --tau {tau:g}", own_x4(resolve_model("real"), tau), pairs, active, nets),
                     "tau": tau})
    if args.peers_python:
        with tempfile.TemporaryDirectory() as tmp:
            outs, seconds = run_peer(Path(args.peers_python), PEER, pairs, args.threads, Path(tmp))
        rows.append({**row(PEER, outs, [q["hr"] for q in pairs], seconds, active, nets, SCALE), "peer": True})
    write_json(args.out, {"meta": meta, "photos": f"held-back train/ (every 10th), centre {args.crop} px",
                          "scale": SCALE, "degradation": {"name": "realesrgan", "seed": args.seed},
                          "images": [q["name"] for q in pairs], "threads": args.threads,
                          "steps": {m: pipes[m].config.steps for m in pipes}, "results": rows})
    print(f"{args.out}; the choice: python experiments/report.py (doc_tables.cascade_choice)")


if __name__ == "__main__":
    main()

"""Real-world ×4 (issue 25; the paper's Table 5 setting): degraded photos to 4× their size, fmboost beside
Real-ESRGAN x4plus and bicubic, in one run.

    PY=$(bash ../shared/tools/peers/setup.sh | tail -1)          # the peers' own venv (not a project dependency)
    OMP_NUM_THREADS=1 python benchmarks/real4.py --data ../shared/data --peers-python "$PY" [--model real]
        [--steps 1,2,4,8] [--taus 100,150] [--seed 0] [--threads 1] [--max-images N]

Every photo of BSD68 and Set14, cropped to a multiple of 4, is degraded ×1/4 with the seeded Real-ESRGAN model
(the images `fmboost degrade HR OUT --scale 4 --seed S` writes: fmboost.evaluation.evaluate.load_pairs with
degradation="realesrgan"). Methods: bicubic ×4; fmboost's `--model` ×4 as `fmboost upscale --scale 4` runs it (two ×2
passes, the second by the model's next_model: pipelines/cascade.py; each at its model's own steps: the row `fmboost`,
which the grid shows and issue 25's bar is checked on), as `--steps N` runs it for each N of --steps, and as
`--tau T` runs it for each T of --taus (generated detail for fidelity: what NIQE the setting buys); the peer
esrgan4 (../shared/tools/peers/upscale.py) in its own process on the same low-res files. Scored as
benchmarks/peers.py scores: PSNR and SSIM (RGB, 4 px shaved), sharpness, NIQE, colour shift (levels); seconds per
image, wall clock at --threads, after a warm-up. Writes results/real4/SET.json and the picture grid
docs/real4_grid.png (the photos of GRID, named here before any run); `python experiments/report.py` renders
docs/real_world_x4.md from them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_tools import DEFAULT_PY, PEER_SCRIPT, installed  # noqa: E402
from peers import SETS, row, run_peer  # noqa: E402

from fmboost.data.images import resize_by  # noqa: E402
from fmboost.evaluation.evaluate import load_metric_nets, load_pairs  # noqa: E402
from fmboost.evaluation.niqe import niqe  # noqa: E402
from fmboost.evaluation.provenance import run_meta, write_json  # noqa: E402
from fmboost.pipelines.precision import auto_dtype, dtype_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCALE = 4
PEER = "esrgan4"
METRICS = ("psnr", "ssim", "sharpness", "niqe")
# The grid's photos and crops (HR pixels: left, top, side), fixed before any run: one per set.
GRID = (("bsd68", "102061", (120, 40, 240)), ("set14", "zebra", (200, 80, 240)))
GRID_COLUMNS = ("degraded input", "bicubic", PEER, "fmboost", "original")
OWN_STEPS = "fmboost"  # the row of `fmboost upscale --model MODEL --scale 4` as it is, no --steps: grid and verdicts
TUNED_ON = ("the cascade (real → next_model) chosen on held-back training photos (recipes/real/cascade.py); "
            "`real` fine-tuned on degraded crops of train/ + train_hr/; Real-ESRGAN as published")


def fmboost_methods(model: str, steps: list[int], taus: list[float] = ()) -> tuple[dict, list[str]]:
    """(name → function image → (image, NFE), the model of each of the two passes): bicubic ×4, the model's ×4 as
    `fmboost upscale --model MODEL --scale 4` runs it (each pass at its model's own steps), at each step count
    N, as `--steps N` runs it (N steps every pass), and at each sampling τ T, as `--tau T` runs it (every pass from
    x0 noised to T: the detail setting)."""
    from fmboost.data.sources import resolve_model
    from fmboost.pipelines.cascade import Cascade, passes_for
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe, dtype = FMBoostPipeline.from_pretrained(model), auto_dtype("cpu")  # `fmboost upscale`'s precision
    cascade, passes = Cascade(pipe, resolve_model(model), "cpu"), passes_for(SCALE, pipe.config.scale)
    methods = {"bicubic": lambda im: (resize_by(im, SCALE, "bicubic"), 0),
               OWN_STEPS: lambda im: cascade.upscale(im, passes, dtype=dtype)}  # `fmboost upscale` with no --steps
    for n in steps:
        methods[f"fmboost (--steps {n})"] = lambda im, n=n: cascade.upscale(im, passes, steps=n, dtype=dtype)
    for t in taus:
        methods[f"fmboost (--tau {t:g})"] = lambda im, t=t: cascade.upscale(im, passes, tau=t, dtype=dtype)
    return methods, cascade.names(passes)


def run_method(upscale, pairs) -> tuple[list, float, float]:
    """(outputs, mean seconds per image after a warm-up call, mean NFE per image)."""
    upscale(pairs[0]["lr"])
    outs, seconds, nfes = [], [], []
    for q in pairs:
        t0 = time.perf_counter()
        out, nfe = upscale(q["lr"])
        seconds.append(time.perf_counter() - t0)
        outs.append(out)
        nfes.append(nfe)
    return outs, float(np.mean(seconds)), float(np.mean(nfes))


def measure_set(name: str, pairs: list, methods: dict, args) -> tuple[list, dict, dict]:
    """(rows, peers skipped {peer: why}, {method: outputs}) of one set."""
    hr = [q["hr"] for q in pairs]
    nets, _, active = load_metric_nets(METRICS, None, "cpu", len(pairs))
    rows, outputs, skipped = [], {}, {}
    print(name, flush=True)
    for method, upscale in methods.items():
        outs, seconds, nfe = run_method(upscale, pairs)
        rows.append({**row(method, outs, hr, seconds, active, nets, SCALE), "nfe": nfe})
        outputs[method] = outs
    if not installed(args.peers_python):
        skipped[PEER] = f"not installed ({args.peers_python} or {PEER_SCRIPT} missing)"
        print(f"  {PEER}: skipped, {skipped[PEER]}", flush=True)
        return rows, skipped, outputs
    with tempfile.TemporaryDirectory() as tmp:
        outs, seconds = run_peer(Path(args.peers_python), PEER, pairs, args.threads, Path(tmp))
    rows.append({**row(PEER, outs, hr, seconds, active, nets, SCALE), "nfe": None})
    outputs[PEER] = outs
    return rows, skipped, outputs


def grid_cells(pairs: list, outputs: dict, photo: str, box, fmboost: str) -> list[Image.Image] | None:
    """The grid's row for `photo`: each column's crop at `box`; None when the photo or a column is missing."""
    names = [q["name"] for q in pairs]
    if photo not in names:
        return None
    i, (left, top, side) = names.index(photo), box
    q = pairs[i]
    side = min(side, q["hr"].width - left, q["hr"].height - top) // SCALE * SCALE
    crop = (left, top, left + side, top + side)
    lr_crop = tuple(v // SCALE for v in crop)
    columns = {"degraded input": q["lr"].crop(lr_crop).resize((side, side), Image.NEAREST),
               "bicubic": outputs["bicubic"][i].crop(crop), PEER: outputs.get(PEER, [None] * len(pairs))[i],
               "fmboost": outputs[fmboost][i].crop(crop), "original": q["hr"].crop(crop)}
    if columns[PEER] is None:
        return None
    columns[PEER] = columns[PEER].crop(crop)
    return [columns[c] for c in GRID_COLUMNS]


def write_grid(rows: list[list[Image.Image]], path: Path) -> None:
    side = rows[0][0].width
    grid = Image.new("RGB", (side * len(GRID_COLUMNS), side * len(rows)), "white")
    for r, cells in enumerate(rows):
        for c, cell in enumerate(cells):
            grid.paste(cell.resize((side, side), Image.LANCZOS), (c * side, r * side))
    grid.save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--sets", default="bsd68,set14")
    p.add_argument("--model", default="real")
    p.add_argument("--steps", default="1,2,4,8", help="comma-separated step counts (per pass) of the flow")
    p.add_argument("--taus", default="100,150", help="comma-separated sampling τ values (`--tau`, every pass) to run "
                                                      "besides the model's own; empty for none")
    p.add_argument("--seed", type=int, default=0, help="seed of the degradations (default 0)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--peers-python", default=str(DEFAULT_PY))
    p.add_argument("--max-images", type=int)
    p.add_argument("--out", default=str(ROOT / "results" / "real4"))
    p.add_argument("--grid", default=str(ROOT / "docs" / "real4_grid.png"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = run_meta(tuned_on=TUNED_ON)
    steps = [int(s) for s in args.steps.split(",")]
    taus = [float(t) for t in args.taus.split(",") if t.strip()]
    methods, passes = fmboost_methods(args.model, steps, taus)
    grid_rows = []
    for name in args.sets.split(","):
        pairs = load_pairs(Path(args.data) / SETS[name], SCALE, max_images=args.max_images,
                           degradation="realesrgan", seed=args.seed)
        rows, skipped, outputs = measure_set(name, pairs, methods, args)
        write_json(Path(args.out) / f"{name}.json",
                   {"meta": meta, "set": name, "scale": SCALE, "images": [q["name"] for q in pairs],
                    "degradation": {"name": "realesrgan", "seed": args.seed}, "threads": args.threads,
                    "model": args.model, "passes": passes, "grid_method": OWN_STEPS,
                    "dtype": dtype_name(auto_dtype("cpu")),
                    "hr_niqe": float(np.mean([niqe(q["hr"], SCALE) for q in pairs])),
                    "peers_skipped": skipped, "results": rows})
        for set_name, photo, box in GRID:
            cells = grid_cells(pairs, outputs, photo, box, OWN_STEPS) if set_name == name else None
            grid_rows += [cells] if cells else []
    if len(grid_rows) == len(GRID):
        write_grid(grid_rows, Path(args.grid))
        print(f"grid: {args.grid}")


if __name__ == "__main__":
    sys.exit(main())

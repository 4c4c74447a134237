"""Flicker of ×2 video: a synthetic camera pan over photos no model was trained on, with and without temporal layers.

    python benchmarks/video_flicker.py --data ../shared/data/val/bsd68 [--model default] [--photos 4] [--frames 24]

For each photo (the first `--photos` of BSD68, reporting only: never tuned on), the high-res frames are its centre
`--crop` px moved by exactly 1 high-res px per frame (half a low-res px), the low-res frames their PIL bicubic ↓2
(the default's degradation), so the ground truth is known exactly and the sampling phase of the low-res frames
alternates, as a camera pan aliases. Methods: bicubic (PIL), per-frame (each frame as an image: `--per-frame`) and
aligned (the model's temporal layers, MODEL/temporal/), through the same windows as `fmboost upscale clip.mp4`.

Flicker: the mean absolute difference, in levels (0–255, RGB), between consecutive output frames once the known
1 px shift is undone (frame k's x against frame k−1's x+1), over their overlap less an 8 px border; the ground
truth's own value is 0 by construction and is reported as a check. PSNR: each output frame against its high-res
frame (RGB, 8 px border shaved). Writes results/video/flicker.json (per frame and per transition, every method and
photo), docs/video_flicker.png (flicker and PSNR over time) and docs/video_strip.png (one scene crop
followed over consecutive frames, per method).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BORDER = 8
METHODS = ("bicubic", "per-frame", "aligned")


def pan_frames(photo: Image.Image, crop: int, frames: int) -> list[np.ndarray]:
    """High-res frames: the centre crop, 1 px further right each frame (the scene moves left)."""
    w, h = photo.size
    x0, y0 = (w - crop - frames) // 2, (h - crop) // 2
    a = np.asarray(photo.convert("RGB"))
    return [a[y0:y0 + crop, x0 + k:x0 + k + crop].copy() for k in range(frames)]


def flicker(frames: list[np.ndarray]) -> list[float]:
    """Per transition k−1 → k: mean |out_k[:, x] − out_{k−1}[:, x+1]| over the overlap less BORDER px."""
    b = BORDER
    return [float(np.abs(cur[b:-b, b:-b - 1].astype(float) - prev[b:-b, b + 1:-b].astype(float)).mean())
            for prev, cur in zip(frames, frames[1:])]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a[BORDER:-BORDER, BORDER:-BORDER].astype(float) - b[BORDER:-BORDER, BORDER:-BORDER].astype(float)
    return float(10 * np.log10(255.0 ** 2 / max(np.mean(d ** 2), 1e-12)))


def upscale_clip(lows: list[np.ndarray], run, aligned: bool, scale: int) -> list[np.ndarray]:
    """The frames through pipelines/video.upscaled, the command's own windows."""
    from fmboost.pipelines.video import CONTEXT, VideoPlan, upscaled, window_for

    h, w = lows[0].shape[:2]
    context = CONTEXT if aligned else 0
    plan = VideoPlan(None, Path("unused"), True, (w * scale, h * scale), 1,
                     window=window_for(w, h, 1 << 20, context), context=context)
    return [f for _, _, f in upscaled(((i, i, f) for i, f in enumerate(lows)), run, plan)]


def runs(pipe):
    from fmboost.pipelines.video import pixel_run

    scale = pipe.config.scale
    return {"bicubic": (pixel_run(scale), False),
            "per-frame": (lambda x: pipe.upscale_clip(x, aligned=False), False),
            "aligned": (lambda x: pipe.upscale_clip(x, aligned=True), True)}


def strip(clips: dict[str, list[np.ndarray]], hr: list[np.ndarray], path: Path, n: int = 6, size: int = 40,
          zoom: int = 3) -> None:
    """Rows: ground truth, then each method; columns: one scene crop followed over n consecutive frames."""
    h, w = hr[0].shape[:2]
    y, x = (h - size) // 2, (w - size) // 2 + n
    rows = [("ground truth", hr)] + list(clips.items())
    tiles = [[Image.fromarray(frames[k][y:y + size, x - k:x - k + size]).resize((size * zoom,) * 2, Image.NEAREST)
              for k in range(n)] for _, frames in rows]
    gap, label = 4, 110
    out = Image.new("RGB", (label + n * (size * zoom + gap), len(rows) * (size * zoom + gap)), "white")
    from PIL import ImageDraw

    draw = ImageDraw.Draw(out)
    for r, ((name, _), row) in enumerate(zip(rows, tiles)):
        top = r * (size * zoom + gap)
        draw.text((4, top + size * zoom // 2 - 6), name, fill="black")
        for k, tile in enumerate(row):
            out.paste(tile, (label + k * (size * zoom + gap), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    for i, method in enumerate(("ground truth",) + METHODS):
        colour = f"C{i}"  # the same method in the same colour in both plots
        fl = np.mean([p["methods"][method]["flicker"] for p in results["photos"]], axis=0)
        a.plot(range(1, len(fl) + 1), fl, label=method, color=colour)
        if method != "ground truth":
            ps = np.mean([p["methods"][method]["psnr"] for p in results["photos"]], axis=0)
            b.plot(range(len(ps)), ps, label=method, color=colour)
    a.set(xlabel="frame", ylabel="flicker (levels, mean over photos)", title="change from the previous frame")
    b.set(xlabel="frame", ylabel="PSNR (dB, mean over photos)", title="error against the high-res frame")
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="photos no model was trained on (BSD68); with --heldback, the "
                   "folder that holds train/ and train_hr/")
    p.add_argument("--heldback", action="store_true",
                   help="pan over the held-back training photos (every 10th of train/ and train_hr/, on which the "
                        "temporal layers' stages are chosen) instead; writes results/video/flicker_heldback.json "
                        "and no figures")
    p.add_argument("--model", default="default", help="a model folder with temporal/ (the aligned mode)")
    p.add_argument("--photos", type=int, default=4)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--crop", type=int, default=128, help="high-res frame side (px)")
    p.add_argument("--out", default=None, help="default: results/video/flicker.json (flicker_heldback.json)")
    p.add_argument("--figures", default=str(ROOT / "docs"))
    args = p.parse_args(argv)
    args.out = args.out or str(ROOT / "results" / "video" / f"flicker{'_heldback' if args.heldback else ''}.json")

    from fmboost.data.images import list_images, load_image, resize
    from fmboost.evaluation.provenance import run_meta, write_json
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline.from_pretrained(args.model)
    if not pipe.aligned:
        print(f"{args.model} has no temporal layers (temporal/): nothing to compare", file=sys.stderr)
        return 2
    if args.heldback:
        from fmboost.data.photos import split_photos

        photos = split_photos([f"{args.data}/train", f"{args.data}/train_hr"], 10)[1][:args.photos]
    else:
        photos = list_images(args.data)[:args.photos]
    results = {"photos": []}
    for path in photos:
        hr = pan_frames(load_image(path), args.crop, args.frames)
        lows = [np.asarray(resize(Image.fromarray(f), (args.crop // 2, args.crop // 2))) for f in hr]
        entry = {"photo": Path(path).name, "methods": {"ground truth": {"flicker": flicker(hr)}}}
        clips = {}
        for method, (run, aligned) in runs(pipe).items():
            t0 = time.perf_counter()
            clips[method] = upscale_clip(lows, run, aligned, pipe.config.scale)
            entry["methods"][method] = {"flicker": flicker(clips[method]),
                                        "psnr": [psnr(o, t) for o, t in zip(clips[method], hr)],
                                        "seconds_per_frame": (time.perf_counter() - t0) / len(lows)}
            m = entry["methods"][method]
            print(f"{entry['photo']} {method}: flicker {np.mean(m['flicker']):.3f}, PSNR {np.mean(m['psnr']):.2f}",
                  flush=True)
        results["photos"].append(entry)
        if len(results["photos"]) == 1 and not args.heldback:
            strip(clips, hr, Path(args.figures) / "video_strip.png")
    summary = {}
    for method in ("ground truth",) + METHODS:
        rows = [e["methods"][method] for e in results["photos"]]
        summary[method] = {"flicker": float(np.mean([np.mean(r["flicker"]) for r in rows]))}
        if method != "ground truth":
            summary[method]["psnr"] = float(np.mean([np.mean(r["psnr"]) for r in rows]))
            summary[method]["seconds_per_frame"] = float(np.mean([r["seconds_per_frame"] for r in rows]))
    results["summary"] = summary
    trained = Path(pipe_folder(args.model)) / "temporal" / "training.json"
    tuned_on = ("these photos: the temporal layers' stages were chosen on them" if args.heldback
                else "nothing (BSD68: reporting only)")
    results["meta"] = run_meta(tuned_on=tuned_on, model=args.model,
                               settings={"photos": len(photos), "frames": args.frames, "crop": args.crop,
                                         "shift_px_per_frame": 1, "border": BORDER,
                                         "temporal_steps": temporal_steps(trained),
                                         "temporal_every": pipe.temporal.config.every})
    write_json(args.out, results)
    if not args.heldback:
        plot(results, Path(args.figures) / "video_flicker.png")
    for method, s in summary.items():
        print(f"{method}: flicker {s['flicker']:.3f}" + (f", PSNR {s['psnr']:.2f} dB" if "psnr" in s else ""))
    return 0


def pipe_folder(model: str) -> str:
    from fmboost.data.sources import resolve_model

    return resolve_model(model)


def temporal_steps(training: Path):
    """The steps of the layers' last training stage (their training.json)."""
    import json

    return json.loads(training.read_text()).get("steps") if training.is_file() else None


if __name__ == "__main__":
    sys.exit(main())

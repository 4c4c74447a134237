"""`fmboost eval`: every method and step count on the same photos, side by side.

The protocol is the usual one for ×s super-resolution:
1. each HR photo is cropped (bottom/right) to a multiple of the scale; its LR input is the PIL bicubic
   downscale (antialiased: PIL widens the kernel by the factor), or with `degradation="realesrgan"` the seeded
   Real-ESRGAN degradation that `fmboost degrade` writes, or the image of the same stem in `lr_dir`; a ×s model
   reaches a larger power of s by passes (its fmboost.json's next_model after the first: pipelines/cascade.py);
2. every method upscales every LR image; seconds per image are measured after one warm-up call;
3. PSNR and SSIM (RGB and Y, `scale` border pixels shaved), sharpness, NIQE (no reference) and LPIPS are
   averaged over images, and kept per image too; FID compares the whole upscaled images with the HR ones, p-FID
   random patches of both at native resolution (the same boxes in both, which lowers the variance of a small
   test set);
4. results.json holds all of it with a `meta` block (machine, date, command, git commit, what the settings were
   tuned on): the raw-results file that `results/` keeps and `experiments/report.py` renders into the docs.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from fmboost.data.images import list_images, load_image, resize, resize_by
from fmboost.data.model_config import ModelConfig, is_model_folder
from fmboost.errors import InputError, MissingError
from fmboost.evaluation import metrics as M
from fmboost.evaluation.niqe import niqe, niqe_fits
from fmboost.evaluation.provenance import cpu_model, run_meta, write_json
from fmboost.flow.objectives import get_objective
from fmboost.models.device import resolve_device
from fmboost.pipelines.cascade import Cascade, FixedPasses, passes_for
from fmboost.pipelines.methods import MODEL_METHODS
from fmboost.pipelines.precision import dtype_name, resolve_dtype
from fmboost.solvers.ode import SOLVERS

DEFAULT_METHODS = ("cfm", "x0", "bicubic", "lanczos")
PIXEL = {"bicubic", "lanczos"}  # need no model: run once, not once per model
METRICS = ("psnr", "ssim", "sharpness", "niqe", "lpips", "fid", "pfid")
MIN_SIDE = 11  # SSIM's window
DEGRADATIONS = ("realesrgan",)  # of the LR inputs besides PIL bicubic (data/degradations.py)


def evaluate(hr_dir, model_dirs=(), scale: int = 2, methods=DEFAULT_METHODS, steps=(1, 2, 4, 8),
             solver: str = ModelConfig.solver, out_dir="runs/eval", lr_dir=None, device: str = "cpu",
             max_images: int | None = None, metrics=METRICS, hub_dir=None, patch_size: int = 299,
             patches_per_image: int = 10, seed: int = 0, tuned_on: str | None = None,
             results_out=None, center_crop: int | None = None, degradation: str | None = None,
             dtype: str = "fp32") -> dict:
    """Runs every (model, method, steps) on the photos in `hr_dir`; writes results.csv/json/md, plots and a
    grid to `out_dir` (and results.json also to `results_out`) and returns what results.json holds.
    `tuned_on` says, for the record, which photos the models' settings were chosen on; `center_crop` scores
    the central square of that many pixels of each photo (every photo still counts, at a fraction of the cost).
    `degradation` ("realesrgan"): the LR inputs are the photos degraded with `seed`, as `fmboost degrade` does.
    `dtype` (auto | fp32 | bf16 | fp16): the models' compute precision, as `fmboost upscale --dtype` takes it."""
    from fmboost.evaluation.report import finite, write_report

    if isinstance(model_dirs, (str, Path)):
        model_dirs = [model_dirs]
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if solver == "dopri5":  # adaptive: its tolerances, not `steps`, set the NFE, so one run says it all
        steps = list(steps)[:1]
    device = resolve_device(device)
    compute, notice = resolve_dtype(dtype, device)
    if notice:
        tqdm.write(notice)
    meta = run_meta(device, tuned_on)  # at the start: the code and the load the measurement ran with
    check_metrics(metrics)
    pairs = load_pairs(hr_dir, scale, lr_dir, max_images, center_crop, degradation, seed)
    runs = plan_runs(model_dirs, methods, steps)
    pipes = load_models({r["model_dir"] for r in runs if r["model_dir"]}, scale, device)
    nets, skipped, active = load_metric_nets(metrics, hub_dir, device, len(pairs))
    hr = [p["hr"] for p in pairs]
    if "niqe" in active and not all(niqe_fits(im.size, scale) for im in hr):
        skipped["niqe"] = f"needs two 96×96 blocks inside the {scale}-pixel border of every photo"
        active.discard("niqe")
        tqdm.write(f"skipped NIQE: {skipped['niqe']}")
    patch = min(patch_size, *(min(im.size) for im in hr))  # native resolution: patches are never resized up
    # The HR set's Inception features, computed once for every run's FID and p-FID.
    reference = {"fid": inception_features(nets["inception"], hr) if "fid" in active else None,
                 "pfid": inception_features(nets["inception"], hr, patch, patches_per_image, seed)
                 if "pfid" in active else None}

    rows, grid = [], {}
    for run in tqdm(runs, desc="eval", unit="run"):
        pipe = pipes.get(run["model_dir"])
        upscale = make_upscaler(pipe, run["method"], run["steps"], solver, seed, scale, compute)
        outputs, seconds, nfe = time_method(upscale, [p["lr"] for p in pairs], pipe, device, run_name(run))
        scores, per_image = score(outputs, hr, scale, active, nets, reference, patch, patches_per_image, seed)
        rows.append({"model": run["model"], "method": run["method"], "steps": run["steps"],
                     "solver": solver if stepped(run["method"]) else None, "nfe": nfe, **scores,
                     "seconds": seconds, "per_image": per_image})
        grid[run_name(run)] = outputs[0]

    results = {"meta": meta, "device": device_name(device), "dtype": dtype_name(compute),
               "scale": scale,
               "images": [p["name"] for p in pairs],
               "hr_dir": str(hr_dir), "lr_dir": str(lr_dir) if lr_dir else None, "solver": solver,
               "degradation": {"name": degradation, "seed": seed} if degradation else None,
               "passes": {run_name(r): pipes[r["model_dir"]].cascade.names(pipes[r["model_dir"]].passes)
                          for r in runs if isinstance(pipes.get(r["model_dir"]), FixedPasses)},
               "center_crop": center_crop, "crop_border": scale, "patch_size": patch, "patches_per_image": patches_per_image,
               "skipped": skipped, "results": rows}
    if "niqe" in active:  # the photos' own NIQE: the level a detailed, natural output would reach
        results["hr_niqe"] = float(np.mean([niqe(im, scale) for im in hr]))
    write_report(results, pairs[0], grid, out_dir)
    if results_out:
        write_json(results_out, finite(results))
    return results


def stepped(method: str) -> bool:
    """Whether a method runs once per step count: those whose objective's NFE follows the steps (and `model`, a
    hub id's objective, known only once it loads); every other method runs once."""
    if method == "model":
        return True
    return method in MODEL_METHODS and get_objective(method).stepped


def device_name(device: str) -> str:
    """Timings mean little without the hardware that produced them."""
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} ({device})"
    n = torch.get_num_threads()
    return f"CPU {cpu_model()}, {n} thread{'s' if n > 1 else ''}"


def downscale(hr: Image.Image, scale: int, degrade=None) -> tuple[Image.Image, Image.Image]:
    """Crops HR to a multiple of the scale, so LR × scale is exactly HR's size, and downsizes it (PIL bicubic, or
    `degrade(hr, scale)`)."""
    w, h = hr.width // scale * scale, hr.height // scale * scale
    hr = hr.crop((0, 0, w, h))
    return hr, degrade(hr, scale) if degrade else resize(hr, (w // scale, h // scale), "bicubic")


def degrader(degradation: str | None, seed: int, hr_dir, path: Path):
    """`hr, scale → LR` for one photo: None (bicubic), or the seeded degradation `fmboost degrade HR_DIR` gives
    it (the same file name relative to HR_DIR, so the same image)."""
    if degradation is None:
        return None
    from fmboost.data.degradations import degrade_named

    return lambda hr, scale: degrade_named(hr, scale, seed, path.relative_to(hr_dir))


def load_pairs(hr_dir, scale: int, lr_dir=None, max_images: int | None = None,
               center_crop: int | None = None, degradation: str | None = None, seed: int = 0) -> list[dict]:
    if scale < 2:
        raise InputError(f"--scale must be at least 2, got {scale}")
    if degradation is not None and degradation not in DEGRADATIONS:
        raise InputError(f"--degradation {degradation}: choose one of {', '.join(DEGRADATIONS)}")
    if degradation and lr_dir:
        raise InputError("--degradation makes the low-res inputs; it cannot be combined with --lr-dir")
    if center_crop is not None:
        if lr_dir:  # the given LR images would no longer match the cropped references
            raise InputError("--center-crop cannot be combined with --lr-dir")
        if center_crop < MIN_SIDE + 2 * scale:
            raise InputError(f"--center-crop must be at least {MIN_SIDE + 2 * scale} px, got {center_crop}")
    if not Path(hr_dir).is_dir():
        raise MissingError(f"{hr_dir}: no such folder")
    paths = list_images(hr_dir)[:max_images]
    if not paths:
        raise InputError(f"{hr_dir}: no images found (png, jpg, webp, ...)")
    lr_paths = {p.stem: p for p in list_images(lr_dir)} if lr_dir else None
    if lr_dir and not Path(lr_dir).is_dir():
        raise MissingError(f"--lr-dir {lr_dir}: no such folder")
    pairs = []
    for path in paths:
        hr = load_image(path)
        if center_crop:
            if min(hr.size) < center_crop:
                raise InputError(f"{path}: {hr.width}×{hr.height} is smaller than --center-crop {center_crop}")
            left, top = (hr.width - center_crop) // 2, (hr.height - center_crop) // 2
            hr = hr.crop((left, top, left + center_crop, top + center_crop))
        if lr_paths is None:
            hr, lr = downscale(hr, scale, degrader(degradation, seed, hr_dir, path))
        else:
            hr, lr = match_lr(path, hr, lr_paths, scale)
        if min(hr.size) < MIN_SIDE + 2 * scale:
            raise InputError(f"{path}: {hr.width}×{hr.height} is too small to evaluate "
                             f"(need {MIN_SIDE + 2 * scale} px a side)")
        pairs.append({"name": path.stem, "hr": hr, "lr": lr})
    return pairs


def match_lr(path: Path, hr: Image.Image, lr_paths: dict, scale: int) -> tuple[Image.Image, Image.Image]:
    """A given LR image fixes the size: HR is cropped to LR × scale, which must fit inside it."""
    if path.stem not in lr_paths:
        raise MissingError(f"--lr-dir has no image named {path.stem}.* for {path}")
    lr = load_image(lr_paths[path.stem])
    w, h = lr.width * scale, lr.height * scale
    if w > hr.width or h > hr.height:
        raise InputError(f"{lr_paths[path.stem]}: {lr.width}×{lr.height} × {scale} is larger than {path} "
                         f"({hr.width}×{hr.height})")
    return hr.crop((0, 0, w, h)), lr


def model_label(path: Path) -> str:
    """`fmboost train` writes OUT/model, so the run folder's name is the telling one."""
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def plan_runs(model_dirs, methods, steps) -> list[dict]:
    from fmboost.pipelines.methods import ANY_METHOD as KNOWN

    methods, steps = list(dict.fromkeys(methods)), sorted(set(steps))
    if not methods:
        raise InputError("no methods to evaluate")
    unknown = [m for m in methods if m not in KNOWN]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(KNOWN)}")
    if any(s < 1 for s in steps):
        raise InputError(f"--steps must all be at least 1, got {steps}")
    if any(stepped(m) for m in methods) and not steps:
        raise InputError("no step counts given for the flow methods")
    dirs = [Path(d) for d in model_dirs]
    if not dirs and any(m not in PIXEL for m in methods):
        raise InputError("methods other than bicubic/lanczos need --model")
    labels = [model_label(d) for d in dirs]
    if len(set(labels)) < len(labels):
        labels = [str(d) for d in dirs]
    runs = [{"model": "-", "model_dir": None, "method": m, "steps": None} for m in methods if m in PIXEL]
    for d, label in zip(dirs, labels):
        for m in (m for m in methods if m not in PIXEL):
            m = model_objective(d) if m == "model" else m  # so that a regression model runs once
            for s in steps if stepped(m) else [None]:
                runs.append({"model": label, "model_dir": d, "method": m, "steps": s})
    return runs


def model_objective(folder: Path) -> str:
    """The objective a model folder was trained with (its config's); "model", resolved when it loads, for a hub
    id."""
    return ModelConfig.read(folder).objective if is_model_folder(folder) else "model"


def run_name(run: dict) -> str:
    name = run["method"] if run["model"] == "-" else f"{run['model']} {run['method']}"
    return name if run["steps"] is None else f"{name} {run['steps']}"


def load_models(model_dirs, scale: int, device: str) -> dict:
    from fmboost.pipelines.upscale import CONFIG_NAME, FMBoostPipeline

    pipes = {}
    for d in sorted(model_dirs):
        if not d.is_dir():
            raise MissingError(f"--model {d}: no such folder")
        if not (d / CONFIG_NAME).is_file():
            raise MissingError(f"--model {d}: not an fmboost model folder (no {CONFIG_NAME})")
        pipe = FMBoostPipeline.from_pretrained(d, device=device)
        if pipe.config.scale != scale:  # ×4 of a ×2 model: two passes, the second its next_model's
            try:
                pipe = FixedPasses(Cascade(pipe, d, device), passes_for(scale, pipe.config.scale))
            except InputError as e:
                raise InputError(f"--model {d} upscales ×{pipe.config.scale}: {e}") from None
        pipes[d] = pipe
    return pipes


def check_metrics(metrics) -> None:
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise InputError(f"unknown metric(s) {', '.join(sorted(unknown))}; choose from {', '.join(METRICS)}")


def load_metric_nets(metrics, hub_dir, device: str, n_images: int) -> tuple[dict, dict, set]:
    """The pretrained networks the chosen metrics need. Returns (nets, skipped {metric: why}, metrics to
    compute); each metric that cannot be computed is said in one line, and the others go on."""
    nets, skipped = {}, {}
    if "fid" in metrics and n_images < 2:
        skipped["fid"] = "needs at least 2 images"
    needs = {"lpips": ["lpips"], "inception": ["fid", "pfid"]}
    for name, loader in (("lpips", M.load_lpips), ("inception", M.load_inception)):
        wanted = [m for m in needs[name] if m in metrics and m not in skipped]
        if not wanted:
            continue
        try:
            nets[name] = loader(hub_dir=hub_dir, device=device)
        except M.MetricUnavailable as e:
            skipped.update({m: str(e) for m in wanted})
    for metric, why in skipped.items():
        tqdm.write(f"skipped {M.METRIC_NAMES[metric]}: {why}")
    return nets, skipped, set(metrics) - set(skipped)


def random_patches(image, size: int, count: int, seed: int) -> torch.Tensor:
    return M.to_uint8_batch(M.extract_patches(image, size, "random", count, seed))


def inception_features(inception, images, patch: int | None = None, per_image: int = 0, seed: int = 0):
    """Whole images (resized to 299 inside the network) or, with `patch`, random native-resolution patches.
    Image i always gets the same boxes (seed + i), so the HR and the upscaled sets are cut alike."""
    if patch is None:
        return np.concatenate([inception(M.to_uint8_batch([im])) for im in images])
    return np.concatenate([inception(random_patches(im, patch, per_image, seed + i))
                           for i, im in enumerate(images)])


def make_upscaler(pipe, method: str, steps, solver: str, seed: int, scale: int, dtype=None):
    """A function image → (image ×scale, NFE)."""
    if method in PIXEL:  # no model needed; the same PIL filters as FMBoostPipeline's
        return lambda im: (resize_by(im, scale, method), 0)
    return lambda im: pipe.upscale(im, steps=steps or 1, solver=solver, method=method, seed=seed, dtype=dtype)


def time_method(upscale, lrs, pipe, device: str, name: str) -> tuple[list, float, float]:
    """(outputs, mean seconds per image, NFE per image). The warm-up call pays for lazy initialisation,
    allocator growth and cuDNN autotuning, which are no part of the method's cost."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    upscale(lrs[0])
    outputs, seconds, nfes = [], [], []
    for lr in tqdm(lrs, desc=name, unit="img", leave=False):
        sync()
        t0 = time.perf_counter()
        output, nfe = upscale(lr)
        sync()
        seconds.append(time.perf_counter() - t0)
        outputs.append(output)
        nfes.append(nfe)
    nfe = sum(nfes) / len(lrs)
    return outputs, float(np.mean(seconds)), int(nfe) if nfe == int(nfe) else nfe


def score(outputs, hr, scale: int, active: set, nets: dict, reference: dict, patch: int, per_image: int,
          seed: int) -> tuple[dict, dict]:
    """(means over the images, {metric: [value of each image]}) for the per-image metrics; FID and p-FID
    are distances between whole sets, so they have means only."""
    per_image = {}

    def mean(f):
        values = [float(f(o, h)) for o, h in zip(outputs, hr)]
        return float(np.mean(values)), values

    s = dict.fromkeys(("psnr", "psnr_y", "ssim", "ssim_y", "sharpness", "niqe", "lpips", "fid", "pfid"))
    measures = {"psnr": lambda o, h: M.psnr(o, h, "rgb", scale), "psnr_y": lambda o, h: M.psnr(o, h, "y", scale),
                "ssim": lambda o, h: M.ssim(o, h, "rgb", scale), "ssim_y": lambda o, h: M.ssim(o, h, "y", scale),
                "sharpness": lambda o, h: M.sharpness(o, h, scale), "niqe": lambda o, h: niqe(o, scale),
                "lpips": nets.get("lpips")}
    for key, f in measures.items():
        if key.removesuffix("_y") in active:
            s[key], per_image[key] = mean(f)
    if "fid" in active:
        s["fid"] = M.frechet_distance_features(inception_features(nets["inception"], outputs), reference["fid"])
    if "pfid" in active:
        feats = inception_features(nets["inception"], outputs, patch, per_image, seed)
        s["pfid"] = M.frechet_distance_features(feats, reference["pfid"])
    return s, per_image

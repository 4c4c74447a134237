"""`fmboost eval`: compare methods and step counts on a folder of high-res photos.

User mistakes raise an FmboostError (fmboost/errors.py) with a one-line message, which main turns into exit code 2.
"""
from __future__ import annotations

from pathlib import Path

from fmboost.cli.common import add_device_flag, add_solver_flag, pick_device, resolve_model
from fmboost.data.model_config import ModelConfig
from fmboost.errors import InputError, MissingError


def int_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--steps {text}: expected integers separated by commas, e.g. 1,2,4,8") from None


def name_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def add_parser(subparsers) -> None:
    ev = subparsers.add_parser(
        "eval", help="compare methods and step counts: tables, plots, image grids",
        description="Downscale high-res photos (PIL bicubic, antialiased; or take --lr-dir), upscale them with "
                    "every method and step count, and write results.csv, results.json, results.md, plots against "
                    "NFE and an image grid. PSNR/SSIM on RGB and Y, sharpness and NIQE (no weights needed); "
                    "LPIPS, FID and p-FID when their packages and weights are present (never downloaded; otherwise "
                    "skipped with one line). results.json keeps per-image values and a meta block (machine, date, "
                    "command, git commit): the raw-results file of results/.")
    ev.add_argument("hr_dir", metavar="HR_DIR", help="folder of high-res photos (the references)")
    ev.add_argument("--model", nargs="+", default=["default"], metavar="DIR",
                    help="one or more model folders or embedded models (default, real); default: default")
    ev.add_argument("--scale", type=int, default=2,
                    help="upscaling factor: the models' own, or a power of it (×4 of a ×2 model: two passes, the "
                         "second by the model its fmboost.json names as next_model) (default 2)")
    ev.add_argument("--methods", default="cfm,x0,bicubic,lanczos",
                    help="comma-separated, of cfm, x0, bicubic, lanczos, the baselines naive-fm, diffusion, "
                         "regression-l1, regression-l2 (each needs a model trained with that objective) and model "
                         "(each model folder's own objective) (default: %(default)s)")
    ev.add_argument("--steps", default="1,2,4,8", help="step counts of the flow methods (default: %(default)s)")
    add_solver_flag(ev, "ODE solver of the flow methods (one for every model)")
    ev.add_argument("--lr-dir", help="low-res inputs, matched to HR_DIR by file stem (default: downscale HR)")
    ev.add_argument("--degradation", choices=["realesrgan"],
                    help="make the low-res inputs by degrading HR (blur, resize, noise, JPEG, twice: Real-ESRGAN's "
                         "model), seeded by --seed and each file's name: the images `fmboost degrade HR_DIR OUT "
                         "--scale S --seed N` writes (default: PIL bicubic)")
    ev.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                    help="the models' compute precision, as `fmboost upscale --dtype` (default auto: bf16 where "
                         "the hardware computes it natively, else fp32); results.json records which")
    ev.add_argument("--out", default="runs/eval", help="output folder (default: %(default)s)")
    ev.add_argument("--max-images", type=int, help="only the first N photos (sorted by path)")
    ev.add_argument("--center-crop", type=int, metavar="PX",
                    help="score only the central PX×PX square of each photo: every photo counts, at a fraction of "
                         "the time (ablations on a CPU)")
    ev.add_argument("--metrics", default="psnr,ssim,sharpness,niqe,lpips,fid,pfid",
                    help="comma-separated (default: %(default)s); sharpness is the output's luma gradient energy "
                         "over the reference's (below 1 = blurrier); niqe is no-reference (Mittal et al. 2013, "
                         "LIVE pristine model; lower is better)")
    ev.add_argument("--metric-weights", metavar="DIR",
                    help="torch hub folder whose checkpoints/ holds the LPIPS / Inception weights "
                         "(default: torch.hub.get_dir())")
    add_device_flag(ev)
    ev.add_argument("--seed", type=int, default=0,
                    help="seed of the noise augmentation, of p-FID patches and of --degradation (default 0)")
    ev.add_argument("--results-out", metavar="FILE",
                    help="also write results.json to FILE (e.g. results/NAME.json, to commit: see results/README.md)")
    ev.add_argument("--tuned-on", metavar="TEXT",
                    help="recorded in the results' meta: which photos the models' settings were chosen on")
    ev.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from fmboost.evaluation.evaluate import evaluate

    if args.max_images is not None and args.max_images < 1:
        raise InputError(f"--max-images must be at least 1, got {args.max_images}")
    if args.metric_weights and not Path(args.metric_weights).is_dir():
        raise MissingError(f"--metric-weights {args.metric_weights}: no such folder")
    models = [resolve_model(m) for m in args.model]
    results = evaluate(args.hr_dir, models, scale=args.scale, methods=name_list(args.methods),
                       steps=int_list(args.steps), solver=args.solver or ModelConfig.solver, out_dir=args.out,
                       lr_dir=args.lr_dir,
                       device=pick_device(args.device), max_images=args.max_images, metrics=name_list(args.metrics),
                       hub_dir=args.metric_weights, seed=args.seed, tuned_on=args.tuned_on,
                       results_out=args.results_out, center_crop=args.center_crop,
                       degradation=args.degradation, dtype=args.dtype)
    print(f"{len(results['results'])} runs on {len(results['images'])} image(s), {results['device']}: "
          f"{Path(args.out) / 'results.md'}")
    return 0

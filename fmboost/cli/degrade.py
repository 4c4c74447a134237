"""`fmboost degrade IN_DIR OUT_DIR`: seeded Real-ESRGAN-style low-res copies of photos, for inspection and
benchmarks (`fmboost eval HR_DIR --lr-dir OUT_DIR` pairs them by file stem).

User mistakes raise an FmboostError (fmboost/errors.py) with a one-line message, which main turns into exit code 2.
"""
from __future__ import annotations

from pathlib import Path

from fmboost.errors import InputError, MissingError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "degrade", help="write degraded low-res copies of photos (Real-ESRGAN degradations)",
        description="Blur, resize, add noise and JPEG-compress every photo of IN_DIR twice (Real-ESRGAN's "
                    "second-order degradation model) down to 1/--scale of its size (cropped to a multiple of the "
                    "scale), and write it to OUT_DIR under the same relative name. Each image's degradations "
                    "depend only on --seed and its name, so reruns and subsets give the same images.")
    p.add_argument("in_dir", metavar="IN_DIR", help="folder of high-res photos (searched recursively)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (not IN_DIR or inside it)")
    p.add_argument("--scale", type=int, default=2, help="downscaling factor (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random degradations (default 0)")
    p.add_argument("--png", action="store_true",
                   help="write NAME.png instead of the input's format: a .jpg/.webp output is compressed once "
                        "more, at PIL's default quality, on top of the degradations")
    p.set_defaults(func=cmd_degrade)


def output_path(out_dir: Path, relative: Path, png: bool) -> Path:
    return out_dir / (relative.with_suffix(".png") if png else relative)


def check_folders(in_dir: Path, out_dir: Path) -> None:
    if not in_dir.is_dir():
        raise MissingError(f"{in_dir}: no such folder")
    if out_dir.resolve() == in_dir.resolve() or in_dir.resolve() in out_dir.resolve().parents:
        raise InputError(f"OUT_DIR {out_dir} is IN_DIR or inside it; choose another folder")


def cmd_degrade(args) -> int:
    from tqdm.auto import tqdm

    from fmboost.data.degradations import degrade_named
    from fmboost.data.images import ImageError, list_images, load_image, save_image_atomic

    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if args.scale < 2:
        raise InputError(f"--scale must be at least 2, got {args.scale}")
    check_folders(in_dir, out_dir)
    paths = list_images(in_dir)
    if not paths:
        raise InputError(f"{in_dir}: no images found (png, jpg, webp, ...)")
    skipped, written = [], 0
    for path in tqdm(paths, desc="degrade", unit="img"):
        relative = path.relative_to(in_dir)
        try:
            im = load_image(path)
            if min(im.size) < args.scale:
                raise ImageError(f"{path}: {im.width}×{im.height} is too small to downscale ×{args.scale}")
        except ImageError as e:
            skipped.append(str(e))
            tqdm.write(f"skipped {e}")
            continue
        lr = degrade_named(im, args.scale, args.seed, relative)
        save_image_atomic(lr, output_path(out_dir, relative, args.png))
        written += 1
    print(f"{written} degraded image(s) (×1/{args.scale}, seed {args.seed}) in {out_dir}; "
          f"{len(skipped)} skipped")
    for s in skipped:
        print(f"  skipped {s}")
    return 0

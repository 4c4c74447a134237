"""Upscaling files and folders: which output each input gets, and one file's way from disk to disk with its
alpha, ICC profile and EXIF.

Files named on the command line are checked before any work (a typo should cost nothing); files found by walking
a folder are a batch, where one damaged file must not stop the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fmboost.data.images import IMAGE_SUFFIXES, ImageError, open_image, output_format, save_image_atomic, to_rgb
from fmboost.data.metadata import carried, fill_transparent, save_params, with_alpha
from fmboost.errors import InputError
from fmboost.pipelines.scaling import upscale_to

FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}


@dataclass
class Job:
    source: Path
    output: Path
    named: bool  # named on the command line (checked up front) rather than found in a folder


def output_for(source: Path, folder: Path, tag: str, fmt: str) -> Path:
    suffix = source.suffix.lower() if fmt == "same" else FORMATS[fmt]
    return folder / f"{source.stem}_{tag}{suffix}"


def walk(folder: Path, recursive: bool, skip: Path | None = None) -> list[Path]:
    """Images in a folder (and its sub-folders if `recursive`), sorted; never those inside `skip` (the output
    folder, when it lies inside the input folder)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    skip = skip.resolve() if skip is not None else None
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not (skip is not None and p.resolve().is_relative_to(skip)))


def plan_jobs(inputs: list[str], output: str | None, tag: str, fmt: str = "png",
              recursive: bool = False) -> list[Job]:
    """One job per image. A file goes beside itself as NAME_TAG.png, or into -o (a folder, or a file name for
    one input); a folder's images go into -o (default: FOLDER_TAG beside it) with the sub-folders kept."""
    out = Path(output) if output is not None else None
    single_file = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    jobs = []
    for name in inputs:
        src = Path(name)
        if src.is_dir():
            root = out if out is not None else src.with_name(f"{src.name}_{tag}")
            if out is not None and len([i for i in inputs if Path(i).is_dir()]) > 1:
                root = out / src.name  # several folders into one -o: keep them apart
            for image in walk(src, recursive, skip=root):
                rel = image.parent.relative_to(src)
                jobs.append(Job(image, output_for(image, root / rel, tag, fmt), named=False))
        elif single_file and out is not None and out.suffix:
            jobs.append(Job(src, out, named=True))
        else:
            jobs.append(Job(src, output_for(src, out if out is not None else src.parent, tag, fmt), named=True))
    clashes = {}
    for job in jobs:
        clashes.setdefault(job.output.resolve(), []).append(job.source)
    for target, sources in clashes.items():
        if len(sources) > 1:
            raise InputError(f"{sources[0]} and {sources[1]} would both be written to {target}; "
                             f"keep the input suffix with --format same, or use -o")
    return jobs


def read(source: Path, check=None) -> Image.Image:
    """The image decoded and turned upright (EXIF orientation); any decoding failure is an ImageError."""
    try:
        return open_image(source, check=check, upright=True)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 — a damaged EXIF block can break the transpose as well
        raise ImageError(f"{source}: not a readable image ({type(e).__name__})") from None


def colour_of(im: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """RGB for the model: with alpha, the raw colour with hidden areas filled; without, to_rgb's conversion."""
    if alpha is None:
        return to_rgb(im)
    return fill_transparent(im.convert("RGBA").convert("RGB"), alpha)


def upscale_file(job: Job, image: Image.Image, target, passes: int, run) -> Image.Image:
    """Upscales `image` (read from job.source) to `target` in `passes` model runs and writes job.output
    atomically, with the alpha, ICC profile and EXIF the output format can hold. Returns what was written."""
    fmt = output_format(job.output)
    result, params = upscale_image(image, target, passes, run, fmt)
    save_image_atomic(result, job.output, **params)
    return result


def upscale_image(image: Image.Image, target, passes: int, run, fmt: str = "PNG") -> tuple[Image.Image, dict]:
    """(the upscale of `image`, already upright, to `target` in `passes` runs of `run` on its colour, with its alpha
    put back as `fmt` can hold it; the `Image.save` keywords that keep its ICC profile and EXIF in `fmt`). The
    command line and the server's page both upscale through here, so a file keeps the same in either."""
    info = carried(image)
    if image.mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
        info.icc_profile = None  # a grey or CMYK profile would mislabel the RGB result
    result = upscale_to(colour_of(image, info.alpha), target, passes, run)
    return with_alpha(result, info.alpha, fmt), save_params(info, fmt)

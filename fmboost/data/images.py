"""Reading and writing images: every user-facing failure becomes an `ImageError` with one clear line."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from fmboost.data import metadata
from fmboost.data.files import write_atomic
from fmboost.errors import InputError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}

# Above this many pixels an untiled upscale would need several GB on a CPU; `--tile` lifts the limit.
DEFAULT_MAX_PIXELS = 1024 * 1024


class ImageError(InputError):
    """An input image that cannot be used; the message is meant for the user as it is."""


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def holdout(paths: list[Path], every: int) -> tuple[list[Path], list[Path]]:
    """(kept, held back): every `every`-th path (the every-th, 2·every-th, ...) is held back for tuning; 0 keeps all.
    The autoencoder trainer and `prepare` split a folder alike, so both leave out the same photos."""
    if not every:
        return list(paths), []
    return ([p for i, p in enumerate(paths) if i % every != every - 1],
            [p for i, p in enumerate(paths) if i % every == every - 1])


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open any image as 8-bit RGB. Grayscale, alpha and 16-bit images are converted, broken ones refused."""
    return to_rgb(open_image(path))


def open_image(path: str | os.PathLike, check=None, upright: bool = False, decode: bool = True) -> Image.Image:
    """Decode an image fully, in its own mode. `check(im)` sees it before the pixels are decoded (its size is
    known then), to refuse it cheaply by raising an ImageError; `upright` applies the EXIF orientation;
    `decode=False` stops after the header. Whatever a damaged file makes the decoders raise becomes one
    `ImageError` line."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged metadata makes Pillow warn; the result says what counts
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if check is not None:
                    check(im)
                if not decode:  # only the header was wanted
                    return im
                im.load()  # decodes fully, so a truncated file fails here rather than later
                return metadata.upright(im) if upright else im
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 — decoders of damaged files raise anything (struct.error, EOFError, ...)
        message = str(e).splitlines()[0] if str(e) else "damaged data"
        raise ImageError(f"{path}: not a readable image ({type(e).__name__}: {message})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit or 32-bit integer grayscale: rescale to 8 bits instead of clipping at 255.
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite on white: transparent pixels have arbitrary colours underneath.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im.convert("RGB")


GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")


def is_grey(im: Image.Image) -> bool:
    """Whether every pixel's colour channels are equal: a grey mode, or RGB(A) whose R, G and B agree."""
    if im.mode in GREY_MODES:
        return True
    if im.mode not in ("RGB", "RGBA", "RGBX"):
        return False  # palette, CMYK, YCbCr...: their RGB is rarely grey, and converting to ask costs a copy
    r, g, b = (np.asarray(c) for c in im.split()[:3])
    return bool(np.array_equal(r, g) and np.array_equal(g, b))


def grey_rgb(im: Image.Image) -> Image.Image:
    """`im`'s luma (ITU-R 601, as PIL's L) in all three channels, exactly equal: grey in, grey out."""
    return im.convert("L").convert("RGB")


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor 3×H×W in [-1, 1], the range the autoencoders expect."""
    import torch  # here, not at the top: pixel-space work (`upscale --method bicubic`) never needs torch

    a = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
    return a.float() / 127.5 - 1.0


def to_pil(x: torch.Tensor) -> Image.Image:
    import torch

    a = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(a.permute(1, 2, 0).cpu().numpy())


def resize(im: Image.Image, size: tuple[int, int], method: str = "bicubic") -> Image.Image:
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                "lanczos": Image.LANCZOS}[method]
    return im.resize(size, resample)


def resize_by(im: Image.Image, scale: int, method: str = "bicubic") -> Image.Image:
    """The pixel-space baselines (bicubic, lanczos): `im` enlarged `scale` times."""
    return resize(im, (im.width * scale, im.height * scale), method)


def save_image_atomic(im: Image.Image, path: str | os.PathLike, **params) -> None:
    """Write through a temporary file and rename, so an interrupted run never leaves half an image. `params` go
    to `Image.save` (icc_profile, exif, quality)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = output_format(path)
    write_atomic(path, lambda tmp: im.save(tmp, format=fmt, **params))


def output_format(path: str | os.PathLike) -> str:
    """Pillow's format name for an output file name (PNG, JPEG, WEBP, ...)."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"{path}: unknown output format {Path(path).suffix!r} (use .png, .jpg, .webp, ...)")
    return fmt

"""What an upscale carries from the input file to the output besides the colour: alpha, ICC profile, EXIF.

The model only sees RGB, so an image is split into colour (with its transparent areas filled from their
neighbours, so that no arbitrary hidden colour bleeds into the edges when upscaling) and alpha, which is resized
with Lanczos and put back. EXIF orientation is applied on load (the pixels are turned upright) and the EXIF
written out says "upright" (orientation 1), as other upscalers do, so viewers do not turn the result twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps
from scipy.ndimage import gaussian_filter

ORIENTATION = 0x0112
# Output formats that hold an alpha channel; the others (JPEG, BMP) get the result flattened on white.
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
# Output formats Pillow writes EXIF into reliably (its TIFF writer mixes EXIF with the image's own tags).
EXIF_FORMATS = {"PNG", "JPEG", "WEBP"}
ICC_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}
# Gaussian width (pixels) over which opaque colours are spread into fully transparent areas.
FILL_SIGMA = 8.0


@dataclass
class Carried:
    """Alpha (mode L, input size) and the ICC profile and EXIF bytes to write with the result."""
    alpha: Image.Image | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None


def upright(im: Image.Image) -> Image.Image:
    """Applies the EXIF orientation to the pixels (and drops it from the image's EXIF)."""
    return ImageOps.exif_transpose(im) if im.getexif().get(ORIENTATION, 1) != 1 else im


def has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)


def carried(im: Image.Image) -> Carried:
    """The alpha, ICC profile and EXIF (orientation reset) of an image already turned upright."""
    exif = im.getexif()
    exif.pop(ORIENTATION, None)
    alpha = im.convert("RGBA").getchannel("A") if has_alpha(im) else None
    return Carried(alpha, im.info.get("icc_profile") or None, exif.tobytes() if len(exif) else None)


def fill_transparent(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    """Colour with fully transparent pixels replaced by the alpha-weighted blur of the visible colours nearby
    (normalised convolution); visible pixels keep their exact colour."""
    a = np.asarray(alpha, dtype=np.float32) / 255.0
    c = np.asarray(rgb, dtype=np.float32)
    if a.min() > 0 or a.max() == 0:
        return rgb  # nothing hidden, or nothing visible to spread
    num = np.stack([gaussian_filter(c[..., k] * a, FILL_SIGMA, mode="nearest") for k in range(3)], -1)
    den = gaussian_filter(a, FILL_SIGMA, mode="nearest")[..., None]
    mean = (c * a[..., None]).sum((0, 1)) / a.sum()  # for pixels farther than the blur reaches
    fill = np.where(den > 1e-4, num / np.maximum(den, 1e-4), mean)
    out = np.where(a[..., None] > 0, c, fill)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def with_alpha(rgb: Image.Image, alpha: Image.Image | None, fmt: str) -> Image.Image:
    """The upscaled colour with the alpha resized to it (Lanczos): RGBA where `fmt` holds alpha, else composited
    on white (what the input looked like on a white page)."""
    if alpha is None:
        return rgb
    a = alpha.resize(rgb.size, Image.LANCZOS)
    if fmt in ALPHA_FORMATS:
        return Image.merge("RGBA", (*rgb.split(), a))
    white = Image.new("RGB", rgb.size, (255, 255, 255))
    return Image.composite(rgb, white, a)


def save_params(info: Carried, fmt: str) -> dict:
    """Keyword arguments for `Image.save` that keep the profile and EXIF where the format can hold them."""
    params = {}
    if info.icc_profile and fmt in ICC_FORMATS:
        params["icc_profile"] = info.icc_profile
    if info.exif and fmt in EXIF_FORMATS:
        params["exif"] = info.exif
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = 95  # Pillow's default 75 visibly softens an upscale
    return params

"""Any scale or output size from a model of one fixed factor: cascade the model, then one high-quality resize.

A ×2 model reaches ×3 by two passes (×4) and a Lanczos downscale to ×3: downscaling a sharper, larger image
keeps more detail than upscaling a smaller one. A factor below the model's (×1.5) takes one pass and resizes.
"""
from __future__ import annotations

import math
import re

from PIL import Image

from fmboost.errors import InputError

# More passes than this means an output 256× the input's area or more: almost surely a typo.
MAX_PASSES = 4


def parse_size(text: str) -> tuple[int | None, int | None]:
    """`1920x1080`, or `1920x` / `x1080` for one side with the other following the aspect ratio."""
    m = re.fullmatch(r"\s*(\d*)\s*[x×]\s*(\d*)\s*", text)
    if not m or not (m[1] or m[2]):
        raise InputError(f"{text!r} is not WIDTHxHEIGHT, WIDTHx or xHEIGHT in pixels (e.g. 1920x1080)")
    if any(v and int(v) == 0 for v in m.groups()):
        raise InputError(f"{text!r}: the width and height must be positive (at least 1 pixel)")
    return (int(m[1]) if m[1] else None, int(m[2]) if m[2] else None)


def target_size(w: int, h: int, scale: float | None = None,
                size: tuple[int | None, int | None] | None = None) -> tuple[int, int]:
    """The output size for an input of w×h: `size` if given (a missing side keeps the aspect), else ×`scale`."""
    if size is not None:
        tw, th = size
        if tw is None:
            tw = round(w * th / h)
        if th is None:
            th = round(h * tw / w)
        return max(1, tw), max(1, th)
    return max(1, round(w * scale)), max(1, round(h * scale))


def model_passes(w: int, h: int, target: tuple[int, int], model_scale: int) -> int:
    """How many times the model must run so that the image covers the target (at least once)."""
    ratio = max(target[0] / w, target[1] / h)
    n = max(1, math.ceil(math.log(ratio, model_scale) - 1e-9)) if ratio > 1 else 1
    if n > MAX_PASSES:
        raise InputError(f"{w}×{h} → {target[0]}×{target[1]} needs {n} passes of the ×{model_scale} model "
                         f"(at most {MAX_PASSES})")
    return n


def upscale_to(image: Image.Image, target: tuple[int, int], passes: int, run) -> Image.Image:
    """`run` (the model's ×s upscale) `passes` times, then a Lanczos resize to exactly `target`. `run` may be a list
    of functions, one per pass, the last repeating (a cascade of models: pipelines/cascade.py)."""
    runs = list(run) if isinstance(run, (list, tuple)) else [run]
    for i in range(passes):
        image = runs[min(i, len(runs) - 1)](image)
    return image if image.size == target else image.resize(target, Image.LANCZOS)


def size_tag(scale: float | None, size: tuple[int | None, int | None] | None, model_scale: int) -> str:
    """The part of output names that says how they were made: x2, x3, x1.5, 1920x1080, 1920w, 1080h."""
    if size is not None:
        w, h = size
        return f"{w}x{h}" if w and h else (f"{w}w" if w else f"{h}h")
    scale = model_scale if scale is None else scale
    return f"x{scale:g}"

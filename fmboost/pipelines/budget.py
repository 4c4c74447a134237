"""What an upscale will process and cost, known from the image's size before any model work (no torch here).

The model never sees the input's own size: each pass pads it (bottom/right) to a multiple of the pipeline's
`pad_multiple`, so that it maps to whole latents that suit the U-Net, and `--scale 4` runs the ×2 model twice, the
second time on the first pass's output. A 1 × 1,048,576 strip is 1 MP as a file and 8 MP (or more) to the model.
So the limits are checked here, on what will actually be processed: each pass's padded size against the pixel
limit (untiled work holds the whole image at once), and the cost, processed pixels × network evaluations (NFE),
against a budget. Tiled work pads each tile and counts the overlaps twice; its cost is summed over the tiles.

`plan` returns the `Work` or raises `OverBudget`, whose message names what was measured and the limit; the caller
(the command line, the server) adds its own way out, as the lower layers name no flags.
"""
from __future__ import annotations

from dataclasses import dataclass

from fmboost.errors import InputError
from fmboost.pipelines.tiling import default_overlap, side_tiles


class OverBudget(InputError):
    """An image or request over a limit; `kind` is "pixels", "cost" or "unbounded" (the solver decides its NFE)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Work:
    sizes: tuple[tuple[int, int], ...]  # the padded size the model processes on each pass (the whole image)
    pixels: int  # pixels processed over all passes: padding included, and with tiles their overlaps
    nfe: int | None  # network evaluations per processed pixel (per pass); None: the solver decides

    @property
    def largest(self) -> tuple[int, int]:
        return max(self.sizes, key=lambda s: s[0] * s[1])

    @property
    def cost(self) -> int | None:
        return None if self.nfe is None else self.pixels * self.nfe


def padded(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def pass_inputs(w: int, h: int, passes: int, scale: int) -> list[tuple[int, int]]:
    """The size of the image each pass of the model is given (before padding)."""
    return [(w * scale ** i, h * scale ** i) for i in range(passes)]


def tiled_pixels(w: int, h: int, tile: int, multiple: int) -> int:
    """Pixels the tiles of a w×h image make up once each is padded (pipelines/tiling.py's grid)."""
    overlap = default_overlap(tile)

    def side(length: int) -> int:
        fitted, starts = side_tiles(length, tile, overlap, multiple)
        return sum(padded(min(fitted, length - s), multiple) for s in starts)
    return side(w) * side(h)


def plan(w: int, h: int, multiple: int = 1, passes: int = 1, scale: int = 2, nfe: int | None = 0,
         tile: int | None = None, max_pixels: int | None = None, max_cost: int | None = None) -> Work:
    """The work of upscaling a w×h image in `passes` passes of a ×`scale` model that pads to `multiple`, `nfe`
    network evaluations a pass, in tiles of `tile` input pixels (None: untiled). Untiled, every pass's padded size
    must be within `max_pixels`; the cost (pixels × NFE) within `max_cost`. None: no limit."""
    sizes = tuple((padded(pw, multiple), padded(ph, multiple)) for pw, ph in pass_inputs(w, h, passes, scale))
    if tile is None:
        pixels = sum(pw * ph for pw, ph in sizes)
    else:
        pixels = sum(tiled_pixels(pw, ph, tile, multiple) for pw, ph in pass_inputs(w, h, passes, scale))
    work = Work(sizes, pixels, nfe)
    if tile is None and max_pixels is not None:
        for i, (pw, ph) in enumerate(sizes):
            if pw * ph > max_pixels:
                where = f" on pass {i + 1} of {passes}" if passes > 1 else ""
                raise OverBudget(f"{w}×{h} is processed as {pw}×{ph} = {pw * ph:,} pixels{where} (padded to a "
                                 f"multiple of {multiple}), over the limit of {max_pixels:,}", "pixels")
    if max_cost is not None:
        if nfe is None:
            raise OverBudget("this solver picks its own number of network evaluations, so the cost cannot be "
                             "bounded before it runs", "unbounded")
        if work.cost > max_cost:
            raise OverBudget(f"this upscale costs {work.pixels:,} processed pixels × {nfe} network evaluations = "
                             f"{work.cost:,}, over the limit of {max_cost:,}", "cost")
    return work

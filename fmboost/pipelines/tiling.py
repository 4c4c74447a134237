"""Seamless tiling: the whole upscale (encode, PSU, flow, decode) runs per overlapping tile, and the tiles are
blended once, in output pixels, with raised-cosine (sin²/cos²) weights across each overlap.

Why whole-pipeline tiles blended in pixel space rather than tiling each stage and blending latents:
- bounded memory: every stage — the PSU decode–resize–encode at the output size, the U-Net with its attention,
  the decode — sees one tile at a time, so the peak is set by the tile size, not by the image;
- seamless: a tile's result differs from the untiled one only near its borders (convolution padding) and slightly
  in tone (GroupNorm statistics per tile). The blend gives border pixels almost no weight and turns any tone
  difference into a ramp as wide as the overlap, so no row or column jumps.
Stage-wise latent blending (diffusers' VAE tiling) would still run the U-Net on the whole high-res latent.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

if TYPE_CHECKING:  # torch is imported where tensors are made: pipelines/budget.py plans tiles without it
    import torch

# Tile sides, in input pixels, that auto_tile_size picks between: smaller tiles waste work on overlaps, larger
# ones gain nothing in speed and cost memory.
MIN_TILE, MAX_TILE = 128, 1024
# On the CPU larger tiles are slower per pixel (their activations outgrow the caches) even where memory allows them:
# of the sides timed on a 1200×900 photo, 384 was the fastest (results/bench/tile_size_cpu.json,
# benchmarks/tile_size.py). GPUs keep the memory-bound choice.
CPU_TILE = 384
# Fraction of the free memory a tile may use (the model, the output canvas and other programs need the rest).
MEMORY_SHARE = 0.5
# Live float tensors per pixel of the widest level of the autoencoder: a ResNet block holds its input, two
# normalised/activated copies, a conv output and the skip sum; 8 leaves room for the PSU resize and the allocator.
LIVE_TENSORS = 8


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread starts of tiles of `tile` pixels covering [0, length), neighbours sharing ≥ `overlap`."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def fit_tile(length: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The smallest side (a multiple of `multiple`, at most `tile`) that covers [0, length) with as many tiles as
    `tile` would and overlaps of at least `overlap`: a 1200-pixel row in tiles of 384 takes four either way, but
    tiles of 336 do it with the overlaps asked for instead of 112-pixel ones: 12 % less work."""
    if length <= tile:
        return length
    n = len(tile_starts(length, tile, overlap))
    side = -(-(length + (n - 1) * overlap) // n)
    return min(tile, -(-side // multiple) * multiple)


def side_tiles(length: int, tile: int, overlap: int, multiple: int = 1) -> tuple[int, list[int]]:
    """(the fitted side, the starts) of the tiles along one side: the grid `tiled_upscale` runs and the pixel budget
    (pipelines/budget.py) counts, from one place so that the two cannot drift apart."""
    fitted = fit_tile(length, tile, overlap, multiple)
    return fitted, tile_starts(length, fitted, overlap)


def feather(length: int, before: int, after: int) -> torch.Tensor:
    """Weights along one side of a tile: sin² up over the overlap with the previous tile, cos² down over the
    overlap with the next, 1 between. Two neighbours' ramps over the same overlap sum to exactly 1."""
    import torch

    w = torch.ones(length)
    for ramp, where in ((before, slice(0, before)), (after, slice(length - after, length))):
        if ramp > 0:
            u = (torch.arange(ramp) + 0.5) / ramp
            up = torch.sin(u * math.pi / 2) ** 2
            w[where] = up if where.start == 0 else up.flip(0)
    return w


def overlaps(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """(before, after) overlap of each tile with its neighbours, in input pixels."""
    ends = [min(s + tile, length) for s in starts]
    return [(ends[i - 1] - s if i > 0 else 0, ends[i] - starts[i + 1] if i + 1 < len(starts) else 0)
            for i, s in enumerate(starts)]


def default_overlap(tile: int, multiple: int = 1) -> int:
    """An eighth of the tile (at least two latent-aligned steps): wide enough that border effects of the
    convolutions fall into the low-weight part of the ramp, small enough to cost ~30 % extra work."""
    return max(2 * multiple, tile // 8 // multiple * multiple)


def count_tiles(h: int, w: int, tile: int, overlap: int | None = None) -> int:
    """How many tiles `tiled_upscale` cuts an h×w input into (fitting them changes their size, not their count)."""
    overlap = default_overlap(tile) if overlap is None else overlap
    return len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap))


def tiled_upscale(upscale, x: torch.Tensor, scale: int, tile: int, overlap: int | None = None,
                  disable: bool | None = True, multiple: int = 1) -> torch.Tensor:
    """Runs `upscale` (B×3×h×w → B×3×(h·scale)×(w·scale)) per tile of x and blends the results. B is 1 for an image
    and the window's frames for a clip (each tile of every frame at once, so temporal layers see the tile's clip).
    Along each side the tiles shrink to just cover it (`fit_tile`, sides a multiple of `multiple`: the size the
    model pads to)."""
    import torch

    b, c, h, w = x.shape
    overlap = default_overlap(tile) if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be between 0 and the tile size {tile}, got {overlap}")
    (th, ys), (tw, xs) = side_tiles(h, tile, overlap, multiple), side_tiles(w, tile, overlap, multiple)
    out = torch.zeros(b, c, h * scale, w * scale)
    weight = torch.zeros(1, h * scale, w * scale)
    grid = [(y, oy, x0, ox) for y, oy in zip(ys, overlaps(ys, th, h)) for x0, ox in zip(xs, overlaps(xs, tw, w))]
    for y, oy, x0, ox in tqdm(grid, desc="tiles", unit="tile", disable=True if len(grid) < 2 else disable,
                                   leave=False):
        part = upscale(x[:, :, y: y + th, x0: x0 + tw]).float().cpu()
        ph, pw = part.shape[-2:]
        wt = feather(ph, oy[0] * scale, oy[1] * scale)[:, None] * feather(pw, ox[0] * scale, ox[1] * scale)[None]
        ys_, xs_ = slice(y * scale, y * scale + ph), slice(x0 * scale, x0 * scale + pw)
        out[:, :, ys_, xs_] += part * wt
        weight[:, ys_, xs_] += wt
    return out / weight.clamp_min(1e-8)


def available_memory(device: torch.device) -> int:
    """Bytes free for one tile's work: the GPU's free memory, else the system's available memory."""
    if device.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30  # unknown: assume a small machine


def bytes_per_output_pixel(block_out_channels, dtype_bytes: int = 4) -> float:
    """Peak activation memory per output pixel, from the autoencoder's widest level: level l has c_l channels at
    1/4^l of the pixels, and upsampling blocks briefly hold two levels' worth (hence 2·c_l)."""
    widest = max(2 * c / 4 ** level for level, c in enumerate(block_out_channels))
    return dtype_bytes * LIVE_TENSORS * widest


def auto_tile_size(block_out_channels, scale: int, multiple: int, free_bytes: int, dtype_bytes: int = 4,
                   largest: int = MAX_TILE) -> int:
    """The largest input tile side whose upscale fits in MEMORY_SHARE of `free_bytes`, in [MIN_TILE, largest]."""
    pixels = MEMORY_SHARE * free_bytes / bytes_per_output_pixel(block_out_channels, dtype_bytes)
    side = int(math.sqrt(pixels) / scale) // multiple * multiple
    low = math.ceil(MIN_TILE / multiple) * multiple
    return max(low, min(side, largest // multiple * multiple))


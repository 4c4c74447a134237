"""Seconds for a tiled ×2 of a large photo at each tile side, on the device it runs on: the speed side of the tile
size (memory sets the other). pipelines/tiling.py's CPU_TILE was chosen from this file.

    python benchmarks/tile_size.py [--image examples/astronaut.png] [--size 1200x900] [--tiles 256,384,512,1024]

Timing does not depend on content, so the photo is `--image` resized to `--size`. One warm-up call at 128², then
each tile side once (a tiled photo is many calls already). Writes results/bench/tile_size_<device>.json: seconds
per tile side, and each against the fastest.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fmboost import DEFAULT_MODEL
from fmboost.data.images import load_image, resize
from fmboost.pipelines.tiling import count_tiles
from fmboost.pipelines.upscale import FMBoostPipeline

sys.path.insert(0, str(Path(__file__).parent))
from timing import device_label, save_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--image", default="examples/astronaut.png")
    p.add_argument("--size", default="1200x900")
    p.add_argument("--tiles", default="256,384,512,1024")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    pipe = FMBoostPipeline.from_pretrained(args.model, device=args.device)
    photo = resize(load_image(args.image), (w, h))
    pipe.upscale(resize(photo, (128, 128)))  # warm-up
    times = {}
    for tile in (int(t) for t in args.tiles.split(",")):
        t0 = time.perf_counter()
        pipe.upscale(photo, tile=True, tile_size=tile)
        times[tile] = time.perf_counter() - t0
        print(f"tile {tile}: {count_tiles(h, w, tile)} tiles, {times[tile]:.1f} s", flush=True)
    fastest = min(times.values())
    print(f"{args.size} ×2, {device_label(args.device)}")
    save_results(ROOT / "results" / "bench" / f"tile_size_{args.device}.json", args.device,
                 settings={"size": [w, h], "image": args.image, "model": args.model, "warmup": "one 128² call"},
                 results={str(t): {"seconds": s, "tiles": count_tiles(h, w, t), "vs_fastest": s / fastest}
                          for t, s in times.items()})


if __name__ == "__main__":
    main()

"""The crop grid the README opens with: bicubic ×2 | the embedded default ×2 | SRMD ×2 | the original photo.

    python recipes/default/readme_grid.py [--data ../shared/data] [--model default] [--peers-python PY]
    python experiments/report.py            # the README's caption, from the raw file this writes

Photos, fixed before looking at any output: the README's own sample (`examples/astronaut.png`) and the first photo
of Set14 in sorted order (`baboon.png`). Neither is in the training photos nor among the held-back ones the
settings were tuned on. Each is downscaled ×2 with PIL's bicubic, upscaled back by both methods, and the centre
`--crop` px of each result is shown enlarged `--zoom`× (nearest neighbour, so pixels stay pixels). Writes
docs/readme_grid.png and results/default_model/readme_grid.json (PSNR/SSIM/sharpness of the whole photo and of the
crop, per method, with meta). SRMD (CVPR 2018, the upscaler a user would otherwise pick) comes from
../shared/tools/peers when its python is installed (`--peers-python`); without it the grid has no SRMD column and
the raw file says so.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from fmboost import DEFAULT_MODEL
from fmboost.data.images import load_image, resize
from fmboost.evaluation import metrics as M
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.pipelines.upscale import FMBoostPipeline

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from peer_tools import DEFAULT_PY as PEERS_PY, PEER_SCRIPT, installed  # noqa: E402


def srmd(images: list[Image.Image], py: Path) -> list[Image.Image] | None:
    """SRMD ×2 of each image (the peers' script on a temporary folder), or None when it is not installed."""
    if not installed(py):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        for i, im in enumerate(images):
            im.save(src / f"{i}.png")
        subprocess.run([str(py), str(PEER_SCRIPT), "srmd", str(src), str(dst), "--suffix", "", "--threads", "2"],
                       capture_output=True, text=True, check=True)
        return [load_image(dst / f"{i}.png") for i in range(len(images))]


def centre(im: Image.Image, size: int) -> Image.Image:
    left, top = (im.width - size) // 2, (im.height - size) // 2
    return im.crop((left, top, left + size, top + size))


def scores(out: Image.Image, ref: Image.Image) -> dict:
    return {"psnr": M.psnr(out, ref, "rgb", 2), "ssim": M.ssim(out, ref, "rgb", 2),
            "sharpness": M.sharpness(out, ref, 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--zoom", type=int, default=3)
    p.add_argument("--png", default=str(ROOT / "docs" / "readme_grid.png"))
    p.add_argument("--raw", default=str(ROOT / "results" / "default_model" / "readme_grid.json"))
    p.add_argument("--peers-python", type=Path, default=PEERS_PY)
    args = p.parse_args()
    pipe = FMBoostPipeline.from_pretrained(args.model)
    steps = pipe.config.steps  # the model's own setting: what `fmboost upscale` does
    photos = [ROOT / "examples" / "astronaut.png", Path(args.data) / "val" / "set14" / "baboon.png"]
    hrs = [load_image(path) for path in photos]
    hrs = [hr.crop((0, 0, hr.width // 2 * 2, hr.height // 2 * 2)) for hr in hrs]
    lrs = [resize(hr, (hr.width // 2, hr.height // 2)) for hr in hrs]
    by_srmd = srmd(lrs, args.peers_python)
    # ASCII labels: PIL's default font has no ×
    columns = ["bicubic x2", f"fmboost x2 (NFE {steps})"] + (["SRMD x2"] if by_srmd else []) + ["original"]
    cell, label_h = args.crop * args.zoom, 28
    grid = Image.new("RGB", (len(columns) * cell, len(photos) * cell + label_h), "white")
    draw = ImageDraw.Draw(grid)
    for i, name in enumerate(columns):
        draw.text((i * cell + 8, 8), name, fill="black")
    rows = {}
    for r, (path, hr, lr) in enumerate(zip(photos, hrs, lrs)):
        outs = {"bicubic": resize(lr, hr.size), "fmboost": pipe(lr)}
        if by_srmd:
            outs["srmd"] = by_srmd[r]
        outs["original"] = hr
        rows[path.name] = {}
        for c, (method, out) in enumerate(outs.items()):
            crop = centre(out, args.crop)
            grid.paste(crop.resize((cell, cell), Image.NEAREST), (c * cell, label_h + r * cell))
            if method != "original":
                rows[path.name][method] = {"photo": scores(out, hr), "crop": scores(crop, centre(hr, args.crop))}
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.png).with_suffix(".tmp.png")
    grid.save(tmp)
    tmp.replace(args.png)
    write_json(Path(args.raw), {"meta": run_meta(tuned_on="held-back training photos (recipes/default/tune.py)"),
                                "settings": {"model": args.model, "crop": args.crop, "zoom": args.zoom,
                                             "steps": steps, "srmd": by_srmd is not None,
                                             "photos": [str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else
                                                            p.name) for p in photos]},
                                "scores": rows})
    for name, methods in rows.items():
        print(name, {m: round(v["photo"]["psnr"], 2) for m, v in methods.items()})


if __name__ == "__main__":
    main()

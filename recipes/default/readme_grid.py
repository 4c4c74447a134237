"""The crop grid the README opens with: bicubic ×2 | the embedded default ×2 | the original photo.

    python recipes/default/readme_grid.py [--data ../shared/data] [--model default]
    python experiments/report.py            # the README's caption, from the raw file this writes

Photos, fixed before looking at any output: the README's own sample (`examples/astronaut.png`) and the first photo
of Set14 in sorted order (`baboon.png`). Neither is in the training photos nor among the held-back ones the
settings were tuned on. Each is downscaled ×2 with PIL's bicubic, upscaled back by both methods, and the centre
`--crop` px of each result is shown enlarged `--zoom`× (nearest neighbour, so pixels stay pixels). Writes
docs/readme_grid.png and results/default_model/readme_grid.json (PSNR/SSIM/sharpness of the whole photo and of the
crop, per method, with meta).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from fmboost import DEFAULT_MODEL
from fmboost.data.images import load_image, resize
from fmboost.evaluation import metrics as M
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.pipelines.upscale import FMBoostPipeline

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ("bicubic x2", "fmboost x2 (NFE 4)", "original")  # ASCII: PIL's default font has no ×


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
    args = p.parse_args()
    pipe = FMBoostPipeline.from_pretrained(args.model)
    photos = [ROOT / "examples" / "astronaut.png", Path(args.data) / "val" / "set14" / "baboon.png"]
    cell, label_h = args.crop * args.zoom, 28
    grid = Image.new("RGB", (3 * cell, len(photos) * cell + label_h), "white")
    draw = ImageDraw.Draw(grid)
    for i, name in enumerate(COLUMNS):
        draw.text((i * cell + 8, 8), name, fill="black")
    rows = {}
    for r, path in enumerate(photos):
        hr = load_image(path)
        hr = hr.crop((0, 0, hr.width // 2 * 2, hr.height // 2 * 2))
        lr = resize(hr, (hr.width // 2, hr.height // 2))
        outs = {"bicubic": resize(lr, hr.size), "fmboost": pipe(lr, steps=4), "original": hr}
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
                                "settings": {"model": args.model, "crop": args.crop, "zoom": args.zoom, "steps": 4,
                                             "photos": [str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else
                                                            p.name) for p in photos]},
                                "scores": rows})
    for name, methods in rows.items():
        print(name, {m: round(v["photo"]["psnr"], 2) for m, v in methods.items()})


if __name__ == "__main__":
    main()

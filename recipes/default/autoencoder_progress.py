"""Where the default's autoencoder stands: its held-back PSNR per validation step (from the run's log.csv) against
bicubic ×2 of the same held-back crops, and, for a saved autoencoder, its reconstruction of BSD68 and Set14 with the
mean per-channel colour shift. Writes results/autoencoder/progress.json for docs/default_model.md.

    python recipes/default/autoencoder_progress.py [--run runs/default/autoencoder] [--data ../shared/data]

Held-back crops: every `holdout_every`-th photo of each training folder (the trainer's split), its centre
`val_crop` px, as `fmboost train-autoencoder` measures them. Tuned on: those held-back training photos only.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fmboost.autoencoders.vae import Autoencoder
from fmboost.data.images import list_images, load_image, resize, to_pil, to_tensor
from fmboost.data.photos import center_crops, load_photos, split_photos
from fmboost.evaluation import metrics as M
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.pipelines.upscale import pad_to_multiple


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """8-bit rounded, in [-1, 1]: the trainer's own validation measure."""
    a = torch.round((a.clamp(-1, 1) + 1) * 127.5)
    return float(10 * torch.log10(255.0 ** 2 / ((a - torch.round((b + 1) * 127.5)) ** 2).mean().clamp_min(1e-12)))


def bicubic_x2(x: torch.Tensor) -> torch.Tensor:
    """Bicubic ↓2 (antialiased) then ↑2: the baseline every latent method has to beat."""
    small = F.interpolate(x[None], scale_factor=0.5, mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(small, scale_factor=2, mode="bicubic", align_corners=False)[0]


@torch.no_grad()
def reconstruction(autoencoder: Autoencoder, folder: Path) -> dict:
    """D(E(x)) of every photo against the photo and against bicubic ×2 (RGB PSNR/SSIM, 2 px shaved, as eval)."""
    rows = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": [], "shift": []}
    for path in list_images(folder):
        hr = load_image(path)
        hr = hr.crop((0, 0, hr.width - hr.width % 2, hr.height - hr.height % 2))
        x = pad_to_multiple(to_tensor(hr)[None], autoencoder.downsample_factor)
        rec = autoencoder.decode(autoencoder.encode(x))[0, :, : hr.height, : hr.width]
        rec_im = to_pil(rec)
        bic = resize(resize(hr, (hr.width // 2, hr.height // 2)), hr.size)
        rows["psnr"].append(M.psnr(rec_im, hr, "rgb", 2))
        rows["ssim"].append(M.ssim(rec_im, hr, "rgb", 2))
        rows["bicubic_psnr"].append(M.psnr(bic, hr, "rgb", 2))
        rows["bicubic_ssim"].append(M.ssim(bic, hr, "rgb", 2))
        rows["shift"].append(M.channel_shift(rec_im, hr).tolist())
    shift = np.mean(rows["shift"], axis=0)
    return {"images": len(rows["psnr"]), **{k: float(np.mean(v)) for k, v in rows.items() if k != "shift"},
            "mean_channel_shift_levels": shift.tolist(), "max_abs_channel_shift_levels": float(np.abs(shift).max()),
            "per_image": {k: v for k, v in rows.items()}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/default/autoencoder", help="the train-autoencoder output folder")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", default="results/autoencoder/progress.json")
    args = p.parse_args()
    run = Path(args.run)
    meta = run_meta("cpu", tuned_on="held-back training photos (every 10th of train/ and train_hr/)")
    cfg = json.loads((run / "config.json").read_text())
    _, held = split_photos(cfg["data"], cfg["holdout_every"])
    crops = center_crops(load_photos(held), cfg["val_crop"])
    bicubic = float(np.mean([psnr(bicubic_x2(c), c) for c in crops]))
    log = [line.split(",") for line in (run / "log.csv").read_text().splitlines()]
    curve = [{"step": int(r[0]), "psnr": float(r[3])} for r in log if len(r) > 3 and r[3]]
    result = {"meta": meta, "config": cfg, "held_back_crops": len(crops), "held_back_bicubic_psnr": bicubic,
              "validation": curve}
    folder = run / "autoencoder"
    if folder.is_dir():
        ae = Autoencoder.from_pretrained(folder)
        result["trained_steps"] = json.loads((folder / "training.json").read_text())["trained_steps"]
        result["reconstruction"] = {name: reconstruction(ae, Path(args.data) / "val" / name)
                                    for name in ("bsd68", "set14")}
    write_json(args.out, result)
    print(f"wrote {args.out}: {len(curve)} validation points, held-back bicubic ×2 {bicubic:.2f} dB")


if __name__ == "__main__":
    main()

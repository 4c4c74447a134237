"""Does an autoencoder carry all three colour axes? The measurement that found the default's G blindness.

    python experiments/autoencoder_color.py NAME=AUTOENCODER_DIR [NAME=DIR ...] [--data ../shared/data] \
        [--out results/autoencoder_sweep/color.json]

For each autoencoder, on the held-back training photos (every 10th of train/ and train_hr/, 256 px centre crops):
- `response`: the mean change of each output channel when one input channel is raised by 30 levels (a 3×3 matrix,
  rows = the raised input channel). A faithful autoencoder has ≈ 30 on the diagonal and ≈ 0 off it; one that
  predicts G from R and B has a small G diagonal and R/B rows that leak into G.
- `psnr` and the mean per-channel shift (levels) of D(E(x)).
Set14 is then reconstructed whole for reporting (per-photo PSNR and mean channel shift), never for choosing.
One thread, fp32.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fmboost.autoencoders.vae import Autoencoder
from fmboost.data.images import list_images, load_image, to_tensor
from fmboost.data.photos import center_crops, load_photos, split_photos
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.pipelines.upscale import pad_to_multiple

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def reconstruct(ae: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return ae.decode(ae.encode(pad_to_multiple(x, ae.downsample_factor)))[..., :h, :w].clamp(-1, 1)


def levels(t: torch.Tensor) -> list[float]:
    """Per-channel mean of a [-1, 1] difference, in 8-bit levels."""
    return [round(float(v) * 127.5, 2) for v in t.mean((0, 2, 3))]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4.0 / ((a - b) ** 2).mean().clamp_min(1e-12)))


def measure(ae: Autoencoder, crops: list[torch.Tensor], set14: Path | None) -> dict:
    response, psnrs, shifts = np.zeros((3, 3)), [], []
    for c in crops:
        x = c[None]
        base = reconstruct(ae, x)
        psnrs.append(psnr(base, x))
        shifts.append(levels(base - x))
        for ch in range(3):
            raised = x.clone()
            raised[:, ch] += 30 / 127.5  # not clamped: the response of the network, not of the clipping
            response[ch] += np.asarray(levels(reconstruct(ae, raised) - base)) / len(crops)
    out = {"held_back": {"psnr": float(np.mean(psnrs)), "mean_channel_shift_levels": np.mean(shifts, 0).tolist(),
                         "response_to_plus_30_levels": response.round(2).tolist()}}
    if set14 and set14.is_dir():
        rows = {}
        for path in list_images(set14):
            x = to_tensor(load_image(path))[None]
            r = reconstruct(ae, x)
            rows[Path(path).stem] = {"psnr": round(psnr(r, x), 3), "shift": levels(r - x)}
        out["set14_reporting_only"] = rows
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("autoencoders", nargs="+", help="NAME=DIR")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", default=str(ROOT / "results" / "autoencoder_sweep" / "color.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    _, held = split_photos([f"{args.data}/train", f"{args.data}/train_hr"], 10)
    crops = center_crops(load_photos(held), 256)
    results = {}
    for item in args.autoencoders:
        name, _, folder = item.partition("=")
        results[name] = {"folder": folder, **measure(Autoencoder.from_pretrained(folder), crops,
                                                     Path(args.data) / "val" / "set14")}
        h = results[name]["held_back"]
        print(f"{name}: held-back {h['psnr']:.2f} dB, G response {h['response_to_plus_30_levels'][1][1]:.1f}/30")
    write_json(Path(args.out), {"meta": run_meta(tuned_on="held-back training photos; Set14 for reporting only"),
                                "held_back_crops": len(crops), "autoencoders": results})


if __name__ == "__main__":
    main()

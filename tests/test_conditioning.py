"""Pixel conditioning (x0 = E(bicubic×s(x_lr)) from the real low-res pixels) and colour fixes through the pipeline
and the command line."""
import colorsys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import random_photo, tiny_unet
from fmboost import DEFAULT_MODEL
from fmboost.autoencoders.vae import Autoencoder
from fmboost.cli.main import main
from fmboost.data.images import to_tensor
from fmboost.pipelines.upscale import FMBoostPipeline
from fmboost.training.prepare import load_shards, prepare, reupsample


def test_pixel_shards_condition_on_the_upsampled_low_res_pixels(tmp_path, tiny_vae_dir):
    photos = tmp_path / "photos"
    photos.mkdir()
    random_photo(64, 64, seed=3).save(photos / "a.png")
    prepare([photos], tmp_path / "pixel", str(tiny_vae_dir), size=32, scale=2, upsampling="pixel",
            crops_per_image=2)
    prepare([photos], tmp_path / "psu", str(tiny_vae_dir), size=32, scale=2, upsampling="psu", crops_per_image=2)
    pixel, manifest = load_shards(tmp_path / "pixel")
    psu, _ = load_shards(tmp_path / "psu")
    assert manifest["upsampling"] == "pixel"
    assert torch.equal(pixel["x1"], psu["x1"]) and torch.equal(pixel["z_lr"], psu["z_lr"])  # same crops
    assert not torch.allclose(pixel["x_cond"], psu["x_cond"])  # without the D(E(·)) round trip


def test_reupsample_to_pixel_asks_for_the_photos(shards_dir, tmp_path):
    with pytest.raises(ValueError, match="prepare the photos again"):
        reupsample(shards_dir, tmp_path / "out", "pixel")


def test_pixel_pipeline_starts_from_the_encoded_bicubic_resize(tiny_vae_dir):
    ae = Autoencoder.from_pretrained(tiny_vae_dir)
    pipe = FMBoostPipeline(ae, tiny_unet(), upsampling="pixel")
    image = random_photo(16, 16, seed=1)
    x = to_tensor(image)[None]
    expected = ae.decode(ae.encode(F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
                                   .clamp(-1, 1)))
    got = to_tensor(pipe(image, method="x0"))
    assert (got - expected[0]).abs().max() < 2 / 255  # 8-bit rounding only


def hue_and_saturation(image: Image.Image, box) -> tuple[float, float]:
    r, g, b = np.asarray(image.crop(box), dtype=np.float64).reshape(-1, 3).mean(0) / 255
    h, s, _ = colorsys.rgb_to_hsv(r, g, b)
    return h * 360, s


def colour_patches(size=64) -> Image.Image:
    """Purple on the left, magenta on the right, a faint texture on both."""
    rng = np.random.default_rng(0)
    a = np.zeros((size, size, 3))
    a[:, : size // 2] = (128, 40, 200)
    a[:, size // 2:] = (210, 40, 170)
    return Image.fromarray((a + rng.normal(0, 4, a.shape)).clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("color_fix", ["none", "wavelet", "adain"])
def test_embedded_default_keeps_purple_and_magenta_with_or_without_a_colour_fix(color_fix):
    """The hue of a flat patch is the autoencoder's to keep: x0, decoded before any flow step, already has it, so a
    bound on the output's hue alone holds for random flow weights too. So the autoencoder is held to the input's
    hue (5°), and the flow to x0's (0.5°): it adds detail, not colour. Without a colour fix the second bound is the
    flow's doing, and random CFM weights break it (they move the hue by a degree or more on some patch); with one,
    the fix's."""
    pipe = FMBoostPipeline.from_pretrained(DEFAULT_MODEL)
    image = colour_patches()
    start, out = (pipe(image, method=m, steps=1, color_fix=color_fix) for m in ("x0", "cfm"))
    distance = lambda a, b: min(abs(a - b), 360 - abs(a - b))
    for box in [(8, 8, 24, 56), (40, 8, 56, 56)]:  # inside each patch, away from the boundary
        hue_in, _ = hue_and_saturation(image, box)
        hue_x0, _ = hue_and_saturation(start, tuple(2 * v for v in box))
        hue_out, _ = hue_and_saturation(out, tuple(2 * v for v in box))
        assert distance(hue_in, hue_x0) < 5 and distance(hue_x0, hue_out) < 0.5, (hue_in, hue_x0, hue_out)


def test_upscale_takes_a_colour_fix_and_refuses_an_unknown_one(tmp_path, capsys):
    src = tmp_path / "patches.png"
    colour_patches(32).save(src)
    assert main(["upscale", str(src), "--steps", "1", "--color-fix", "wavelet"]) == 0
    assert Image.open(tmp_path / "patches_x2.png").size == (64, 64)
    with pytest.raises(SystemExit):
        main(["upscale", str(src), "--color-fix", "histogram", "--overwrite"])
    assert "invalid choice" in capsys.readouterr().err


def test_prepare_and_the_autoencoder_trainer_hold_back_the_same_photos(tmp_path, tiny_vae_dir):
    from fmboost.data.photos import split_photos

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        random_photo(40, 40, seed=i).save(photos / f"p{i}.png")
    _, held = split_photos([str(photos)], 3)
    assert [p.name for p in held] == ["p2.png", "p5.png"]
    m = prepare([photos], tmp_path / "shards", str(tiny_vae_dir), size=32, crops_per_image=1, holdout_every=3)
    assert m["count"] == 4 and m["holdout_every"] == 3

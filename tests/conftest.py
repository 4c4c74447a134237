"""Tiny models and images built by the tests themselves: no download, a few seconds on a CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="session")
def tiny_vae_dir(tmp_path_factory):
    from diffusers import AutoencoderKL

    from fmboost.autoencoders.vae import small_autoencoder_config

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vae")
    AutoencoderKL(**small_autoencoder_config((8, 16), 4)).save_pretrained(path)
    return path


def tiny_unet(**kw):
    from fmboost.models.presets import build_model

    return build_model("tiny", channels=8, norm_groups=4, head_channels=8, **kw)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_vae_dir):
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.pipelines.upscale import FMBoostPipeline

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    FMBoostPipeline(Autoencoder.from_pretrained(tiny_vae_dir), tiny_unet()).save_pretrained(path)
    return path


def random_photo(h=40, w=52, seed=0) -> Image.Image:
    """Smooth random colours plus a little noise: closer to a photo than white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in rng.uniform(0, 3, 3)], -1)
    a = (base * 100 + 128 + rng.normal(0, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
    return Image.fromarray(a)


@pytest.fixture
def photos_dir(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        random_photo(72, 88, seed=i).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="session")
def shards_dir(tmp_path_factory, tiny_vae_dir):
    from fmboost.training.prepare import prepare

    photos = tmp_path_factory.mktemp("shard_photos")
    for i in range(3):
        random_photo(72, 88, seed=10 + i).save(photos / f"p{i}.png")
    out = tmp_path_factory.mktemp("shards")
    prepare(photos, out, tiny_vae_dir, size=32, scale=2, crops_per_image=4)
    return out


TINY_MODEL = dict(channels=8, norm_groups=4, head_channels=8)


def newest(out):
    """A training run's newest checkpoint folder, OUT/checkpoints/step_NNNNNNN."""
    return max((out / "checkpoints").glob("step_*"))


# ---------------------------------------------------------------- a tiny Stable Diffusion base (fmboost generate,
# the text-to-image tab of fmboost serve); the builders of every family are in tests/tiny_bases.py

from tests.tiny_bases import cfm_folder, save_base  # noqa: E402


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    """A StableDiffusionPipeline folder drawing 32 px (16 latents, VAE ×2) by default."""
    pytest.importorskip("transformers")
    return save_base("sd", tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="session")
def cfm_dir(tmp_path_factory, base_dir):
    from diffusers import AutoencoderKL

    # Trained on the base's own VAE: the same weights, as `fmboost prepare --vae BASE/vae` would give.
    return cfm_folder(tmp_path_factory.mktemp("cfm"), AutoencoderKL.from_pretrained(base_dir / "vae"))

import numpy as np
import pytest
import torch

from fmboost.autoencoders.vae import Autoencoder
from fmboost.pipelines.upscale import FMBoostPipeline, pad_to_multiple
from tests.conftest import random_photo


def test_save_load_round_trip_gives_identical_outputs(tmp_path, tiny_model_dir):
    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    pipe.save_pretrained(tmp_path / "copy")
    again = FMBoostPipeline.from_pretrained(tmp_path / "copy")
    im = random_photo(24, 28)
    for solver in ("euler", "heun"):
        a, b = pipe(im, steps=2, solver=solver), again(im, steps=2, solver=solver)
        assert np.array_equal(np.asarray(a), np.asarray(b))
    files = {p.name for p in (tmp_path / "copy").rglob("*")}
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert {"fmboost.json", "config.json", "diffusion_pytorch_model.safetensors"} <= files


@pytest.mark.parametrize("method", ["cfm", "x0", "bicubic", "lanczos"])
def test_every_method_returns_the_scaled_size_for_odd_sizes(tiny_model_dir, method):
    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    out = pipe(random_photo(21, 34), method=method, steps=1)
    assert out.size == (68, 42) and out.mode == "RGB"


def test_seed_changes_the_noise_augmentation_only_when_tau_is_on(tiny_model_dir):
    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    im = random_photo(24, 24)
    a, b = np.asarray(pipe(im, seed=0)), np.asarray(pipe(im, seed=1))
    assert not np.array_equal(a, b)
    assert np.array_equal(a, np.asarray(pipe(im, seed=0)))
    pipe.config = pipe.config.replace(tau=0)  # a frozen ModelConfig: settings change by replacing it
    assert np.array_equal(np.asarray(pipe(im, seed=0)), np.asarray(pipe(im, seed=1)))


def test_a_sampling_tau_overrides_the_models_own_for_one_call(tiny_model_dir):
    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    pipe.config = pipe.config.replace(tau=0)
    im = random_photo(24, 24)
    clean = np.asarray(pipe(im, seed=0))
    noised = np.asarray(pipe(im, seed=0, tau=300))
    assert not np.array_equal(clean, noised)
    assert np.array_equal(noised, np.asarray(pipe(im, seed=0, tau=300)))  # seeded
    assert not np.array_equal(noised, np.asarray(pipe(im, seed=1, tau=300)))
    assert np.array_equal(clean, np.asarray(pipe(im, seed=1)))  # the config is untouched: τ 0 again
    assert pipe.objective_at(300).tau == 300 and pipe.objective.tau == 0


def test_channels_last_weights_give_the_same_upscale_and_save_as_nchw(tmp_path, tiny_model_dir):
    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)  # loads channels-last
    assert pipe.is_channels_last
    torch.manual_seed(0)
    with torch.no_grad():  # a displacement, so the flow's convolutions matter (the tiny model starts at zero)
        for p in pipe.model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.rand(1, 3, 24, 24)
    nhwc = pipe.upscale_tensor(x, "cfm", 2)[0]
    pipe.channels_last(False)
    assert not pipe.is_channels_last
    torch.testing.assert_close(pipe.upscale_tensor(x, "cfm", 2)[0], nhwc, atol=1e-4, rtol=0)
    pipe.channels_last().save_pretrained(tmp_path / "saved")
    assert pipe.is_channels_last  # saving does not change the loaded pipeline
    again = FMBoostPipeline.from_pretrained(tmp_path / "saved")
    torch.testing.assert_close(again.upscale_tensor(x, "cfm", 2)[0], nhwc, atol=1e-4, rtol=0)


def test_tiled_decoding_approximates_the_full_decode(tiny_vae_dir):
    ae = Autoencoder.from_pretrained(tiny_vae_dir)
    torch.manual_seed(0)
    z = torch.randn(1, 4, 48, 48)
    full, tiled, other = ae.decode(z), ae.decode(z, tile=True, tile_size=32), ae.decode(torch.randn(1, 4, 48, 48))
    corr = lambda a, b: torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
    assert tiled.shape == full.shape
    # Tiles see their own GroupNorm statistics, so tiled ≠ full bit for bit, but it must be the same picture.
    assert corr(full, tiled) > 0.85 and abs(corr(full, other)) < 0.3
    assert not ae.vae.use_tiling  # tiling is switched off again after the call


def test_padding_mirrors_to_a_multiple():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    y = pad_to_multiple(x, 4)
    assert y.shape == (1, 1, 4, 4)
    assert torch.equal(y[0, 0, 3], x[0, 0, 1])

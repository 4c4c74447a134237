"""Real-ESRGAN degradations: each step does what it should, the pipeline is seeded, prepare and degrade use it."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import fmboost.cli.main as cli
from fmboost.data import degradations as D
from fmboost.training.prepare import load_shards, prepare
from fmboost.training.train import train
from tests.conftest import random_photo
from tests.test_training import config


def photo(h=64, w=80, seed=0) -> np.ndarray:
    return np.asarray(random_photo(h, w, seed), dtype=np.float32) / 255


def high_frequency_energy(img: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian: large for noise and edges, small for smooth images."""
    lap = 4 * img[1:-1, 1:-1] - img[:-2, 1:-1] - img[2:, 1:-1] - img[1:-1, :-2] - img[1:-1, 2:]
    return float((lap ** 2).mean())


KERNELS = [
    D.bivariate_gaussian(21, 2.0, 2.0),
    D.bivariate_gaussian(15, 3.0, 0.4, 0.7),
    D.bivariate_generalized_gaussian(13, 1.5, 0.8, -1.2, 0.5),
    D.bivariate_generalized_gaussian(7, 0.2, 0.2, 0.0, 4.0),
    D.bivariate_plateau(21, 2.5, 1.0, 2.0, 1.0),
    D.bivariate_plateau(9, 1.0, 1.0, 0.0, 2.0),
    D.circular_lowpass_kernel(np.pi / 5, 21),
    D.circular_lowpass_kernel(np.pi, 7),
]


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernels_sum_to_one_and_are_point_symmetric(kernel):
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.sum() == pytest.approx(1.0, abs=1e-9)
    # filter2d convolves; Real-ESRGAN correlates: the same thing for kernels symmetric under x → −x.
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-12)


def test_random_kernels_follow_the_settings():
    rng, stage = D.image_rng(0, 0), D.Stage()
    for _ in range(100):
        k = D.random_blur_kernel(rng, stage, D.REALESRGAN.kernel_range)
        assert k.shape[0] in D.REALESRGAN.kernel_range and k.sum() == pytest.approx(1.0)
    # Only isotropic Gaussians, so every kernel is symmetric under a 90° turn.
    iso = D.Stage(kernel_list=("iso",), kernel_prob=(1.0,), sinc_prob=0.0)
    k = D.random_blur_kernel(rng, iso, (21,))
    np.testing.assert_allclose(k, k.T, atol=1e-12)


def test_anisotropic_kernel_spreads_along_its_rotation():
    k = D.bivariate_gaussian(21, 3.0, 1.2, 0.0)
    g = D.kernel_grid(21)
    var_x, var_y = (k * g[..., 0] ** 2).sum(), (k * g[..., 1] ** 2).sum()
    assert var_x == pytest.approx(9.0, rel=0.05) and var_y == pytest.approx(1.44, rel=0.05)
    turned = D.bivariate_gaussian(21, 3.0, 1.2, np.pi / 2)
    np.testing.assert_allclose(turned, k.T, atol=1e-12)


@pytest.mark.parametrize("kernel", [KERNELS[0], KERNELS[2], KERNELS[4], KERNELS[6]])
def test_blur_lowers_high_frequency_energy_and_keeps_the_mean(kernel):
    img = photo()
    out = D.filter2d(img, kernel)
    assert out.shape == img.shape and out.dtype == np.float32
    assert high_frequency_energy(out) < 0.5 * high_frequency_energy(img)
    assert out.mean() == pytest.approx(img.mean(), abs=0.01)


def test_filter2d_works_on_images_smaller_than_the_kernel():
    out = D.filter2d(np.full((3, 2, 3), 0.25, np.float32), D.bivariate_gaussian(21, 3.0, 3.0))
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


@pytest.mark.parametrize("gray", [False, True])
def test_gaussian_noise_raises_the_variance_by_sigma_squared(gray):
    flat = np.full((128, 128, 3), 0.5, np.float32)
    out = D.gaussian_noise(flat, 10.0, gray, D.image_rng(0, 1))
    assert out.var() == pytest.approx((10 / 255) ** 2, rel=0.05)
    assert out.mean() == pytest.approx(0.5, abs=0.002)
    same_in_all_channels = np.array_equal(out[..., 0], out[..., 1])
    assert same_in_all_channels == gray


@pytest.mark.parametrize("gray", [False, True])
def test_poisson_noise_variance_follows_the_intensity(gray):
    # 256 grey levels, so Real-ESRGAN's photon count is 256 per unit: noise variance = intensity / 256 × scale².
    ramp = np.broadcast_to(np.arange(256, dtype=np.float32)[None, :, None] / 255, (256, 256, 3)).copy()
    scale = 2.0
    noise = D.poisson_noise(ramp, scale, gray, D.image_rng(0, 2)) - ramp
    dark, bright = noise[:, :64].var(), noise[:, -64:].var()
    assert bright > 5 * dark
    assert noise.var() == pytest.approx(ramp.mean() / 256 * scale ** 2, rel=0.05)
    assert np.array_equal(noise[..., 0], noise[..., 2]) == gray


def test_jpeg_quality_sets_size_and_error():
    img = photo(96, 96)
    sizes = {q: len(D.encode_jpeg(img, q)) for q in (30, 60, 95)}
    assert sizes[30] < sizes[60] < sizes[95]
    errors = {q: np.abs(D.jpeg(img, q) - img).mean() for q in (30, 95)}
    assert errors[95] < errors[30] < 0.05
    out = D.jpeg(img, 61.7)
    assert out.shape == img.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, D.jpeg(img, 62))  # the quality is rounded


@pytest.mark.parametrize("mode", D.RESIZE_MODES)
def test_interpolate_gives_the_requested_size(mode):
    img = photo(30, 40)
    assert D.interpolate(img, (13, 57), mode).shape == (13, 57, 3)
    if mode == "area":  # ×½ area resize averages 2×2 blocks
        expected = img.reshape(15, 2, 20, 2, 3).mean((1, 3))
        np.testing.assert_allclose(D.interpolate(img, (15, 20), mode), expected, atol=1e-6)


@pytest.mark.parametrize("scale,h,w", [(2, 64, 80), (2, 65, 81), (3, 50, 31), (4, 33, 47), (2, 3, 5)])
def test_output_size_follows_the_scale(scale, h, w):
    hr = (photo(h, w) * 255).astype(np.uint8)
    out = D.degrade(hr, scale, D.image_rng(0, h))
    assert out.shape == (h // scale, w // scale, 3) and out.dtype == np.uint8


def test_pipeline_is_reproducible_under_a_seed_and_differs_across_seeds():
    hr = (photo() * 255).astype(np.uint8)
    a = D.degrade(hr, 2, D.image_rng(0, 7))
    np.testing.assert_array_equal(a, D.degrade(hr, 2, D.image_rng(0, 7)))
    others = [D.degrade(hr, 2, D.image_rng(s, i)) for s, i in ((1, 7), (0, 8), (5, 0))]
    assert all(not np.array_equal(a, o) for o in others)


def test_degraded_images_stay_close_to_the_bicubic_downscale_on_average():
    im = random_photo(64, 80)
    bicubic = np.asarray(im.resize((40, 32), Image.BICUBIC), dtype=np.float64)
    outs = [np.asarray(D.degrade_image(im, 2, D.image_rng(3, i)), dtype=np.float64) for i in range(8)]
    assert np.abs(np.mean(outs, 0).mean((0, 1)) - bicubic.mean((0, 1))).max() < 12  # colour is kept
    assert np.mean([np.abs(o - bicubic).mean() for o in outs]) > 3  # but the images are degraded


def test_config_defaults_are_realesrgans_and_round_trip_through_json():
    c = D.REALESRGAN
    assert c.first.resize_prob == (0.2, 0.7, 0.1) and c.second.resize_range == (0.3, 1.2)
    assert c.second.blur_prob == 0.8 and c.final_sinc_prob == 0.8 and c.kernel_range == (7, 9, 11, 13, 15, 17, 19, 21)
    assert D.DegradationConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    mild = D.DegradationConfig(first=D.Stage(noise_range=(1.0, 2.0), gaussian_noise_prob=1.0))
    hr = (photo() * 255).astype(np.uint8)
    assert D.degrade(hr, 2, D.image_rng(0, 0), mild).shape == (32, 40, 3)


def test_prepare_with_degradation_trains_and_records_it(tmp_path, tiny_vae_dir, photos_dir):
    clean = prepare(photos_dir, tmp_path / "clean", tiny_vae_dir, size=32, crops_per_image=2)
    real = prepare(photos_dir, tmp_path / "real", tiny_vae_dir, size=32, crops_per_image=2,
                   degradation="realesrgan")
    assert real["degradation"] == "realesrgan" and clean["degradation"] == "none"
    (a, _), (b, _) = load_shards(tmp_path / "clean"), load_shards(tmp_path / "real")
    assert b["z_lr"].shape == (6, 4, 8, 8) and b["x_cond"].shape == (6, 4, 16, 16)
    assert torch.equal(a["x1"], b["x1"])  # the same high-res crops ...
    assert not torch.allclose(a["z_lr"], b["z_lr"], atol=1e-3)  # ... with other low-res inputs
    assert train(config(tmp_path / "real", tmp_path / "run", max_steps=2)).exists()
    with pytest.raises(ValueError, match="other settings"):
        prepare(photos_dir, tmp_path / "real", tiny_vae_dir, size=32, crops_per_image=2)
    with pytest.raises(ValueError, match="choose one of"):
        prepare(photos_dir, tmp_path / "x", tiny_vae_dir, size=32, degradation="jpeg")


def test_prepare_cascade_pairs_train_the_first_pass_of_x4(tmp_path, tiny_vae_dir, photos_dir):
    """--cascade 2: the low-res side is the ×4 degradation of a crop twice the size, the target that crop ↓2."""
    x4 = prepare(photos_dir, tmp_path / "x4", tiny_vae_dir, size=64, scale=4, crops_per_image=2,
                 degradation="realesrgan", upsampling="pixel")
    first = prepare(photos_dir, tmp_path / "first", tiny_vae_dir, size=32, scale=2, crops_per_image=2,
                    degradation="realesrgan", upsampling="pixel", cascade=2)
    assert first["cascade"] == 2 and x4["cascade"] == 1
    (a, _), (b, _) = load_shards(tmp_path / "x4"), load_shards(tmp_path / "first")
    assert torch.equal(a["z_lr"], b["z_lr"])  # the same crops, degraded ×1/4 alike
    assert b["x1"].shape == b["x_cond"].shape == (6, 4, 16, 16) and a["x1"].shape == (6, 4, 32, 32)
    # the target is the clean crop ↓2: encoded, it lies near the ×4 target's latent averaged 2×2, not near x_cond
    pooled = torch.nn.functional.avg_pool2d(a["x1"], 2)
    assert (b["x1"] - pooled).abs().mean() < (b["x_cond"] - pooled).abs().mean()
    with pytest.raises(ValueError, match="cascade 0"):
        prepare(photos_dir, tmp_path / "bad", tiny_vae_dir, size=32, cascade=0)


def test_prepare_resumes_manifests_from_before_the_option(tmp_path, tiny_vae_dir, photos_dir):
    m = prepare(photos_dir, tmp_path / "s", tiny_vae_dir, size=32, crops_per_image=1)
    del m["degradation"], m["cascade"]
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    assert prepare(photos_dir, tmp_path / "s", tiny_vae_dir, size=32, crops_per_image=1)["count"] == 3


@pytest.fixture
def run_cli(capsys):
    def run(*args):
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_degrade_command_end_to_end(tmp_path, photos_dir, run_cli):
    (photos_dir / "sub").mkdir()
    random_photo(45, 31, seed=5).save(photos_dir / "sub" / "odd.jpg")
    (photos_dir / "broken.png").write_bytes(b"\x89PNG not really")
    code, out, _ = run_cli("degrade", photos_dir, tmp_path / "lr", "--scale", "2", "--seed", "0")
    assert code == 0 and "4 degraded image(s)" in out and "broken.png" in out
    names = sorted(p.relative_to(tmp_path / "lr").as_posix() for p in (tmp_path / "lr").rglob("*") if p.is_file())
    assert names == ["p0.png", "p1.png", "p2.png", "sub/odd.jpg"]
    with Image.open(tmp_path / "lr" / "p0.png") as a, Image.open(tmp_path / "lr" / "sub" / "odd.jpg") as b:
        assert a.size == (44, 36) and b.size == (15, 22)
    # Seeded by name: a folder holding one of the photos gives that photo the same degradations.
    (tmp_path / "one").mkdir()
    (photos_dir / "p1.png").rename(tmp_path / "one" / "p1.png")
    assert run_cli("degrade", tmp_path / "one", tmp_path / "lr1", "--png")[0] == 0
    assert (tmp_path / "lr1" / "p1.png").read_bytes() == (tmp_path / "lr" / "p1.png").read_bytes()
    assert run_cli("degrade", tmp_path / "one", tmp_path / "lr2", "--seed", "1")[0] == 0
    assert (tmp_path / "lr2" / "p1.png").read_bytes() != (tmp_path / "lr" / "p1.png").read_bytes()
    assert not list((tmp_path / "lr").rglob("*.tmp"))


def test_degrade_command_refuses_bad_folders(tmp_path, photos_dir, run_cli):
    code, _, err = run_cli("degrade", photos_dir, photos_dir / "lr")
    assert code == 2 and "inside it" in err
    code, _, err = run_cli("degrade", tmp_path / "missing", tmp_path / "lr")
    assert code == 2 and "no such folder" in err
    code, _, err = run_cli("degrade", photos_dir, tmp_path / "lr", "--scale", "1")
    assert code == 2 and "--scale" in err
    assert not (tmp_path / "lr").exists()

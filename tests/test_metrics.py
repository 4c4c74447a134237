"""Metrics against values known in closed form, and against scikit-image where it is installed."""
import importlib.util
import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fmboost.evaluation import metrics as M
from tests.conftest import random_photo


def flat(value, h=24, w=30):
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_psnr_of_a_known_error():
    # A uniform offset of 5 gives MSE 25 exactly, on every channel.
    a, b = flat(100), flat(105)
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-9)
    # BT.601 luma scales an equal RGB offset by (65.481 + 128.553 + 24.966) / 255 = 219 / 255.
    dy = 5 * 219 / 255
    assert M.psnr(a, b, "y") == pytest.approx(10 * math.log10(255**2 / dy**2), abs=1e-9)


def test_psnr_of_alternating_noise_and_of_identical_images():
    a = flat(128).astype(int)
    sign = np.where((np.indices(a.shape[:2]).sum(0) % 2) == 0, 1, -1)[..., None]
    b = (a + 3 * sign).astype(np.uint8)  # ±3: MSE 9 whatever the signs
    assert M.psnr(a.astype(np.uint8), b) == pytest.approx(10 * math.log10(255**2 / 9))
    assert M.psnr(b, b) == math.inf


def test_crop_border_ignores_the_border():
    a = flat(50)
    b = a.copy()
    b[:2] = 0
    b[:, -2:] = 255
    assert M.psnr(a, b) < 20
    assert M.psnr(a, b, crop_border=2) == math.inf
    assert M.ssim(a, b, crop_border=2) == pytest.approx(1.0)


def test_sizes_must_match():
    with pytest.raises(ValueError, match="differ in size"):
        M.psnr(flat(0, 10, 10), flat(0, 10, 12))


def test_ssim_is_one_for_identical_images_and_drops_under_blur():
    im = random_photo(48, 64)
    assert M.ssim(im, im) == pytest.approx(1.0, abs=1e-12)
    assert M.ssim(im, im, "y") == pytest.approx(1.0, abs=1e-12)
    values = [M.ssim(im, im.filter(ImageFilter.GaussianBlur(r))) for r in (0.7, 1.5, 3)]
    assert values[0] < 0.99 and values[0] > values[1] > values[2]
    assert M.ssim(im, im.filter(ImageFilter.GaussianBlur(1.5)), "y") < 0.99


def test_sharpness_is_one_for_the_reference_below_under_blur_above_under_noise():
    im = random_photo(48, 64)
    assert M.sharpness(im, im) == pytest.approx(1.0)
    blurred = [M.sharpness(im.filter(ImageFilter.GaussianBlur(r)), im) for r in (0.7, 1.5)]
    assert 1 > blurred[0] > blurred[1]
    noisy = np.asarray(im, np.float64) + np.random.default_rng(0).normal(0, 20, (48, 64, 3))
    assert M.sharpness(noisy.clip(0, 255), im) > 1.5


def test_ssim_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    a = random_photo(40, 52, seed=1)
    b = np.asarray(a.filter(ImageFilter.GaussianBlur(1)))
    a = np.asarray(a)
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert M.ssim(a, b) == pytest.approx(skm.structural_similarity(a, b, channel_axis=-1, **kw), abs=1e-9)
    ya, yb = M.rgb_to_y(a.astype(float)), M.rgb_to_y(b.astype(float))
    assert M.ssim(a, b, "y") == pytest.approx(skm.structural_similarity(ya, yb, **kw), abs=1e-9)
    assert M.psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=255))


def test_luma_matches_the_bt601_studio_range():
    assert M.rgb_to_y(np.zeros(3)) == pytest.approx(16)
    assert M.rgb_to_y(np.full(3, 255.0)) == pytest.approx(235)
    color = pytest.importorskip("skimage.color")
    rgb = np.asarray(random_photo(8, 8))
    assert np.allclose(M.rgb_to_y(rgb.astype(float)), color.rgb2ycbcr(rgb)[..., 0])


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="11×11"):
        M.ssim(flat(0, 10, 20), flat(0, 10, 20))


def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    assert M.frechet_distance_features(f, f) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_of_shifted_gaussians_is_the_squared_shift():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    # Equal covariances: the trace term vanishes and only ‖μ1 − μ2‖² = 14.25 is left.
    assert M.frechet_distance_features(f, f + shift) == pytest.approx(14.25, rel=1e-7)


def test_frechet_distance_closed_forms():
    # Diagonal covariances: Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) = Σ (√a − √b)².
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([0.0, 1.0, 2.0])
    expected = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert M.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    # Full covariances: the textbook formula with scipy's sqrtm.
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = x @ x.T + np.eye(4), y @ y.T + np.eye(4)
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    textbook = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert M.frechet_distance(m1, s1, m2, s2) == pytest.approx(textbook, rel=1e-8)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(3)
    d = M.frechet_distance_features(rng.normal(size=(5, 32)), rng.normal(size=(5, 32)) + 1)
    assert math.isfinite(d) and d > 0


@pytest.mark.parametrize("h,w,size", [(40, 52, 16), (32, 32, 16), (33, 70, 32), (20, 20, 20)])
def test_grid_patches_cover_the_image(h, w, size):
    image = np.arange(h * w * 3).reshape(h, w, 3)
    boxes = M.patch_boxes(h, w, size, "grid")
    patches = M.extract_patches(image, size, "grid")
    covered = np.zeros((h, w), bool)
    for (t, l), p in zip(boxes, patches):
        assert 0 <= t <= h - size and 0 <= l <= w - size
        assert np.array_equal(p, image[t:t + size, l:l + size])  # cut at native resolution, not resized
        covered[t:t + size, l:l + size] = True
    assert covered.all()
    assert len(boxes) == math.ceil(h / size) * math.ceil(w / size)


def test_random_patches_are_inside_and_reproducible():
    boxes = M.patch_boxes(40, 52, 16, "random", count=50, seed=7)
    assert len(boxes) == 50 and all(0 <= t <= 24 and 0 <= l <= 36 for t, l in boxes)
    assert boxes == M.patch_boxes(40, 52, 16, "random", count=50, seed=7)
    assert boxes != M.patch_boxes(40, 52, 16, "random", count=50, seed=8)
    assert M.extract_patches(np.zeros((40, 52, 3)), 16, "random", 5).shape == (5, 16, 16, 3)


def test_patches_larger_than_the_image_are_refused():
    with pytest.raises(ValueError, match="larger than the image"):
        M.patch_boxes(10, 30, 16)


@pytest.mark.parametrize("loader", [M.load_lpips, M.load_inception])
def test_missing_weights_raise_metric_unavailable(tmp_path, loader):
    with pytest.raises(M.MetricUnavailable, match="weights not found at .*checkpoints"):
        loader(hub_dir=tmp_path)


@pytest.mark.parametrize("loader,package", [(M.load_lpips, "lpips"), (M.load_inception, "torch_fidelity")])
def test_weights_without_their_package_raise_metric_unavailable(tmp_path, loader, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    names = {"lpips": M.LPIPS_BACKBONE_WEIGHTS["alex"], "torch_fidelity": M.INCEPTION_WEIGHTS}
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / names[package]).write_bytes(b"")
    with pytest.raises(M.MetricUnavailable, match="cannot be imported"):
        loader(hub_dir=tmp_path)


def test_uint8_batch_layout():
    batch = M.to_uint8_batch([Image.new("RGB", (5, 4), (1, 2, 3))] * 2)
    assert batch.shape == (2, 3, 4, 5) and batch.dtype.is_floating_point is False
    assert batch[0, :, 0, 0].tolist() == [1, 2, 3]


def test_channel_shift_is_the_signed_mean_difference_per_channel():
    import numpy as np
    from PIL import Image

    from fmboost.evaluation.metrics import channel_shift

    a = np.full((20, 20, 3), 100, np.uint8)
    b = a.copy()
    b[..., 1] += 3  # a green cast of 3 levels
    b[0, :, 0] = 255  # a border row that crop_border leaves out
    assert channel_shift(Image.fromarray(b), Image.fromarray(a), 1).tolist() == [0.0, 3.0, 0.0]
    assert channel_shift(Image.fromarray(a), Image.fromarray(b), 1).tolist() == [0.0, -3.0, 0.0]

"""NIQE: its parts against closed forms and PIL, its ordering of distortions, its input handling, and the
published MATLAB value on Set14's baboon where the validation photos are present."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fmboost.evaluation.niqe import BLOCK, aggd_fit, imresize, niqe, niqe_fits, pristine_model, resize_matrix

ROOT = Path(__file__).resolve().parents[1]
BABOON = ROOT.parent / "shared" / "data" / "val" / "set14" / "baboon.png"


@pytest.fixture(scope="module")
def photo():
    """A natural photo of 4 NIQE blocks (256×192) from the repository's example."""
    return Image.open(ROOT / "examples" / "astronaut.png").convert("RGB").crop((0, 0, 256, 192))


def test_pristine_model_is_the_36_feature_gaussian():
    mu, cov, window = pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36) and window.shape == (7, 7)
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > -1e-9
    assert window.sum() == pytest.approx(1)


def test_aggd_fit_recovers_gaussian_and_laplacian_shapes():
    rng = np.random.default_rng(0)
    # A Gaussian is a GGD of shape 2 and scale σ·√2; a Laplacian of scale b has shape 1 and scale b.
    alpha, left, right = aggd_fit(rng.normal(0, 1.5, (2, 200_000)))
    assert np.allclose(alpha, 2, atol=0.05) and np.allclose([left, right], 1.5 * np.sqrt(2), rtol=0.02)
    alpha, left, right = aggd_fit(rng.laplace(0, 1.0, (1, 200_000)))
    assert alpha[0] == pytest.approx(1, abs=0.03) and left[0] == pytest.approx(1, rel=0.02)
    assert right[0] == pytest.approx(1, rel=0.02)


def test_matlab_imresize_matches_pil_bicubic_inside_and_keeps_constants():
    # Both are Keys' cubic (a = −0.5) widened by 1/scale when shrinking; they differ only at the borders.
    a = np.random.default_rng(1).uniform(0, 255, (64, 80))
    ours = imresize(a, 0.5)
    pil = np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((40, 32), Image.BICUBIC))
    assert ours.shape == (32, 40)
    assert np.abs(ours[3:-3, 3:-3] - pil[3:-3, 3:-3]).max() < 1e-3
    assert np.allclose(resize_matrix(50, 0.5).sum(1), 1)
    assert np.allclose(imresize(np.full((20, 30), 7.0), 0.5), 7)


def test_blur_and_noise_raise_niqe(photo):
    sharp = niqe(photo)
    blurred = niqe(photo.filter(ImageFilter.GaussianBlur(2)))
    noise = np.random.default_rng(0).normal(0, 20, (192, 256, 3))
    noisy = niqe(np.clip(np.asarray(photo, dtype=np.float64) + noise, 0, 255))
    assert sharp < blurred and sharp < noisy


def test_niqe_is_deterministic_and_takes_pil_arrays_and_gray(photo):
    a = np.asarray(photo)
    assert niqe(photo) == niqe(a) == niqe(a.astype(np.float64))
    gray = np.asarray(photo.convert("L"), dtype=np.float64)
    assert np.isfinite(niqe(gray)) and niqe(gray) != niqe(photo)  # 2-D input is used as the luma itself
    assert niqe(photo, channel="gray") != niqe(photo, channel="y")


def test_shapes_that_niqe_refuses(photo):
    with pytest.raises(ValueError, match="two 96×96 blocks"):
        niqe(photo.crop((0, 0, 150, 150)))  # one block only
    with pytest.raises(ValueError, match="two 96×96 blocks"):
        niqe(photo, crop_border=50)  # 156×92 pixels remain
    assert np.isfinite(niqe(photo, crop_border=2))  # 252×188: two whole blocks
    assert niqe_fits((196, 100), crop_border=2) and not niqe_fits((195, 100), crop_border=2)
    with pytest.raises(ValueError, match="RGB"):
        niqe(np.zeros((192, 256, 4)))
    with pytest.raises(ValueError, match="channel"):
        niqe(photo, channel="lab")


def test_only_whole_blocks_count(photo):
    # Pixels beyond the last whole 96×96 block are ignored, as in the MATLAB code.
    a = np.asarray(photo)
    assert niqe(a[: 2 * BLOCK, : 2 * BLOCK]) == niqe(a[: 2 * BLOCK + 50, : 2 * BLOCK + 30])


@pytest.mark.skipif(not BABOON.is_file(), reason="validation photos (../shared/data) not present")
def test_published_value_on_baboon():
    # BasicSR's test image is Set14's baboon cut to 492 columns; its NIQE by the authors' MATLAB code
    # (R2021a) is 5.72957338, as BasicSR's docstring records. We compute in float64: 5.72996.
    baboon = np.asarray(Image.open(BABOON).convert("RGB"))[:, :492]
    assert niqe(baboon) == pytest.approx(5.72957338, abs=1e-3)

"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan and Bovik, IEEE SPL 2013): no reference,
no learned weights, lower is better.

The image's luma is locally normalised (mean-subtracted, contrast-normalised: "MSCN" coefficients), cut into
96×96 blocks, and each block is described by 18 natural-scene statistics: the shape and spread of a
generalised Gaussian fitted to its MSCN coefficients, and of asymmetric generalised Gaussians fitted to the
products of horizontally, vertically and diagonally adjacent coefficients. The same is done at half size, 36
features in all. NIQE is the distance between the Gaussian of this image's block features and the Gaussian
the authors fitted to pristine photos (`niqe_pris_params.npz`, see NIQE_PARAMS_NOTICE.txt):

    NIQE = sqrt((μ_p − μ)ᵀ ((Σ_p + Σ) / 2)⁺ (μ_p − μ))

This follows the authors' MATLAB release (`computequality.m`) step by step, as BasicSR's port does: blocks of
96 without overlap, the 7×7 Gaussian window with replicated borders, MATLAB's antialiased bicubic `imresize`
for the half scale, AGGD parameters by the same table search over α ∈ [0.2, 10] in steps of 0.001, and blocks
with undefined features left out of the covariance (MATLAB's `nancov`). The luma is BT.601 Y, rounded (the SR
literature's convention and BasicSR's), or `channel="gray"` for MATLAB's `rgb2gray`, which the authors' code
uses on colour images.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma

from fmboost.evaluation.metrics import rgb_to_y

PARAMS = Path(__file__).with_name("niqe_pris_params.npz")
BLOCK = 96  # the block size of the pristine model: other sizes would compare with the wrong Gaussian
GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])  # MATLAB rgb2gray


@lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(μ_p of 36, Σ_p of 36×36, the 7×7 normalisation window)."""
    with np.load(PARAMS) as p:
        return p["mu_pris_param"].ravel(), p["cov_pris_param"], p["gaussian_window"]


@lru_cache(maxsize=1)
def _ratio_table() -> tuple[np.ndarray, np.ndarray]:
    """α on the MATLAB code's grid and the generalised Gaussian's Γ(2/α)² / (Γ(1/α) Γ(3/α)) for each."""
    alpha = np.arange(0.2, 10.001, 0.001)
    return alpha, gamma(2 / alpha) ** 2 / (gamma(1 / alpha) * gamma(3 / alpha))


def luma(image, channel: str = "y") -> np.ndarray:
    """Rounded luma in 0..255 of an RGB image (PIL or H×W×3), or of an H×W gray array, as float64."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] == 3:
        if channel == "y":
            a = rgb_to_y(a)
        elif channel == "gray":
            a = a @ GRAY
        else:
            raise ValueError(f"unknown channel {channel!r}; choose y or gray")
    elif a.ndim != 2:
        raise ValueError(f"expected an RGB (H×W×3) or gray (H×W) image, got shape {a.shape}")
    return np.floor(a + 0.5)  # MATLAB rounds halves up, as the reference values were computed


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
            + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def resize_matrix(n_in: int, scale: float) -> np.ndarray:
    """MATLAB `imresize`'s bicubic resampling of one axis (antialiased when shrinking) as an out × in matrix,
    with its symmetric border handling folded in; `R @ a` resizes the rows of `a`."""
    n_out = math.ceil(n_in * scale)
    width = 4 / scale if scale < 1 else 4  # a wider kernel both interpolates and low-passes
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)  # output centres in 1-based input coordinates
    index = np.floor(u - width / 2)[:, None] + np.arange(math.ceil(width) + 2)[None]
    weights = scale * _cubic((u[:, None] - index) * scale) if scale < 1 else _cubic(u[:, None] - index)
    weights /= weights.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])  # 1..n, n..1 in MATLAB
    columns = mirror[(index.astype(np.int64) - 1) % (2 * n_in)]
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.repeat(np.arange(n_out), index.shape[1]), columns.ravel()), weights.ravel())
    return matrix


def imresize(a: np.ndarray, scale: float) -> np.ndarray:
    return resize_matrix(a.shape[0], scale) @ a @ resize_matrix(a.shape[1], scale).T


def aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(α, β_left, β_right) of an asymmetric generalised Gaussian for each row of `x` (moment matching, the
    paper's Eq. 7, solved by table search as in the MATLAB code). Rows with no negative or no positive value
    give NaN spreads, as in MATLAB; those blocks are left out later."""
    alpha_grid, ratio = _ratio_table()
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(np.sum(x**2 * (x < 0), 1) / np.sum(x < 0, 1))
        right = np.sqrt(np.sum(x**2 * (x > 0), 1) / np.sum(x > 0, 1))
        g = left / right
        r = np.mean(np.abs(x), 1) ** 2 / np.mean(x**2, 1)
        r_norm = r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
        alpha = alpha_grid[np.argmin((ratio[None] - r_norm[:, None]) ** 2, 1)]  # NaN row: first entry, as MATLAB
        spread = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * spread, right * spread


def block_features(blocks: np.ndarray) -> np.ndarray:
    """N×18 features of N square blocks of MSCN coefficients."""
    flat = blocks.reshape(len(blocks), -1)
    alpha, bl, br = aggd_fit(flat)
    features = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):  # right, down and both diagonal neighbours
        pairs = (blocks * np.roll(blocks, shift, axis=(1, 2))).reshape(len(blocks), -1)
        alpha, bl, br = aggd_fit(pairs)
        mean = (br - bl) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, bl, br]
    return np.stack(features, 1)


def mscn(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients (the paper's Eq. 1), borders replicated."""
    mu = convolve(y, window, mode="nearest")
    sigma = np.sqrt(np.abs(convolve(y * y, window, mode="nearest") - mu * mu))
    return (y - mu) / (sigma + 1)


def niqe_fits(size: tuple[int, int], crop_border: int = 0) -> bool:
    """Whether a W×H image, less `crop_border` pixels a side, holds the two blocks NIQE needs."""
    w, h = (n - 2 * crop_border for n in size)
    return w >= 0 and h >= 0 and (w // BLOCK) * (h // BLOCK) >= 2


def niqe(image, crop_border: int = 0, channel: str = "y") -> float:
    """NIQE of an RGB image (PIL or H×W×3 uint8/float in 0..255) or an H×W gray array; lower is better.
    The image, less `crop_border` pixels a side, needs at least two 96×96 blocks."""
    y = luma(image, channel)
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    if rows * cols < 2:
        raise ValueError(f"NIQE needs at least two {BLOCK}×{BLOCK} blocks, got {y.shape[1]}×{y.shape[0]} pixels")
    y = y[: rows * BLOCK, : cols * BLOCK]
    mu_p, cov_p, window = pristine_model()
    features = []
    for scale in (1, 2):
        size = BLOCK // scale
        blocks = mscn(y, window).reshape(rows, size, cols, size).transpose(0, 2, 1, 3).reshape(-1, size, size)
        features.append(block_features(blocks))
        y = imresize(y, 0.5)
    features = np.concatenate(features, 1)
    mu = np.nanmean(features, 0)
    complete = features[~np.isnan(features).any(1)]
    if len(complete) < 2:
        return math.nan  # flat images: too few blocks with defined statistics
    cov = np.cov(complete, rowvar=False)
    d = mu_p - mu
    return float(np.sqrt(d @ np.linalg.pinv((cov_p + cov) / 2) @ d))

"""Image-quality metrics for upscalers: PSNR, SSIM, Fréchet distance, patches for p-FID, LPIPS and FID.

Conventions, those of the super-resolution literature (EDSR, BasicSR), so numbers compare with papers:

- images are 8-bit RGB (PIL images or H×W×3 arrays) compared at data range 255;
- `crop_border` pixels are shaved off every side before measuring (eval passes the scale): border pixels
  depend on each method's padding rather than on its quality;
- "y" is the luma of ITU-R BT.601 YCbCr in studio range, as MATLAB's `rgb2ycbcr`:
  Y = 16 + 65.481·R + 128.553·G + 24.966·B with R, G, B in [0, 1], so Y ∈ [16, 235], still measured at
  data range 255. Most SR papers report PSNR and SSIM on Y; "rgb" measures all three channels;
- SSIM is Wang et al. (2004): Gaussian window 11×11, σ = 1.5, K1 = 0.01, K2 = 0.03, population
  (not sample) covariances, mean over the valid part of the map and then over channels. This equals
  `skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)`.

`sharpness` is a weight-free proxy for blur, which PSNR rewards: the mean squared luma gradient of the output
over that of the reference. 1 is the reference's detail; below 1 blurrier (regression's averaging), above 1
noisier or over-sharpened.

LPIPS and Inception features (FID, p-FID) need pretrained networks from maintained libraries (`lpips`,
`torch-fidelity`) and their weights in a torch hub folder. Nothing is downloaded: when a package or a
weights file is missing, the loaders raise `MetricUnavailable` and the caller reports the metric as skipped.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# File names under <torch hub dir>/checkpoints, as the libraries' own downloads name them.
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's TF-ported InceptionV3
LPIPS_BACKBONE_WEIGHTS = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}  # torchvision's
METRIC_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "sharpness": "sharpness", "niqe": "NIQE", "lpips": "LPIPS",
                "fid": "FID", "pfid": "p-FID"}


class MetricUnavailable(RuntimeError):
    """A metric whose package or pretrained weights are not on this machine; the message says which."""


def as_array(image) -> np.ndarray:
    """PIL image or H×W×3 array (uint8 or float in 0..255) -> float64 H×W×3."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H×W×3), got shape {a.shape}")
    return a


def rgb_to_y(a: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma of RGB values in 0..255 (see the module docstring)."""
    return 16.0 + (a @ np.array([65.481, 128.553, 24.966])) / 255.0


def _pair(a, b, channel: str, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 H×W×C (C = 3 for rgb, 1 for y), borders shaved."""
    a, b = as_array(a), as_array(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape[1]}×{a.shape[0]} vs {b.shape[1]}×{b.shape[0]}")
    if channel == "y":
        a, b = rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]
    elif channel != "rgb":
        raise ValueError(f"unknown channel {channel!r}; choose rgb or y")
    if crop_border:
        c = crop_border
        a, b = a[c:-c, c:-c], b[c:-c, c:-c]
    return a, b


def psnr(a, b, channel: str = "rgb", crop_border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB at data range 255; inf for identical images."""
    a, b = _pair(a, b, channel, crop_border)
    mse = np.mean((a - b) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def channel_shift(a, b, crop_border: int = 0) -> np.ndarray:
    """Mean of a − b per R, G, B channel in levels: a colour cast, which PSNR hides among per-pixel errors."""
    a, b = _pair(a, b, "rgb", crop_border)
    return (a - b).reshape(-1, 3).mean(0)


def sharpness(a, reference, crop_border: int = 0) -> float:
    """Gradient energy of `a`'s luma relative to the reference's (1 = as detailed; < 1 blurrier)."""
    a, b = _pair(a, reference, "y", crop_border)
    energy = lambda y: np.mean(np.diff(y, axis=0) ** 2) + np.mean(np.diff(y, axis=1) ** 2)
    return float(energy(a) / max(energy(b), 1e-12))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian; SSIM's 2-D window is its outer product."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a, b, channel: str = "rgb", crop_border: int = 0, window: int = 11, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004) at data range 255, averaged over the channels."""
    a, b = _pair(a, b, channel, crop_border)
    if min(a.shape[:2]) < window:
        raise ValueError(f"SSIM needs at least {window}×{window} pixels, got {a.shape[1]}×{a.shape[0]}")
    # Channels as a batch of single-channel images: the same window for each, as skimage's channel_axis.
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[:, None]
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))[:, None]
    g = gaussian_window(window, sigma)
    # The Gaussian is separable: a column then a row pass ('valid', no padding, so no window mixes in made-up
    # pixels) equals the 11×11 window at 2/11 of its cost; float64 convolutions have no fast CPU kernel, and
    # all five maps go through in one batch.
    maps = torch.cat([x, y, x * x, y * y, x * y])
    blurred = F.conv2d(F.conv2d(maps, g[None, None, :, None]), g[None, None, None, :])
    mu_x, mu_y, xx, yy, xy = blurred.chunk(5)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(s.mean(dim=(1, 2, 3)).mean())


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (N−1 normalised, as pytorch-fid and torch-fidelity) of N×D features."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors (N×D), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), the squared Fréchet distance of two Gaussians.

    Tr (Σ1Σ2)^½ = Tr (Σ1^½ Σ2 Σ1^½)^½, and the right side is a symmetric PSD matrix: its eigenvalues are
    real and ≥ 0, so this stays stable for the singular covariances of few samples, where scipy's sqrtm
    of the non-symmetric Σ1Σ2 returns complex noise.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    root1 = _sqrtm_psd(s1)
    middle = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def frechet_distance_features(f1: np.ndarray, f2: np.ndarray) -> float:
    return frechet_distance(*feature_stats(f1), *feature_stats(f2))


def _starts(length: int, size: int) -> list[int]:
    """Fewest evenly spread starts whose windows cover [0, length): the last one ends at the edge."""
    count = math.ceil(length / size)
    return sorted({round(s) for s in np.linspace(0, length - size, count)})


def patch_boxes(height: int, width: int, size: int, mode: str = "grid", count: int | None = None,
                seed: int = 0) -> list[tuple[int, int]]:
    """(top, left) corners of size×size patches. `grid` covers the whole image with the fewest patches
    (overlapping where the size does not divide it); `random` draws `count` patches (p-FID, Chai et al.)."""
    if size > min(height, width):
        raise ValueError(f"patch size {size} is larger than the image ({width}×{height})")
    if mode == "grid":
        return [(t, l) for t in _starts(height, size) for l in _starts(width, size)]
    if mode == "random":
        if not count or count < 1:
            raise ValueError("random patches need count ≥ 1")
        rng = np.random.default_rng(seed)
        tops = rng.integers(0, height - size + 1, count)
        lefts = rng.integers(0, width - size + 1, count)
        return list(zip(tops.tolist(), lefts.tolist()))
    raise ValueError(f"unknown patch mode {mode!r}; choose grid or random")


def extract_patches(image, size: int, mode: str = "grid", count: int | None = None, seed: int = 0) -> np.ndarray:
    """N×size×size×C patches cut at native resolution (no resizing, unlike whole-image FID)."""
    a = np.asarray(image)
    boxes = patch_boxes(a.shape[0], a.shape[1], size, mode, count, seed)
    return np.stack([a[t:t + size, l:l + size] for t, l in boxes])


def weights_path(filename: str, hub_dir: str | Path | None = None) -> Path:
    """Where torch hub keeps a downloaded checkpoint: <hub_dir or torch.hub.get_dir()>/checkpoints/NAME."""
    return Path(hub_dir or torch.hub.get_dir()) / "checkpoints" / filename


def _require(path: Path) -> None:
    if not path.is_file():
        raise MetricUnavailable(f"weights not found at {path}")


@contextmanager
def _hub_dir(hub_dir):
    """torchvision finds backbone weights only in torch hub's folder: point it at the user's for a while."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub_dir or old))
    try:
        yield
    finally:
        torch.hub.set_dir(old)


def load_inception(hub_dir=None, device="cpu"):
    """torch-fidelity's InceptionV3 (the TF FID network) as `features(uint8 N×3×H×W) -> N×2048 array`.

    Whole images are resized to 299×299 inside the network, as for standard FID."""
    path = weights_path(INCEPTION_WEIGHTS, hub_dir)
    _require(path)  # before the import, so a missing file is reported the same way everywhere
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except Exception as e:  # ImportError, or its torchvision failing to load
        raise MetricUnavailable(f"torch-fidelity cannot be imported ({type(e).__name__}: {e})") from None
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    net = net.to(device)

    @torch.no_grad()
    def features(x: torch.Tensor) -> np.ndarray:
        return net(x.to(device))[0].cpu().numpy().astype(np.float64)

    return features


def load_lpips(net: str = "alex", hub_dir=None, device="cpu"):
    """The reference `lpips` package as `distance(a, b) -> float` for two RGB images (PIL or uint8)."""
    path = weights_path(LPIPS_BACKBONE_WEIGHTS[net], hub_dir)
    _require(path)
    try:
        import lpips
    except Exception as e:
        raise MetricUnavailable(f"lpips cannot be imported ({type(e).__name__}: {e})") from None
    with _hub_dir(hub_dir):  # the linear heads ship inside the package; the backbone comes from `path`
        model = lpips.LPIPS(net=net, verbose=False).to(device).eval()

    @torch.no_grad()
    def distance(a, b) -> float:
        to = lambda im: torch.from_numpy(as_array(im).transpose(2, 0, 1)).float()[None].to(device) / 127.5 - 1
        return float(model(to(a), to(b)).mean())

    return distance


def to_uint8_batch(images) -> torch.Tensor:
    """PIL images or H×W×3 uint8 arrays of one size -> uint8 N×3×H×W, the input torch-fidelity expects."""
    return torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images])).permute(0, 3, 1, 2)

"""Real-ESRGAN's second-order degradation model: clean high-res photo → realistic low-res photo.

Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data" (ICCVW 2021),
Sec. 3: the classical model (blur → resize → noise → JPEG) applied twice, then a resize to the target size with
a sinc filter (ringing and overshoot) and a last JPEG in random order. The defaults below are the paper's
settings (the same for ×2 and ×4). Images are H×W×3 float32 arrays in [0, 1] between steps.

Written from the paper's description with numpy, scipy, torch (for interpolation, which Real-ESRGAN does with
`F.interpolate`) and PIL (JPEG); no basicsr, which needs torchvision.
"""
from __future__ import annotations

import io
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import PurePath

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.signal import fftconvolve
from scipy.special import j1

from fmboost.errors import InputError

KERNEL_LIST = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class Stage:
    """One pass of the classical degradation model; names follow Real-ESRGAN's options."""
    blur_prob: float = 1.0
    kernel_list: tuple[str, ...] = KERNEL_LIST
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)  # shape of generalized Gaussian kernels
    betap_range: tuple[float, float] = (1.0, 2.0)  # shape of plateau kernels
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5  # otherwise Poisson noise
    noise_range: tuple[float, float] = (1.0, 30.0)  # σ on the 0..255 scale
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)


SECOND_STAGE = Stage(blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_prob=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
                     noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5))


@dataclass(frozen=True)
class DegradationConfig:
    first: Stage = Stage()
    second: Stage = SECOND_STAGE
    kernel_range: tuple[int, ...] = tuple(range(7, 22, 2))  # odd kernel sizes 7..21
    final_sinc_prob: float = 0.8
    resize_modes: tuple[str, ...] = field(default=RESIZE_MODES)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DegradationConfig":
        stages = {k: Stage(**{n: tuple(v) if isinstance(v, list) else v for n, v in d[k].items()})
                  for k in ("first", "second") if k in d}
        rest = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k not in stages}
        return cls(**stages, **rest)


REALESRGAN = DegradationConfig()


def image_index(relative) -> int:
    """A stable number per file name relative to its folder (not its position in the folder), so adding files
    changes no other image's degradations: `fmboost degrade` and `fmboost eval --degradation` agree on it."""
    return zlib.crc32(PurePath(relative).as_posix().encode())


def degrade_named(im: Image.Image, scale: int, seed: int, relative) -> Image.Image:
    """The degraded low-res copy of photo `relative` (its path relative to its folder), seeded: the same image
    `fmboost degrade` writes for it."""
    return degrade_image(im, scale, image_rng(seed, image_index(relative)))


def image_rng(seed: int, *index: int) -> np.random.Generator:
    """A generator for one image: the same (seed, index) always gives the same degradations."""
    return np.random.default_rng([int(s) % 2**63 for s in (seed, *index)])  # SeedSequence refuses negatives


# --- blur kernels (all sum to 1) ---------------------------------------------------------------------------------

def kernel_grid(size: int) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.stack(np.meshgrid(ax, ax), -1)  # size×size×2, (x, y) offsets from the centre


def sigma_matrix(sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    c, s = np.cos(rotation), np.sin(rotation)
    r = np.array([[c, -s], [s, c]])
    return r @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ r.T


def mahalanobis(size: int, sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    """xᵀ Σ⁻¹ x over the kernel grid: the quadratic form all three bivariate kernels are built on."""
    g, inv = kernel_grid(size), np.linalg.inv(sigma_matrix(sigma_x, sigma_y, rotation))
    return np.einsum("...i,ij,...j->...", g, inv, g)


def normalized(k: np.ndarray) -> np.ndarray:
    return k / k.sum()


def bivariate_gaussian(size, sigma_x, sigma_y, rotation=0.0) -> np.ndarray:
    return normalized(np.exp(-0.5 * mahalanobis(size, sigma_x, sigma_y, rotation)))


def bivariate_generalized_gaussian(size, sigma_x, sigma_y, rotation, beta) -> np.ndarray:
    # beta < 1 gives heavier tails than a Gaussian, beta > 1 a flatter top and sharper fall-off.
    return normalized(np.exp(-0.5 * mahalanobis(size, sigma_x, sigma_y, rotation) ** beta))


def bivariate_plateau(size, sigma_x, sigma_y, rotation, beta) -> np.ndarray:
    return normalized(1.0 / (mahalanobis(size, sigma_x, sigma_y, rotation) ** beta + 1.0))


def circular_lowpass_kernel(cutoff: float, size: int) -> np.ndarray:
    """2-D sinc (ideal circular low-pass, cutoff in rad/pixel): its ringing mimics over-sharpened photos."""
    r = np.hypot(*np.moveaxis(kernel_grid(size), -1, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        k = cutoff * j1(cutoff * r) / (2 * np.pi * r)
    k[r == 0] = cutoff ** 2 / (4 * np.pi)  # the limit at r → 0
    return normalized(k)


def random_beta(rng: np.random.Generator, beta_range) -> float:
    # Half the draws below 1 and half above, whatever the range's length on either side.
    return rng.uniform(beta_range[0], 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, beta_range[1])


def random_sinc_kernel(rng: np.random.Generator, size: int) -> np.ndarray:
    # Small kernels cannot represent very low cutoffs, so their range starts higher.
    return circular_lowpass_kernel(rng.uniform(np.pi / 3 if size < 13 else np.pi / 5, np.pi), size)


def random_blur_kernel(rng: np.random.Generator, stage: Stage, kernel_range) -> np.ndarray:
    size = int(rng.choice(kernel_range))
    if rng.uniform() < stage.sinc_prob:
        return random_sinc_kernel(rng, size)
    kind = stage.kernel_list[rng.choice(len(stage.kernel_list), p=stage.kernel_prob)]
    sigma_x = rng.uniform(*stage.blur_sigma)
    if kind.endswith("aniso"):
        sigma_y, rotation = rng.uniform(*stage.blur_sigma), rng.uniform(-np.pi, np.pi)
    else:
        sigma_y, rotation = sigma_x, 0.0
    if kind.startswith("generalized"):
        return bivariate_generalized_gaussian(size, sigma_x, sigma_y, rotation, random_beta(rng, stage.betag_range))
    if kind.startswith("plateau"):
        return bivariate_plateau(size, sigma_x, sigma_y, rotation, random_beta(rng, stage.betap_range))
    return bivariate_gaussian(size, sigma_x, sigma_y, rotation)


# --- the steps ---------------------------------------------------------------------------------------------------

def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blur with reflected borders. Convolution equals Real-ESRGAN's correlation: every kernel here is symmetric
    under x → −x. Kernels keep their own size (Real-ESRGAN zero-pads them to 21 only to batch them)."""
    p = kernel.shape[0] // 2
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="reflect")
    return fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1)).astype(np.float32)


def interpolate(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize to (h, w) like torch's F.interpolate, as Real-ESRGAN does: no antialiasing, so downscaling aliases."""
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **kw)[0].permute(1, 2, 0).numpy()


def gaussian_noise(img: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Additive white noise of std sigma/255; grey noise is the same in all channels (luminance noise)."""
    shape = (*img.shape[:2], 1) if gray else img.shape
    return img + rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma / 255)


def to_gray(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def poisson_noise(img: np.ndarray, scale: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Shot noise (variance ∝ intensity), with the photon count set by the image's number of distinct levels."""
    src = to_gray(img)[..., None] if gray else img
    src = np.clip(np.round(src * 255), 0, 255) / 255
    vals = 2 ** np.ceil(np.log2(len(np.unique(src))))
    noise = rng.poisson(src * vals) / vals - src
    return img + (noise * scale).astype(np.float32)


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    """Compress and decompress at a quality of 1..95 (PIL's default 4:2:0 chroma subsampling, like DiffJPEG)."""
    with Image.open(io.BytesIO(encode_jpeg(img, round(quality)))) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


# --- random choices of each step ----------------------------------------------------------------------------------

def random_scale(rng: np.random.Generator, stage: Stage) -> float:
    updown = rng.choice(3, p=stage.resize_prob)
    if updown == 0:
        return rng.uniform(1.0, stage.resize_range[1])
    if updown == 1:
        return rng.uniform(stage.resize_range[0], 1.0)
    return 1.0


def random_noise(img: np.ndarray, rng: np.random.Generator, stage: Stage) -> np.ndarray:
    gaussian = rng.uniform() < stage.gaussian_noise_prob
    gray = rng.uniform() < stage.gray_noise_prob
    if gaussian:
        out = gaussian_noise(img, rng.uniform(*stage.noise_range), gray, rng)
    else:
        out = poisson_noise(img, rng.uniform(*stage.poisson_scale_range), gray, rng)
    return np.clip(out, 0, 1)


def random_jpeg(img: np.ndarray, rng: np.random.Generator, stage: Stage) -> np.ndarray:
    return jpeg(np.clip(img, 0, 1), rng.uniform(*stage.jpeg_range))


def degradation_stage(img, rng, stage: Stage, config: DegradationConfig, base: tuple[int, int]) -> np.ndarray:
    """Blur, resize relative to `base` (h, w), noise. JPEG is left to the caller: the second one moves."""
    if rng.uniform() < stage.blur_prob:
        img = filter2d(img, random_blur_kernel(rng, stage, config.kernel_range))
    s = random_scale(rng, stage)
    mode = config.resize_modes[rng.choice(len(config.resize_modes))]
    img = interpolate(img, (max(1, int(base[0] * s)), max(1, int(base[1] * s))), mode)
    return random_noise(img, rng, stage)


def degrade(hr: np.ndarray, scale: int, rng: np.random.Generator,
            config: DegradationConfig = REALESRGAN) -> np.ndarray:
    """H×W×3 uint8 → (H // scale)×(W // scale)×3 uint8 (H and W are first cropped to multiples of the scale)."""
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if h < 1 or w < 1:
        raise InputError(f"a {hr.shape[1]}×{hr.shape[0]} image is too small to downscale ×{scale}")
    out = hr[:h * scale, :w * scale].astype(np.float32) / 255
    out = degradation_stage(out, rng, config.first, config, out.shape[:2])
    out = random_jpeg(out, rng, config.first)
    # The second resize is relative to the final size, so the total scale stays around 1/scale.
    out = degradation_stage(out, rng, config.second, config, (h, w))
    sinc = None  # Real-ESRGAN's "pulse": no final filter
    if rng.uniform() < config.final_sinc_prob:
        sinc = circular_lowpass_kernel(rng.uniform(np.pi / 3, np.pi), int(rng.choice(config.kernel_range)))
    mode = config.resize_modes[rng.choice(len(config.resize_modes))]

    def resize_back(x):
        x = interpolate(x, (h, w), mode)
        return x if sinc is None else filter2d(x, sinc)

    # Both orders occur in real photos: resized after compression, or compressed after resizing.
    if rng.uniform() < 0.5:
        out = random_jpeg(resize_back(out), rng, config.second)
    else:
        out = resize_back(random_jpeg(out, rng, config.second))
    return to_uint8(out)


def degrade_image(im: Image.Image, scale: int, rng: np.random.Generator,
                  config: DegradationConfig = REALESRGAN) -> Image.Image:
    return Image.fromarray(degrade(np.asarray(im.convert("RGB")), scale, rng, config))

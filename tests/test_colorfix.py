"""Colour fixes: the output keeps its detail and takes its colours from the low-res input."""
import colorsys
import math

import pytest
import torch

from fmboost.pipelines.colorfix import RGB_TO_YCBCR, YCBCR_TO_RGB, color_fix, convert, wavelet_split
from fmboost.data.photos import hue_rotation


def patch_image(rgb, size=64, seed=0):
    """A saturated colour patch with some texture, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
    return (base + 0.05 * torch.randn(1, 3, size, size, generator=g)).clamp(-1, 1)


def mean_hue(x):
    r, g, b = ((x.mean((-2, -1))[0] + 1) / 2).tolist()
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


def hue_distance(a, b):
    d = abs(a - b) % 360
    return min(d, 360 - d)


def shift_hue(x, degrees):
    grey = x.mean(1, keepdim=True)
    return (grey + torch.einsum("ij,bjhw->bihw", hue_rotation(math.radians(degrees)), x - grey)).clamp(-1, 1)


def test_wavelet_split_adds_back_up():
    x = torch.rand(2, 3, 20, 12) * 2 - 1
    detail, base = wavelet_split(x)
    assert torch.allclose(detail + base, x, atol=1e-5)
    assert base.std() < x.std()  # the base is the smooth part


@pytest.mark.parametrize("method", ["wavelet", "adain", "luma"])
@pytest.mark.parametrize("rgb", [(128, 40, 200), (210, 40, 170)], ids=["purple", "magenta"])
def test_colour_fix_restores_the_hue_of_a_shifted_patch(method, rgb):
    lowres = torch.nn.functional.avg_pool2d(patch_image(rgb), 2)
    shifted = shift_hue(patch_image(rgb, seed=1), 40)  # what a colour-shifting upscaler gives
    assert hue_distance(mean_hue(shifted), mean_hue(lowres)) > 20
    fixed = color_fix(shifted, lowres, method)
    assert fixed.shape == shifted.shape
    assert hue_distance(mean_hue(fixed), mean_hue(lowres)) < 3


@pytest.mark.parametrize("method", ["wavelet", "luma"])
def test_wavelet_and_luma_fixes_keep_fine_detail_of_the_output(method):
    lowres = torch.zeros(1, 3, 16, 16)
    output = torch.zeros(1, 3, 32, 32)
    output[..., ::2, :] = 0.5  # one-pixel grey stripes the low-res input cannot have
    fixed = color_fix(output, lowres, method)
    stripes = fixed[..., ::2, :].mean() - fixed[..., 1::2, :].mean()
    assert stripes > 0.4  # the stripes survive ...
    assert abs(fixed.mean()) < 0.05  # ... around the input's mean colour


def test_none_is_the_identity_and_unknown_names_are_refused():
    x = torch.rand(1, 3, 8, 8)
    assert color_fix(x, x[..., ::2, ::2], "none") is x
    with pytest.raises(ValueError, match="unknown colour fix"):
        color_fix(x, x, "histogram")


def test_wavelet_fix_is_the_outputs_detail_on_the_references_base():
    g = torch.Generator().manual_seed(0)
    output, lowres = torch.rand(1, 3, 40, 24, generator=g) * 2 - 1, torch.rand(1, 3, 20, 12, generator=g) * 2 - 1
    reference = torch.nn.functional.interpolate(lowres, size=(40, 24), mode="bicubic", align_corners=False)
    detail, _ = wavelet_split(output)
    _, base = wavelet_split(reference)
    assert torch.allclose(color_fix(output, lowres, "wavelet"), (detail + base).clamp(-1, 1), atol=1e-5)


def test_ycbcr_round_trip_and_grey_has_no_chroma():
    x = torch.rand(1, 3, 5, 7) * 2 - 1
    assert torch.allclose(convert(convert(x, RGB_TO_YCBCR), YCBCR_TO_RGB), x, atol=1e-5)
    grey = x[:, :1].expand(1, 3, 5, 7)
    assert convert(grey, RGB_TO_YCBCR)[:, 1:].abs().max() < 1e-5


def test_luma_fix_takes_the_chroma_of_the_input_and_the_luma_of_the_wavelet_fix():
    g = torch.Generator().manual_seed(0)
    # within ±0.3, so that no recombined pixel reaches the clamp at ±1
    output = (torch.rand(1, 3, 40, 24, generator=g) - 0.5) * 0.6
    lowres = (torch.rand(1, 3, 20, 12, generator=g) - 0.5) * 0.6
    reference = torch.nn.functional.interpolate(lowres, size=(40, 24), mode="bicubic", align_corners=False)
    fixed = convert(color_fix(output, lowres, "luma"), RGB_TO_YCBCR)
    assert torch.allclose(fixed[:, 1:], convert(reference, RGB_TO_YCBCR)[:, 1:], atol=1e-5)
    wavelet = convert(color_fix(output, lowres, "wavelet"), RGB_TO_YCBCR)
    assert torch.allclose(fixed[:, :1], wavelet[:, :1], atol=1e-5)
    # ... and it is not the wavelet fix: the output's own colour detail is gone
    assert (fixed[:, 1:] - wavelet[:, 1:]).abs().max() > 0.05


def test_luma_fix_keeps_a_grey_input_grey():
    g = torch.Generator().manual_seed(1)
    lowres = (torch.rand(1, 1, 16, 16, generator=g) - 0.5).expand(1, 3, 16, 16)
    tinted = torch.rand(1, 3, 32, 32, generator=g) - 0.5  # an output with colour the input never had
    fixed = color_fix(tinted, lowres, "luma")
    assert (fixed - fixed.mean(1, keepdim=True)).abs().max() < 1e-4

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.models.upsampling import Upsample2D

from fmboost.autoencoders.subpixel import SubpixelUpsample2D, replaceable, upsample_conv, use_subpixel_upsampling
from fmboost.autoencoders.vae import Autoencoder, small_autoencoder_config


def nearest_then_conv(x, conv):
    return conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (8, 8)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_transposed_convolution_is_nearest_then_conv(size, bias, channels_last):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=bias).double()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    out = upsample_conv(x, conv)
    assert out.shape == (2, 5, 2 * size[0], 2 * size[1])
    assert torch.allclose(out, nearest_then_conv(x, conv), atol=1e-12)


def test_gradients_reach_the_three_by_three_weights_as_before():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1).double()
    x = torch.randn(1, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    got = torch.autograd.grad(upsample_conv(x, conv).square().sum(), [x, conv.weight, conv.bias])
    want = torch.autograd.grad(nearest_then_conv(x, conv).square().sum(), [x, conv.weight, conv.bias])
    assert all(torch.allclose(g, w, atol=1e-9) for g, w in zip(got, want))


def test_an_output_size_other_than_twice_takes_the_plain_path():
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(2, 2, 3, padding=1)
    up, x = SubpixelUpsample2D(conv), torch.randn(1, 2, 4, 4)
    want = conv(F.interpolate(x, size=(9, 7), mode="nearest"))
    assert torch.allclose(up(x, output_size=(9, 7)), want)
    assert torch.allclose(up(x, output_size=(8, 8)), nearest_then_conv(x, conv), atol=1e-6)


def test_only_plain_nearest_conv_upsamplers_are_replaced():
    assert replaceable(Upsample2D(4, use_conv=True))
    assert not replaceable(Upsample2D(4, use_conv=False))
    assert not replaceable(Upsample2D(4, use_conv_transpose=True))
    assert not replaceable(Upsample2D(4, use_conv=True, norm_type="ln_norm", eps=1e-5, elementwise_affine=True))
    assert not replaceable(Upsample2D(4, use_conv=True, kernel_size=5, padding=2))


def test_a_vae_decodes_as_diffusers_does_and_saves_the_same_weights(tmp_path):
    torch.manual_seed(3)
    plain = AutoencoderKL(**small_autoencoder_config((8, 16, 16), 4)).eval()
    for p in plain.parameters():  # away from the initialisation, so that a wrong tap would show
        p.data.add_(0.05 * torch.randn_like(p))
    plain.save_pretrained(tmp_path / "vae")
    ours = Autoencoder.from_pretrained(tmp_path / "vae")
    swapped = [m for m in ours.vae.decoder.modules() if isinstance(m, SubpixelUpsample2D)]
    assert len(swapped) == 2 and not any(isinstance(m, Upsample2D) for m in ours.vae.decoder.modules())
    assert use_subpixel_upsampling(ours.vae.decoder) == 0  # nothing left to swap: loading twice is harmless
    z = torch.randn(1, 4, 5, 6)
    with torch.no_grad():
        assert torch.allclose(ours.vae.decode(z).sample, plain.decode(z).sample, atol=1e-5)
    assert ours.vae.state_dict().keys() == plain.state_dict().keys()
    ours.save_pretrained(tmp_path / "again")
    again = AutoencoderKL.from_pretrained(tmp_path / "again")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), plain.state_dict().values()))

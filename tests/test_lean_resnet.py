"""The autoencoders' lean res-blocks compute diffusers' ResnetBlock2D exactly, forward and backward."""
import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.resnet import ResnetBlock2D

from fmboost.autoencoders.lean_resnet import LeanResnetBlock2D, replaceable, use_lean_resnets
from fmboost.autoencoders.vae import Autoencoder, small_autoencoder_config


@pytest.mark.parametrize("out_channels", [6, 10])  # 10: a 1×1 shortcut, as where a VAE's width changes
@pytest.mark.parametrize("channels_last", [False, True])
def test_values_and_gradients_equal_diffusers_block(out_channels, channels_last):
    torch.manual_seed(0)
    block = ResnetBlock2D(in_channels=6, out_channels=out_channels, temb_channels=None, groups=2, eps=1e-6).double()
    for p in block.parameters():  # away from the init, so each term matters
        p.data.add_(0.1 * torch.randn_like(p))
    lean = LeanResnetBlock2D(block)
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64)
    if channels_last:
        block, x = block.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    want = block(x, None)
    got = lean(x, None)
    assert torch.allclose(got, want, atol=1e-12)
    params = [x, *block.parameters()]  # the lean block holds the same parameter tensors
    g_want = torch.autograd.grad(want.square().sum(), params)
    g_got = torch.autograd.grad(got.square().sum(), params)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(g_got, g_want))


def test_only_plain_blocks_are_replaced():
    assert replaceable(ResnetBlock2D(in_channels=4, out_channels=4, temb_channels=None, groups=2))
    assert not replaceable(ResnetBlock2D(in_channels=4, out_channels=4, temb_channels=8, groups=2))  # t-embedding
    assert not replaceable(ResnetBlock2D(in_channels=4, out_channels=4, temb_channels=None, groups=2, down=True))
    assert not replaceable(ResnetBlock2D(in_channels=4, out_channels=4, temb_channels=None, groups=2,
                                         output_scale_factor=2.0))


def test_the_autoencoder_decodes_as_diffusers_does_and_keeps_its_state_dict():
    torch.manual_seed(3)
    vae = AutoencoderKL(**small_autoencoder_config(latent_channels=4)).eval()
    keys = list(vae.state_dict())
    z = torch.randn(1, 4, 6, 6)
    x = torch.rand(1, 3, 12, 12) * 2 - 1
    with torch.no_grad():
        want_dec, want_enc = vae.decode(z).sample, vae.encode(x).latent_dist.mean
        auto = Autoencoder(vae)
        assert sum(isinstance(m, LeanResnetBlock2D) for m in vae.modules()) > 0
        assert not any(type(m) is ResnetBlock2D for m in vae.modules())
        assert torch.allclose(vae.decode(z).sample, want_dec, atol=1e-5)
        assert torch.allclose(vae.encode(x).latent_dist.mean, want_enc, atol=1e-5)
    assert list(vae.state_dict()) == keys
    assert use_lean_resnets(auto.vae) == 0  # nothing left to swap

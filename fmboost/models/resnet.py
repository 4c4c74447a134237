"""A flow network for factor-2 latents: residual convolutions at the latent's own size, t by FiLM.

With a factor-2 autoencoder the latent of a ×2 output has the low-res photo's size, so this network is placed as a
single-image super-resolution network is (EDSR, SRMD): all its capacity at the one resolution where detail is
decided, no normalisation layers (they discard the contrast that SR must keep), and no attention. The U-Net of
models/unet.py halves the resolution three times and puts most of its weights at 1/4 and 1/8 of it.

    h = conv_in([x_t, x_cond]);   h ← h + conv₂(SiLU(FiLM_t(conv₁(h))))   (× num_blocks);   v = conv_out(SiLU(h))

FiLM_t scales and shifts channels by a projection of the sinusoidal embedding of t·NUM_TRAIN_STEPS. Every block's
second convolution and conv_out start at zero, so a fresh network returns v = 0 (the identity flow x1 = x0).

`patch` p > 1 runs the blocks at 1/p of the latent's size, on its p×p patches folded into channels (pixel unshuffle
in, pixel shuffle out, as ESPCN places an SR network below the output's resolution): p² less work per channel, so
the same inference time buys p² more channels² of capacity, or the same channels run p² times faster.
"""
from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F

from fmboost.models.unet import NUM_TRAIN_STEPS


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t (in steps), as in the diffusion U-Nets."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(emb_channels, 2 * channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        # conv₂(SiLU(conv₁(h)·(1 + scale) + shift)) + h in three passes over the activations instead of four, and
        # two fewer new tensors: on a CPU these element-wise passes are memory-bound (tests/test_model.py checks the
        # equation and its gradients).
        a = F.silu(torch.addcmul(shift, self.conv1(h), 1 + scale), inplace=True)
        return self.conv2(a).add_(h)


class CFMResNet(ModelMixin, ConfigMixin):
    config_name = "config.json"

    @register_to_config
    def __init__(self, latent_channels: int = 8, channels: int = 64, num_blocks: int = 8, emb_channels: int = 128,
                 patch: int = 1):
        super().__init__()
        self.conv_in = nn.Conv2d(2 * latent_channels * patch ** 2, channels, 3, padding=1)
        self.embed = nn.Sequential(nn.Linear(emb_channels, emb_channels), nn.SiLU())
        self.blocks = nn.ModuleList(ResBlock(channels, emb_channels) for _ in range(num_blocks))
        self.conv_out = nn.Conv2d(channels, latent_channels * patch ** 2, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def size_multiple(self) -> int:
        """Latent sides must be whole patches; with patch 1, any size."""
        return self.config.patch

    def embedding(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=like.device, dtype=like.dtype).expand(like.shape[0])
        return self.embed(timestep_embedding(t * NUM_TRAIN_STEPS, self.config.emb_channels).to(like.dtype))

    def stem(self, x_t: torch.Tensor, x_cond: torch.Tensor) -> torch.Tensor:
        return self.conv_in(F.pixel_unshuffle(torch.cat([x_t, x_cond], dim=1), self.config.patch))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv_out(F.silu(h)), self.config.patch)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x_cond: torch.Tensor) -> torch.Tensor:
        emb, h = self.embedding(t, x_t), self.stem(x_t, x_cond)
        for block in self.blocks:
            h = block(h, emb)
        return self.head(h)

"""Temporal layers for CFMResNet: the temporal alignment of Video LDM (Blattmann et al., CVPR 2023, Sec. 3.1).

Video LDM turns an image model into a video model by interleaving temporal layers with its frozen spatial layers and
training only those on video. Here, after every `every`-th ResBlock of the image network (models/resnet.py; training
starts with every second, at half the cost, and the embedded default's were spread to every block with `denser`), a
residual spatio-temporal convolution sees the same pixel's neighbourhood in the neighbouring frames:

    h ← h + W_out · SiLU(Conv3d_{3×3×3}(h))   over (frames, height, width), per clip

A 3×3×3 kernel rather than a per-pixel 1D one, since in a pan the same content moves by a fraction of a latent pixel
per frame. W_out (1×1×1) starts at zero, as Video LDM's mixing does at α = 1, so a fresh wrapper computes exactly the
image network: the video model starts as the image model and training can only move it from there. No normalisation
(models/resnet.py says why).

Frames are folded into the batch, (B·F, C, H, W), as the image network takes them; `frames` (F) says how to unfold
them (default: the whole batch is one clip). The first and last frames of a clip see zero-padded neighbours.
The layers are saved as their own small folder (config.json + safetensors), `temporal/` beside a model's `cfm/`.
"""
from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F

from fmboost.errors import InputError
from fmboost.models.resnet import CFMResNet


class TemporalMix(nn.Module):
    def __init__(self, channels: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv3d(channels, hidden, kernel, padding=kernel // 2)
        self.out = nn.Conv3d(hidden, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        bf, c, height, width = h.shape
        clip = h.view(bf // frames, frames, c, height, width).transpose(1, 2)  # B, C, F, H, W
        delta = self.out(F.silu(self.conv(clip))).transpose(1, 2).reshape(bf, c, height, width)
        return h + delta


class TemporalLayers(ModelMixin, ConfigMixin):
    """One TemporalMix after each of the image network's blocks; `channels` and `num_blocks` must match it."""
    config_name = "config.json"

    @register_to_config
    def __init__(self, channels: int = 64, num_blocks: int = 8, hidden: int = 32, kernel: int = 3, every: int = 2):
        super().__init__()
        self.mixes = nn.ModuleList(TemporalMix(channels, hidden, kernel) for _ in range(num_blocks // every))

    def after(self, block: int) -> TemporalMix | None:
        """The mix that follows the image network's block `block` (0-based), if any."""
        every = self.config.every
        return self.mixes[block // every] if (block + 1) % every == 0 else None

    def denser(self, every: int) -> "TemporalLayers":
        """These layers after the same blocks, and identity mixes (W_out zero) after the blocks between, for a
        layer after every `every`-th block (a divisor of this one's): computes what these do, a start for more
        temporal capacity that keeps what these learnt."""
        c = self.config
        if c.every % every:
            raise InputError(f"temporal layers after every {c.every}th block cannot be spread to every {every}th")
        dense = TemporalLayers(c.channels, c.num_blocks, c.hidden, c.kernel, every).to(next(self.parameters()).device)
        for j, mix in enumerate(self.mixes):
            dense.mixes[(j + 1) * c.every // every - 1].load_state_dict(mix.state_dict())
        return dense

    @classmethod
    def for_network(cls, net: CFMResNet, hidden: int = 32, kernel: int = 3, every: int = 2) -> "TemporalLayers":
        check_network(net)
        return cls(net.config.channels, net.config.num_blocks, hidden, kernel, every)


def check_network(net, layers: TemporalLayers | None = None) -> None:
    if not isinstance(net, CFMResNet):
        raise InputError(f"temporal layers are made for CFMResNet networks, not {type(net).__name__}")
    if layers is not None and (layers.config.channels, layers.config.num_blocks) != \
            (net.config.channels, net.config.num_blocks):
        raise InputError(f"temporal layers for {layers.config.num_blocks} blocks of {layers.config.channels} "
                         f"channels do not fit a network of {net.config.num_blocks} blocks of "
                         f"{net.config.channels} channels")


class TemporalResNet(nn.Module):
    """The image network with the temporal layers interleaved: forward(x_t, t, x_cond, frames) on (B·F, C, H, W)."""

    def __init__(self, image: CFMResNet, temporal: TemporalLayers):
        super().__init__()
        check_network(image, temporal)
        self.image, self.temporal = image, temporal

    @property
    def size_multiple(self) -> int:
        return self.image.size_multiple

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x_cond: torch.Tensor,
                frames: int | None = None) -> torch.Tensor:
        net, frames = self.image, frames or x_t.shape[0]
        if x_t.shape[0] % frames:
            raise ValueError(f"a batch of {x_t.shape[0]} is not whole clips of {frames} frames")
        emb, h = net.embedding(t, x_t), net.stem(x_t, x_cond)
        for i, block in enumerate(net.blocks):
            h = block(h, emb)
            mix = self.temporal.after(i)
            h = h if mix is None else mix(h, frames)
        return net.head(h)

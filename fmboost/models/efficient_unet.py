"""The U-Net of the paper's own code (CompVis/fm-boosting's `EfficientUNet`), so that models trained with it run in
fmboost: `fmboost convert-compvis` maps their weights onto this module (fmboost/convert/compvis.py).

It is the ADM U-Net (Dhariwal & Nichol 2021) as that code builds it, on concat(x_t, x_cond):

    emb   = W₂·SiLU(W₁·[cos(t·ω), sin(t·ω)]),   ω_i = 10000^(−i/(C/2)),  t ∈ [0, 1] as it is (no ×1000)
    res   = skip(x) + conv₁(dropout(SiLU(GN(h)·(1 + s) + b))),  h = conv₀(SiLU(GN(x))),  (s, b) = A·SiLU(emb)
    attn  = x + P·attention(q, k, v)   (softmax, or the linear attention of Shen et al. 2021)

with GroupNorm of 32 groups everywhere, a 3×3 stem, `num_res_blocks` res-blocks per level (plus one in the decoder,
which takes the matching encoder activation concatenated), stride-2 convolutions down and nearest ×2 + 3×3
convolutions up, attention at the downsampling factors listed in `attention_ds`, res-attn-res in the middle, and an
optional `pool_factor`×`pool_factor` patchify/unpatchify around it all.

One detail is the reference's and not ADM's: the attention's tokens. Its qkv projection gives 3·heads·head_channels
rows of L = H·W positions; these are reshaped *without a transpose* to (heads, L, 3·head_channels), so a token is a
run of 3·head_channels consecutive values of a head's (channel, position)-ordered activations (for large maps: one
channel at consecutive pixels), not the features of one pixel; the output is folded back the same way. Trained
weights learned that layout, so it is kept here exactly (`tokens`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

GROUPS = 32  # the reference normalises every layer with 32 groups, whatever its width


def time_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos(t·ω), sin(t·ω)] with ω_i = max_period^(−i/(dim/2)); an odd dim gets a zero column."""
    half = dim // 2
    omega = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * omega[None]
    features = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return F.pad(features, (0, dim % 2))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, dropout: float, scale_shift: bool):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm0, self.conv0 = nn.GroupNorm(GROUPS, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb, cout * (2 if scale_shift else 1))
        self.norm1, self.conv1 = nn.GroupNorm(GROUPS, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        e = self.affine(F.silu(emb)).to(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm1(h) * (1 + scale) + shift
        else:
            h = self.norm1(h + e)
        h = self.conv1(self.dropout(F.silu(h)))
        return (x if self.skip is None else self.skip(x)) + h


class Attention(nn.Module):
    def __init__(self, channels: int, heads: int, head_channels: int, linear: bool):
        super().__init__()
        self.heads, self.head_channels, self.linear = heads, head_channels, linear
        self.norm = nn.GroupNorm(GROUPS, channels)
        self.qkv = nn.Conv1d(channels, 3 * heads * head_channels, 1)
        self.proj = nn.Conv1d(heads * head_channels, channels, 1)

    def tokens(self, qkv: torch.Tensor) -> torch.Tensor:
        """(b, 3·heads·d, L) → (b, heads, L, 3·d) by a plain reshape: the reference's layout (module docstring)."""
        return qkv.reshape(qkv.shape[0], self.heads, qkv.shape[-1], 3 * self.head_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        q, k, v = self.tokens(self.qkv(self.norm(x))).chunk(3, dim=-1)
        if self.linear:  # softmax over features for q, over tokens for k: O(L) instead of O(L²)
            context = torch.einsum("...nd,...ne->...de", k.softmax(dim=-2), v)
            h = torch.einsum("...nd,...de->...ne", q.softmax(dim=-1) / math.sqrt(self.head_channels), context)
        else:
            h = F.scaled_dot_product_attention(q, k, v)
        h = self.proj(h.reshape(b, self.heads * self.head_channels, -1))
        return (x + h).reshape(b, c, *spatial)


class Level(nn.Module):
    """One step of the encoder or decoder: a res-block with optional attention, then an optional ×2 upsampling."""

    def __init__(self, res: ResBlock, attn: Attention | None = None, up: nn.Module | None = None):
        super().__init__()
        self.res, self.attn, self.up = res, attn, up

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.up is not None:
            x = self.up(F.interpolate(x, scale_factor=2, mode="nearest"))
        return x


class Stem(nn.Module):
    """A layer that ignores the time embedding (the first convolution, the downsamplings)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class EfficientUNet(ModelMixin, ConfigMixin):
    """v(x_t, t | x_cond) with the reference's U-Net; `forward` takes what CFMUNet's takes."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, latent_channels: int = 4, in_channels: int = 8, channels: int = 128,
                 channel_mult=(1, 2, 4, 8), num_res_blocks: int = 3, attention_ds=(8,), head_channels: int = 64,
                 heads: int = 4, linear_attention: bool = False, scale_shift: bool = True,
                 conv_resample: bool = True, pool_factor: int = 1, dropout: float = 0.0):
        super().__init__()
        if in_channels not in (latent_channels, 2 * latent_channels):
            raise ValueError(f"in_channels {in_channels}: the network sees x_t ({latent_channels} channels), "
                             f"with or without x_cond concatenated")
        c, emb = channels, 4 * channels
        self.emb0, self.emb1 = nn.Linear(c, emb), nn.Linear(emb, emb)
        pooled = pool_factor > 1
        self.patch = nn.Conv2d(in_channels, c, pool_factor, stride=pool_factor) if pooled else None
        attention = lambda ch, ds, linear=linear_attention: (
            Attention(ch, heads, head_channels, linear) if ds in attention_ds else None)
        res = lambda cin, cout: ResBlock(cin, cout, emb, dropout, scale_shift)

        self.enc = nn.ModuleList([Stem(nn.Conv2d(c if pooled else in_channels, c, 3, padding=1))])
        skips, ch, ds = [c], c, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.enc.append(Level(res(ch, mult * c), attention(mult * c, ds)))
                ch = mult * c
                skips.append(ch)
            if level < len(channel_mult) - 1:
                self.enc.append(Stem(nn.Conv2d(ch, ch, 3, stride=2, padding=1) if conv_resample else
                                     nn.AvgPool2d(2)))
                skips.append(ch)
                ds *= 2

        self.mid = Level(res(ch, ch), Attention(ch, heads, head_channels, linear=False))
        self.mid_out = res(ch, ch)

        self.dec = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                block = Level(res(ch + skips.pop(), mult * c), attention(mult * c, ds))
                ch = mult * c
                if level and i == num_res_blocks:
                    block.up = nn.Conv2d(ch, ch, 3, padding=1) if conv_resample else nn.Identity()
                    ds //= 2
                self.dec.append(block)

        self.out_norm = nn.GroupNorm(GROUPS, ch)
        self.out_conv = nn.Conv2d(ch, c if pooled else latent_channels, 3, padding=1)
        self.unpatch = nn.ConvTranspose2d(c, latent_channels, pool_factor, stride=pool_factor) if pooled else None

    @property
    def size_multiple(self) -> int:
        """Latent height and width must be multiples of this (the patchify, then one halving per level but the
        last)."""
        return max(self.config.pool_factor, 1) * 2 ** (len(self.config.channel_mult) - 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x_cond: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device, dtype=x_t.dtype).expand(x_t.shape[0])
        emb = self.emb1(F.silu(self.emb0(time_features(t, self.config.channels))))
        h = torch.cat([x_t, x_cond], dim=1) if self.config.in_channels > self.config.latent_channels else x_t
        if self.patch is not None:
            h = self.patch(h)
        skips = []
        for block in self.enc:
            h = block(h, emb)
            skips.append(h)
        h = self.mid_out(self.mid(h, emb), emb)
        for block in self.dec:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        h = self.out_conv(F.silu(self.out_norm(h)))
        return h if self.unpatch is None else self.unpatch(h)

"""The VAE's res-blocks without the work that changes nothing: diffusers' ResnetBlock2D, as the autoencoders use it.

diffusers' block ends with `(x + h) / output_scale_factor`, a full-size division even when the factor is 1 (every
VAE fmboost loads), and applies SiLU out of place, allocating a feature map each time. On this project's 2-core CPU
those passes were about a tenth of a ×2 upscale. LeanResnetBlock2D computes the same
    h = conv2(dropout(SiLU(norm2(conv1(SiLU(norm1(x))))))),   out = shortcut(x) + h
with SiLU in place on the norms' fresh outputs (GroupNorm's backward reads its input, not its output) and the
residual added in place. It holds the block's own modules under the same names: state dicts, training and saving
are unchanged. Blocks with a time embedding, up/down-sampling or another scale factor keep diffusers' forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from fmboost.autoencoders.swap import swap_modules


class LeanResnetBlock2D(nn.Module):
    def __init__(self, block: ResnetBlock2D):
        super().__init__()
        self.norm1, self.conv1, self.norm2, self.conv2 = block.norm1, block.conv1, block.norm2, block.conv2
        self.dropout, self.conv_shortcut = block.dropout, block.conv_shortcut

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(self.dropout(F.silu(self.norm2(h), inplace=True)))
        return h.add_(x if self.conv_shortcut is None else self.conv_shortcut(x))


def replaceable(block: nn.Module) -> bool:
    """A VAE's plain block: no time embedding, no up/down-sampling, SiLU, GroupNorms, scale factor 1."""
    return (type(block) is ResnetBlock2D and block.time_emb_proj is None and block.upsample is None
            and block.downsample is None and block.output_scale_factor == 1
            and isinstance(block.nonlinearity, nn.SiLU) and isinstance(block.norm1, nn.GroupNorm)
            and isinstance(block.norm2, nn.GroupNorm))


def use_lean_resnets(module: nn.Module) -> int:
    """Swaps every replaceable ResnetBlock2D under `module` for LeanResnetBlock2D; returns how many."""
    return swap_modules(module, replaceable, LeanResnetBlock2D)

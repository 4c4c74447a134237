"""The CFM network: a diffusers U-Net on concat(x_t, x_cond) that returns the velocity v(x_t, t | x_cond)."""
from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config

# The discrete steps of the noise schedules (τ of the augmentation, the diffusion baseline's ε-schedule); the
# network's continuous t ∈ [0, 1] is scaled to this range, the one its sinusoidal embedding was designed for.
NUM_TRAIN_STEPS = 1000


class CFMUNet(ModelMixin, ConfigMixin):
    config_name = "config.json"

    @register_to_config
    def __init__(self, latent_channels: int = 4, channels: int = 128, channel_mult=(1, 2, 3, 4),
                 num_res_blocks: int = 3, attention_levels=(3,), head_channels: int = 64, norm_groups: int = 32,
                 dropout: float = 0.0):
        super().__init__()
        n = len(channel_mult)
        self.unet = UNet2DModel(
            in_channels=2 * latent_channels, out_channels=latent_channels,
            block_out_channels=tuple(channels * m for m in channel_mult), layers_per_block=num_res_blocks,
            down_block_types=tuple("AttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(n)),
            up_block_types=tuple("AttnUpBlock2D" if n - 1 - i in attention_levels else "UpBlock2D" for i in range(n)),
            attention_head_dim=head_channels, norm_num_groups=norm_groups, dropout=dropout)

    @property
    def size_multiple(self) -> int:
        """Latent height and width must be multiples of this (one halving per level but the last)."""
        return 2 ** (len(self.config.channel_mult) - 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x_cond: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device, dtype=x_t.dtype).expand(x_t.shape[0])
        return self.unet(torch.cat([x_t, x_cond], dim=1), t * NUM_TRAIN_STEPS).sample

"""Network presets as plain data. `faces` and `general` are the paper's U-Nets; `tiny` and `small` train on a CPU;
`sr` is the residual network of models/resnet.py, for factor-2 latents (`network` names the class)."""

PRESETS = {
    # Paper, faces: channels 128, 3 res-blocks per level, multipliers (1,2,3,4), attention at 16×16
    # (the last level of a 128×128 latent), head channels 64: ≈113 M parameters.
    "faces": dict(channels=128, channel_mult=(1, 2, 3, 4), num_res_blocks=3, attention_levels=(3,),
                  head_channels=64, norm_groups=32),
    # Paper, landscapes / general: multipliers (1,2,4,8): the paper reports ≈306 M parameters; diffusers' blocks
    # count a little more (the README's preset table is generated from this code).
    "general": dict(channels=128, channel_mult=(1, 2, 4, 8), num_res_blocks=3, attention_levels=(3,),
                    head_channels=64, norm_groups=32),
    # CPU-trainable at high latent resolution (≈4.3 M): 32 channels at the latent's own size, four levels, attention
    # only at 1/8. For factor-2 latents (512² for a 1024² image) `tiny`'s attention at 1/4 is quadratic in 128²
    # tokens; `python benchmarks/unet_cost.py` measures both (results/bench/unet_cost_cpu.json).
    "small": dict(channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=1, attention_levels=(3,),
                  head_channels=32, norm_groups=16),
    # CPU-trainable (≈4.4 M): three levels, one res-block each, attention only at the coarsest level.
    "tiny": dict(channels=64, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(2,),
                 head_channels=32, norm_groups=32),
    # Factor-2 latents have the low-res photo's size: all capacity there, as an SR network (≈0.6 M).
    "sr": dict(network="CFMResNet", channels=64, num_blocks=8),
}


def build_model(preset: str, latent_channels: int = 4, **overrides):
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    settings = {**PRESETS[preset], **overrides}
    from fmboost.models.networks import NETWORKS

    return NETWORKS[settings.pop("network", "CFMUNet")](latent_channels=latent_channels, **settings)


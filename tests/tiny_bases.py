"""Tiny random text-to-image pipelines of every family diffusers ships, built and saved by the tests (no download).

Each is the real diffusers pipeline class with its real components at toy sizes: CLIP (and T5) text encoders with
tokenizers made from a handful of letters and words, a U-Net or MM-DiT transformer, and an `AutoencoderKL` of the
family's latent channel count (4 for SD1.x/2.x and SDXL, 16 with a shift factor for SD3 and FLUX). The VAEs
downsample ×2 (two levels), so a 32 px base draws a 16×16 latent; `scaling_factor` ≠ 1 and `shift_factor` ≠ 0 so
latents scaled or shifted twice (or not at all) show in the tests.
"""
from __future__ import annotations

import json

import torch

WORDS = ("a", "photo", "of", "red", "cat", "dog")
FAMILIES = ("sd", "sdxl", "sd3", "flux")
LATENT_CHANNELS = {"sd": 4, "sdxl": 4, "sd3": 16, "flux": 16}


def tiny_vae(seed: int, latent_channels: int = 4, shift_factor: float | None = None):
    from diffusers import AutoencoderKL

    from fmboost.autoencoders.vae import small_autoencoder_config

    torch.manual_seed(seed)
    # scaling_factor ≠ 1, so latents scaled twice (or not at all) would show in the tests.
    return AutoencoderKL(**{**small_autoencoder_config((8, 16), latent_channels), "scaling_factor": 0.5,
                            "shift_factor": shift_factor})


def tiny_tokenizer(folder):
    """CLIP BPE with single letters and a few whole words: no merges needed, nothing downloaded."""
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters),
              *(w + "</w>" for w in WORDS[1:])]
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=32)


def tiny_t5_tokenizer():
    """T5's Unigram tokenizer (the `tokenizers` backend, no sentencepiece) over letters and a few words."""
    from transformers import T5Tokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), *((c, -3.0) for c in letters),
              *(("▁" + w, -1.0) for w in WORDS)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=64)


def clip_text(tokenizer, with_projection: bool = False, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1, projection_dim=32)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def t5_text(tokenizer, d_model: int, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=1,
                                   num_heads=2, relative_attention_num_buckets=8, pad_token_id=0,
                                   eos_token_id=1, decoder_start_token_id=0))


def sd_pipeline(tmp):
    """SD1.x/2.x: one CLIP text encoder, a U-Net with cross-attention, DDIM."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer = tiny_tokenizer(tmp / "tok")
    text_encoder = clip_text(tokenizer)
    unet = UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8, norm_num_groups=8)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False)
    return StableDiffusionPipeline(vae=tiny_vae(1), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def sdxl_pipeline(tmp, turbo: bool = False):
    """SDXL: two CLIP text encoders (the second with projection: pooled embedding), micro-conditioning
    (`addition_embed_type="text_time"`), Euler; `turbo` gives SDXL-Turbo's EulerAncestral with trailing steps."""
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionXLPipeline
    from diffusers import UNet2DConditionModel

    tokenizer = tiny_tokenizer(tmp / "tok")
    te1, te2 = clip_text(tokenizer, seed=0), clip_text(tokenizer, with_projection=True, seed=1)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=64,  # 32 + 32
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32, norm_num_groups=8)
    scheduler_kw = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    scheduler = (EulerAncestralDiscreteScheduler(**scheduler_kw, timestep_spacing="trailing") if turbo
                 else EulerDiscreteScheduler(**scheduler_kw, timestep_spacing="leading"))
    return StableDiffusionXLPipeline(vae=tiny_vae(2), text_encoder=te1, text_encoder_2=te2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, add_watermarker=False)


def sd3_pipeline(tmp):
    """SD3/SD3.5: two CLIP encoders with projection and T5, an MM-DiT (joint attention over text and image
    tokens, 2×2 patches), flow matching; 16-channel VAE with a shift factor."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer, t5_tokenizer = tiny_tokenizer(tmp / "tok"), tiny_t5_tokenizer()
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=16, pooled_projection_dim=64,
        pos_embed_max_size=32)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(3, 16, shift_factor=0.1), text_encoder=clip_text(tokenizer, True, seed=0), tokenizer=tokenizer,
        text_encoder_2=clip_text(tokenizer, True, seed=1), tokenizer_2=tokenizer,
        text_encoder_3=t5_text(t5_tokenizer, 64), tokenizer_3=t5_tokenizer)


def flux_pipeline(tmp, schnell: bool = False):
    """FLUX.1: CLIP (pooled) and T5, a double- and single-stream MM-DiT with RoPE over 2×2-packed latents,
    flow matching with resolution-dependent shift; FLUX.1-dev embeds the guidance scale, FLUX.1-schnell
    (timestep-distilled) does not and uses a fixed shift of 1."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer, t5_tokenizer = tiny_tokenizer(tmp / "tok"), tiny_t5_tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16 * 4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=not schnell,
        axes_dims_rope=(4, 4, 8))
    scheduler = (FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False) if schnell else
                 FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                 max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096))
    return FluxPipeline(scheduler=scheduler, vae=tiny_vae(4, 16, shift_factor=0.1), text_encoder=clip_text(tokenizer),
                        tokenizer=tokenizer, text_encoder_2=t5_text(t5_tokenizer, 32), tokenizer_2=t5_tokenizer,
                        transformer=transformer)


BUILDERS = {"sd": sd_pipeline, "sdxl": sdxl_pipeline, "sd3": sd3_pipeline, "flux": flux_pipeline}


def save_base(family: str, tmp, **kw):
    """Builds the tiny `family` pipeline and saves it as TMP/base (a folder `--base` takes)."""
    torch.manual_seed(0)
    BUILDERS[family](tmp, **kw).save_pretrained(tmp / "base")
    return tmp / "base"


def tiny_lcm_lora(base_dir, folder):
    """A random LoRA on a tiny base's U-Net attention projections, saved as diffusers saves LCM-LoRA (for SD1.5
    or SDXL, whichever the base folder holds)."""
    import peft
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(base_dir / "unet")
    torch.manual_seed(0)
    unet.add_adapter(peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    xl = unet.config.addition_embed_type == "text_time"
    (StableDiffusionXLPipeline if xl else StableDiffusionPipeline).save_lora_weights(
        folder, unet_lora_layers=peft.get_peft_model_state_dict(unet))
    return folder


def cfm_folder(path, vae):
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.pipelines.upscale import FMBoostPipeline
    from tests.conftest import tiny_unet

    torch.manual_seed(0)
    model = tiny_unet(latent_channels=vae.config.latent_channels)
    FMBoostPipeline(Autoencoder(vae), model).save_pretrained(path)
    return path

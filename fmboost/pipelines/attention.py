"""Attention scaling: run a diffusion U-Net at a resolution it was not trained at.

Self-attention over n tokens spreads its softmax over more keys than the m it saw in training, so its entropy
grows and details wash out (repeated objects, blur). Scaling the logits by log(n)/log(m) keeps the entropy at
its training level (Jin et al., "Training-free diffusion model adaptation for variable-sized text-to-image
synthesis", NeurIPS 2023). Cross-attention is left alone: its keys are the text tokens, whose number does not
change with resolution.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F


def attention_scale(n: int, m: float) -> float:
    """The factor on the attention logits with n tokens now and m at training resolution."""
    if m <= 1 or n <= 1:  # log(1) = 0: a single token has nothing to attend over, leave it alone
        return 1.0
    return math.log(n) / math.log(m)


class ScaledAttnProcessor:
    """diffusers' AttnProcessor2_0 with the self-attention logits × log(n)/log(m), m = n / area_ratio.

    `area_ratio` = (pixels now) / (pixels at training resolution); every U-Net level shrinks both token counts
    by the same factor, so one ratio serves all levels. area_ratio = 1 is the unscaled processor.
    """

    def __init__(self, area_ratio: float):
        if area_ratio <= 0:
            raise ValueError(f"area_ratio must be positive, got {area_ratio}")
        self.area_ratio = area_ratio

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:  # VAE / UNet2DModel attention works on B, C, H, W
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        is_self = encoder_hidden_states is None
        batch_size, key_length, _ = (hidden_states if is_self else encoder_hidden_states).shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if is_self:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (x.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
                             for x in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        factor = attention_scale(key_length, key_length / self.area_ratio) if is_self else 1.0
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                                       is_causal=False, scale=attn.scale * factor)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states.to(query.dtype)))  # projection, dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def attention_scaling(model: torch.nn.Module, area_ratio: float, enabled: bool = True):
    """Switches every attention layer of `model` (a diffusers U-Net) to ScaledAttnProcessor, then restores the
    processors it had (LoRA, xformers, ...)."""
    if not enabled:
        yield
        return
    previous = model.attn_processors
    model.set_attn_processor(ScaledAttnProcessor(area_ratio))
    try:
        yield
    finally:
        model.set_attn_processor(previous)

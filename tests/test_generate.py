"""`fmboost generate` end to end on a tiny random Stable Diffusion pipeline folder written by the test."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from fmboost.pipelines.attention import ScaledAttnProcessor, attention_scale, attention_scaling  # noqa: E402
from fmboost.pipelines.generate import (BoostedLatentDiffusionPipeline, cascade, describe,  # noqa: E402
                                       latent_space_mismatch)
from tests.tiny_bases import cfm_folder, tiny_lcm_lora, tiny_vae  # noqa: E402

PROMPT = "a photo of a red cat"
TINY = dict(base_size=32, base_steps=2, steps=1)  # 32 px → 16×16 latent (×2 VAE) → CFM ×2 → 64 px


@pytest.fixture(scope="module")
def pipe(base_dir, cfm_dir):
    return BoostedLatentDiffusionPipeline.from_pretrained(base_dir, cfm_dir)


def run_cli(*argv, monkeypatch):
    from fmboost.cli import main as cli

    return cli.main(["generate", *map(str, argv)])


@pytest.mark.parametrize("scale, side", [(2, 64), (4, 128)])
def test_cli_generates_x2_and_cascaded_x4_from_a_local_folder(tmp_path, base_dir, cfm_dir, monkeypatch, scale, side):
    from PIL import Image

    out = tmp_path / "out.png"
    rc = run_cli(PROMPT, "--base", base_dir, "--model", cfm_dir, "--base-size", 32, "--base-steps", 2, "--steps", 1,
                 "--scale", scale, "-o", out, monkeypatch=monkeypatch)
    assert rc == 0 and Image.open(out).size == (side, side)


def test_prompts_file_names_outputs_by_seed_and_never_overwrites(tmp_path, base_dir, cfm_dir, monkeypatch, capsys):
    (tmp_path / "prompts.txt").write_text(f"# comment\n{PROMPT}\n\na dog\n")
    args = ("--prompts", tmp_path / "prompts.txt", "--base", base_dir, "--model", cfm_dir, "--base-size", 32,
            "--base-steps", 1, "--steps", 1, "--seed", 5, "-o", tmp_path / "out")
    assert run_cli(*args, monkeypatch=monkeypatch) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["000_a_photo_of_a_red_cat_s5.png", "001_a_dog_s6.png"]
    capsys.readouterr()
    assert run_cli(*args, monkeypatch=monkeypatch) == 2
    assert "exists" in capsys.readouterr().err


def test_a_seed_reproduces_the_image_and_another_seed_changes_it(pipe):
    a, b, c = (np.asarray(pipe(PROMPT, seed=s, **TINY)) for s in (3, 3, 4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_base_latents_are_scaled_as_the_autoencoder_expects(pipe):
    """diffusers returns z·scaling_factor for output_type="latent": our decode must match the base's own image."""
    z = pipe.base_latents(PROMPT, base_steps=2, width=32, height=32, seed=0)
    ours = (pipe.decoder.decode(z)[0].permute(1, 2, 0).numpy() + 1) / 2
    theirs = pipe.base(PROMPT, num_inference_steps=2, guidance_scale=7.0, width=32, height=32, output_type="np",
                       generator=torch.Generator().manual_seed(0)).images[0]
    assert np.abs(ours - theirs).max() < 1e-4
    wrong = (pipe.decoder.decode(z * 0.5)[0].permute(1, 2, 0).numpy() + 1) / 2  # scaled once more
    assert np.abs(wrong - theirs).max() > 1e-2


def test_the_cfm_stage_really_changes_the_latent(pipe):
    z = pipe.base_latents(PROMPT, base_steps=2, width=32, height=32, seed=0)
    x0 = pipe.boost(z, pipe.stages, method="x0")
    x1 = pipe.boost(z, pipe.stages, steps=2, method="cfm")
    assert x0.shape == x1.shape == (1, 4, 32, 32) and torch.isfinite(x1).all()
    assert (x1 - x0).abs().mean() > 0.05 * x0.abs().mean()


def test_a_cfm_model_on_another_latent_space_is_refused(tmp_path, base_dir, monkeypatch, capsys):
    other = cfm_folder(tmp_path / "other_weights", tiny_vae(seed=7))  # same shape, different encoder
    wide = cfm_folder(tmp_path / "eight_channels", tiny_vae(seed=1, latent_channels=8))
    with pytest.raises(ValueError, match="different encoder weights"):
        BoostedLatentDiffusionPipeline.from_pretrained(base_dir, other)
    assert run_cli(PROMPT, "--base", base_dir, "--model", wide, "-o", tmp_path / "x.png", monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(wide) in err and str(base_dir) in err
    assert "8 latent channels" in err and "4 latent channels" in err
    assert not (tmp_path / "x.png").exists()


def test_a_lower_precision_base_still_matches_its_fp32_autoencoder(base_dir, cfm_dir):
    """A bf16 base's VAE is the fp32 autoencoder the CFM model was trained on, rounded: the guard rail compares
    encoder weights in the coarser dtype, so it accepts it, and still refuses an encoder that differs by more."""
    import copy

    p = BoostedLatentDiffusionPipeline.from_pretrained(base_dir, cfm_dir, dtype=torch.bfloat16)
    ours = p.stages[0].autoencoder
    assert p.base.unet.dtype == p.decoder.dtype == torch.bfloat16 and ours.dtype == torch.float32
    assert latent_space_mismatch(ours, p.decoder) is None
    other = copy.deepcopy(ours)
    key, weight = next((k, w) for k, w in other.vae.state_dict().items() if k.startswith("encoder."))
    weight.add_(0.1)  # the state dict shares the parameters' storage
    assert latent_space_mismatch(other, p.decoder) == f"same shape ({describe(ours)}) but different encoder " \
                                                      f"weights ({key})"


def test_the_cli_names_the_flag_of_a_scale_it_cannot_reach(tmp_path, base_dir, cfm_dir, monkeypatch, capsys):
    assert run_cli(PROMPT, "--base", base_dir, "--model", cfm_dir, "--scale", 3, "-o", tmp_path / "x.png",
                   monkeypatch=monkeypatch) == 2
    assert capsys.readouterr().err.strip() == "fmboost generate: error: --scale 3 cannot be reached with model " \
                                              "scale(s) 2"


def test_generate_shows_progress_on_stderr_and_one_clean_line_a_prompt(tmp_path, base_dir, cfm_dir, monkeypatch,
                                                                       capsys):
    assert run_cli(PROMPT, "a dog", "--base", base_dir, "--model", cfm_dir, "--base-steps", 2, "--steps", 1,
                   "--solver", "heun", "-o", tmp_path / "out", monkeypatch=monkeypatch) == 0
    out, err = capsys.readouterr()
    # 2 base steps + 1 heun step (2 evaluations) = 4, per prompt, on stderr; stdout keeps whole lines.
    assert "prompt 1/2" in err and "prompt 2/2" in err and "0/4 " in err  # the total (a fast bar may skip 4/4)
    lines = out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("loaded") and lines[1].startswith("base: ")
    assert all(" -> " in line for line in lines[2:])
    assert "\r" not in out


def test_generate_and_serve_draw_at_the_bases_training_size_by_default(tmp_path, base_dir, cfm_dir, pipe,
                                                                       monkeypatch):
    from PIL import Image

    from fmboost.serve.text import TextToImage

    assert pipe.default_size == (32, 32)  # the tiny base's U-Net: sample_size 16 × its VAE's 2
    assert TextToImage(pipe.base, {}, "base", 1, 1.0).size == pipe.default_size
    out = tmp_path / "x.png"
    assert run_cli(PROMPT, "--base", base_dir, "--model", cfm_dir, "--base-steps", 1, "--steps", 1, "-o", out,
                   monkeypatch=monkeypatch) == 0
    assert Image.open(out).size == (64, 64)  # 32 px × 2, not 512 × 2


def test_generate_model_default_says_why_it_cannot_boost_this_base(tmp_path, base_dir, monkeypatch, capsys):
    assert run_cli(PROMPT, "--base", base_dir, "--model", "default", "-o", tmp_path / "x.png",
                   monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different latent spaces" in err and "no such folder" not in err


def test_a_missing_base_says_how_to_point_at_a_local_folder(tmp_path, cfm_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty").mkdir()
    for base in ("fmboost-tests/no-such-pipeline", tmp_path / "missing", tmp_path / "empty"):
        assert run_cli(PROMPT, "--base", base, "--model", cfm_dir, "-o", tmp_path / "x.png",
                       monkeypatch=monkeypatch) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(base) in err
        assert "--base DIR" in err or "model_index.json" in err


def test_scales_and_sizes_that_cannot_work_are_refused(pipe):
    assert len(cascade(pipe.stages, 4)) == 2 and cascade(pipe.stages, None) == pipe.stages
    with pytest.raises(ValueError, match="^3 cannot be reached"):  # the pipeline names no flag; the CLI does:
        cascade(pipe.stages, 3)
    with pytest.raises(ValueError, match="multiples of"):
        pipe(PROMPT, base_size="30", **{k: v for k, v in TINY.items() if k != "base_size"})


def attention_layer(cross: bool = False):
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(16, cross_attention_dim=12 if cross else None, heads=2, dim_head=8).eval()


def reference_attention(attn, x, factor):
    """softmax(q·kᵀ · factor/√d)·v per head, written out."""
    q, k, v = (f(x).view(1, -1, 2, 8).transpose(1, 2) for f in (attn.to_q, attn.to_k, attn.to_v))
    w = torch.softmax(q @ k.transpose(-1, -2) * factor / math.sqrt(8), dim=-1)
    return attn.to_out[0]((w @ v).transpose(1, 2).reshape(1, -1, 16))


def test_attention_logits_are_scaled_by_log_n_over_log_m():
    assert attention_scale(4096, 1024) == pytest.approx(math.log(4096) / math.log(1024)) == pytest.approx(1.2)
    attn, x = attention_layer(), torch.randn(1, 64, 16) * 3
    attn.set_processor(ScaledAttnProcessor(area_ratio=4.0))  # 64 tokens now, 16 at training resolution
    with torch.no_grad():
        out, expected = attn(x), reference_attention(attn, x, math.log(64) / math.log(16))
        unscaled = reference_attention(attn, x, 1.0)
    assert torch.allclose(out, expected, atol=1e-5) and not torch.allclose(out, unscaled, atol=1e-3)


def test_attention_scaling_is_identity_when_n_equals_m_and_for_cross_attention():
    from diffusers.models.attention_processor import AttnProcessor2_0

    x, text = torch.randn(1, 64, 16) * 3, torch.randn(1, 7, 12)
    cases = ((attention_layer(), {}, 1.0), (attention_layer(True), {"encoder_hidden_states": text}, 4.0))
    for attn, kwargs, ratio in cases:
        with torch.no_grad():
            attn.set_processor(AttnProcessor2_0())
            plain = attn(x, **kwargs)
            attn.set_processor(ScaledAttnProcessor(ratio))
            assert torch.allclose(attn(x, **kwargs), plain, atol=1e-6)


def test_attention_scaling_switches_the_base_unet_and_restores_it(pipe):
    unet = pipe.base.unet
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    with attention_scaling(unet, 4.0):
        assert all(isinstance(p, ScaledAttnProcessor) for p in unet.attn_processors.values())
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before
    # At twice the training size (64 px vs 32 px) the switch changes the base's output; at training size it doesn't.
    at = lambda size, on: pipe.base_latents(PROMPT, base_steps=2, width=size, height=size, attention_scale=on)
    assert torch.allclose(at(32, True), at(32, False), atol=1e-5)
    assert (at(64, True) - at(64, False)).abs().max() > 1e-2


def test_an_lcm_lora_is_fused_into_the_base_and_switches_to_the_lcm_scheduler(tmp_path, base_dir, cfm_dir, pipe):
    pytest.importorskip("peft")
    lora = tiny_lcm_lora(base_dir, tmp_path / "lcm-lora")
    fused = BoostedLatentDiffusionPipeline.from_pretrained(base_dir, cfm_dir, lcm_lora=str(lora))
    assert type(fused.base.scheduler).__name__ == "LCMScheduler"
    name = next(n for n, _ in pipe.base.unet.named_parameters() if n.endswith("attn1.to_q.weight"))
    before, after = (dict(p.base.unet.named_parameters())[name] for p in (pipe, fused))
    assert before.shape == after.shape and not torch.allclose(before, after)  # fused: no adapter left per step
    image = fused(PROMPT, seed=0, base_size=32, base_steps=2, steps=1, guidance=1.0)
    assert image.size == (64, 64)


def test_a_missing_lcm_lora_is_one_line(tmp_path, base_dir, cfm_dir, monkeypatch, capsys):
    pytest.importorskip("peft")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no-lora"
    assert run_cli(PROMPT, "--base", base_dir, "--model", cfm_dir, "--lcm-lora", missing, "-o", tmp_path / "x.png",
                   monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and not (tmp_path / "x.png").exists()

"""Every base family diffusers ships for text to image — SD1.x/2.x, SDXL, SD3, FLUX — as a tiny random pipeline
(tests/tiny_bases.py): prepare on its VAE → train a few steps → `fmboost generate` ×2 and ×4, seeds, the latent
space guard rail, FLUX's packed latents, attention scaling where it applies, LCM-LoRA for SDXL, distilled bases,
and `fmboost serve --base` with FLUX."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from fmboost.cli.main import main  # noqa: E402
from fmboost.pipelines import bases  # noqa: E402
from fmboost.pipelines.attention import ScaledAttnProcessor, attention_scaling  # noqa: E402
from fmboost.pipelines.generate import BoostedLatentDiffusionPipeline  # noqa: E402
from fmboost.pipelines.upscale import FMBoostPipeline  # noqa: E402
from tests.conftest import random_photo  # noqa: E402
from tests.tiny_bases import BUILDERS, FAMILIES, LATENT_CHANNELS, save_base, tiny_lcm_lora  # noqa: E402

PROMPT = "a photo of a red cat"
TINY = dict(base_size=32, base_steps=2, steps=1)  # 32 px → 16×16 latent (VAE ×2) → CFM ×2 → 64 px


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Toy networks gain nothing from threads, and on a shared 2-core machine two threads wait on each other (a
    tiny U-Net's training step: 10× slower than on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i in range(2):
        random_photo(72, 88, seed=20 + i).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory, photos):
    """Per family, made once however the tests are ordered: the tiny base folder, and a CFM model prepared on its
    VAE and trained 2 steps by the CLI."""
    cache = {}

    def get(family):
        if family not in cache:
            tmp = tmp_path_factory.mktemp(family)
            base = save_base(family, tmp)
            assert main(["prepare", str(photos), "--out", str(tmp / "shards"), "--vae", str(base / "vae"),
                         "--size", "32", "--crops-per-image", "2"]) == 0
            cfg = tmp / "cfg.yaml"
            cfg.write_text("model: {channels: 8, norm_groups: 4, head_channels: 8}\nsample_every: 0\nbatch_size: 2\n")
            assert main(["train", "--config", str(cfg), "--data", str(tmp / "shards"), "--preset", "tiny",
                         "--max-steps", "2", "--out", str(tmp / "run")]) == 0
            model = tmp / "run" / "model"
            cache[family] = family, base, model, tmp, BoostedLatentDiffusionPipeline.from_pretrained(base, model)
        return cache[family]
    return get


@pytest.fixture
def trained(request, built):
    """(family, base folder, CFM model folder, work folder) of the family the test is parametrized with."""
    return built(request.param)[:4]


def families(*names):
    return pytest.mark.parametrize("trained", names, indirect=True)


@pytest.fixture
def pipe(trained, built):
    """BoostedLatentDiffusionPipeline over the family's base and its trained CFM model, loaded once."""
    return built(trained[0])[4]


@families(*FAMILIES)
def test_prepare_and_train_take_the_latent_channels_of_the_family_vae(trained, pipe):
    family, _, _, tmp = trained
    manifest = json.loads((tmp / "shards" / "manifest.json").read_text())
    unet = pipe.stages[0].model.unet.config  # the flow's U-Net: concat(x_t, x_cond) in, velocity out
    assert manifest["latent_channels"] == unet.in_channels // 2 == unet.out_channels == LATENT_CHANNELS[family]


@families(*FAMILIES)
def test_generate_x2_and_cascaded_x4(trained, capsys):
    from PIL import Image

    _, base, model, tmp = trained
    for scale, side in ((2, 64), (4, 128)):
        out = tmp / f"x{scale}.png"
        code, text, err = run(capsys, "generate", PROMPT, "--base", base, "--model", model, "--base-size", 32,
                              "--base-steps", 2, "--steps", 1, "--scale", scale, "-o", out)
        assert code == 0, err
        assert Image.open(out).size == (side, side)
        assert "2 steps" in text


@families(*FAMILIES)
def test_a_seed_reproduces_the_image_and_another_seed_changes_it(pipe):
    a, b, c = (np.asarray(pipe(PROMPT, seed=s, **TINY)) for s in (3, 3, 4))
    assert a.shape == (64, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)


@families(*FAMILIES)
def test_the_flow_gets_the_latent_the_base_itself_decodes(pipe, trained):
    """Our latent, decoded by our Autoencoder (z / scaling + shift), is the base's own image: FLUX's tokens are
    unpacked right and no family's latent is scaled or shifted twice."""
    family = trained[0]
    z = pipe.base_latents(PROMPT, base_steps=2, guidance=2.0, width=32, height=32, seed=0)
    assert z.shape == (1, LATENT_CHANNELS[family], 16, 16)
    ours = (pipe.decoder.decode(z)[0].permute(1, 2, 0).numpy() + 1) / 2
    theirs = pipe.base(PROMPT, num_inference_steps=2, guidance_scale=2.0, width=32, height=32, output_type="np",
                       generator=torch.Generator().manual_seed(0)).images[0]
    assert np.abs(ours - theirs).max() < 1e-4
    assert pipe.decoder.shift_factor == (0.1 if LATENT_CHANNELS[family] == 16 else 0.0)
    unshifted = (pipe.decoder.decode(z - pipe.decoder.shift_factor * pipe.decoder.scaling_factor)[0]
                 .permute(1, 2, 0).numpy() + 1) / 2
    assert family not in ("sd3", "flux") or np.abs(unshifted - theirs).max() > 1e-3


def test_flux_latents_unpack_and_pack_back_as_diffusers_does():
    from diffusers import FluxPipeline

    packed = torch.randn(2, 8 * 6, 64)  # 96×128 px with a ×8 VAE: 12×16 latents, 6×8 tokens of 2×2×16
    z = bases.unpack_latents(packed, width=128, height=96, downsample_factor=8)
    assert z.shape == (2, 16, 12, 16)
    assert torch.equal(z, FluxPipeline._unpack_latents(packed, 96, 128, 8))
    assert torch.equal(bases.pack_latents(z), packed)
    assert torch.equal(bases.pack_latents(z), FluxPipeline._pack_latents(z, 2, 16, 12, 16))


@pytest.fixture(scope="module")
def sd_and_flux(tmp_path_factory):
    """An SD1.5-shaped base and a FLUX-shaped one, each with a CFM model on its own VAE (untrained: the guard rail
    only reads the autoencoder)."""
    from diffusers import AutoencoderKL

    from tests.tiny_bases import cfm_folder

    out = {}
    for family in ("sd", "flux"):
        tmp = tmp_path_factory.mktemp(f"{family}_rail")
        base = save_base(family, tmp)
        out[family] = base, cfm_folder(tmp / "cfm", AutoencoderKL.from_pretrained(base / "vae"))
    return out


@pytest.mark.parametrize("model_of, base_of", [("flux", "sd"), ("sd", "flux")])
def test_a_cfm_model_of_another_family_is_refused_in_one_line_naming_both(sd_and_flux, tmp_path, capsys,
                                                                           model_of, base_of):
    model, base = sd_and_flux[model_of][1], sd_and_flux[base_of][0]
    code, _, err = run(capsys, "generate", PROMPT, "--base", base, "--model", model, "-o", tmp_path / "x.png")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(model) in lines[0] and str(base) in lines[0]
    space = {"sd": "4 latent channels, ×2 downsampling, scaling factor 0.5",
             "flux": "16 latent channels, ×2 downsampling, scaling factor 0.5, shift 0.1"}
    assert f"{space[model_of]} vs {space[base_of]}" in lines[0]
    assert not (tmp_path / "x.png").exists()


def test_the_dtype_a_base_loads_in_follows_its_family(sd_and_flux, tmp_path):
    (sd, _), (flux, _) = sd_and_flux["sd"], sd_and_flux["flux"]
    assert bases.load_dtype(flux, "cpu") == bases.load_dtype(sd, "cpu") == torch.float32
    assert bases.load_dtype(flux, "cuda") == torch.bfloat16 and bases.load_dtype(sd, "cuda") == torch.float16
    assert bases.load_dtype("black-forest-labs/FLUX.1-schnell", "cuda:0") == torch.bfloat16  # a hub id: its name
    assert bases.load_dtype(tmp_path / "missing", "cuda") == torch.float16  # loading will say what is wrong


@families("sd3")
def test_a_16_channel_model_on_another_16_channel_vae_is_refused(pipe, sd_and_flux):
    """SD3's and FLUX's VAEs have the same shape here (and in reality: 16 channels, ×8); only the weights differ."""
    with pytest.raises(ValueError, match="same shape .* but different encoder weights"):
        BoostedLatentDiffusionPipeline(pipe.base, [FMBoostPipeline.from_pretrained(sd_and_flux["flux"][1])])


# ---------------------------------------------------------------- attention scaling: U-Nets yes, MM-DiTs no

def denoiser_inputs(base, family):
    """One denoiser call's inputs, as the pipeline would build them for a 32 px image, batch 1."""
    g = torch.Generator().manual_seed(0)
    if family == "sdxl":
        text, pooled = torch.randn(1, 7, 64, generator=g), torch.randn(1, 32, generator=g)
        added = {"text_embeds": pooled, "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32]])}
        return dict(sample=torch.randn(1, 4, 16, 16, generator=g), timestep=torch.tensor(500),
                    encoder_hidden_states=text, added_cond_kwargs=added)
    if family == "sd3":
        return dict(hidden_states=torch.randn(1, 16, 16, 16, generator=g), timestep=torch.tensor([500.0]),
                    encoder_hidden_states=torch.randn(1, 7, 64, generator=g),
                    pooled_projections=torch.randn(1, 64, generator=g))
    ids = base._prepare_latent_image_ids(1, 8, 8, "cpu", torch.float32)
    return dict(hidden_states=torch.randn(1, 64, 64, generator=g), timestep=torch.tensor([0.5]),
                guidance=torch.tensor([3.5]), encoder_hidden_states=torch.randn(1, 7, 32, generator=g),
                pooled_projections=torch.randn(1, 32, generator=g), txt_ids=torch.zeros(7, 3), img_ids=ids)


# How ScaledAttnProcessor fails inside an MM-DiT: SD3's joint block unpacks (image, text) from its processor and
# gets one tensor; FLUX's FluxAttention is not diffusers' Attention (no spatial_norm, its own rotary processor).
NOT_A_DROP_IN = {"sd3": (ValueError, "not enough values to unpack"), "flux": (AttributeError, "spatial_norm")}


@families("sdxl", "sd3", "flux")
def test_the_scaled_processor_is_exact_on_a_unet_and_not_a_drop_in_for_joint_attention(pipe, trained):
    """What --help claims: at area ratio 1 (no scaling) ScaledAttnProcessor reproduces SDXL's U-Net exactly; in
    SD3's and FLUX's MM-DiT it cannot run at all (text as cross-attention keys, no joint softmax, no rotary
    embedding), so fmboost refuses --attention-scaling for them. The processors are restored either way."""
    family = trained[0]
    net = bases.denoiser(pipe.base)
    inputs = denoiser_inputs(pipe.base, family)
    with torch.no_grad():
        plain = net(**inputs, return_dict=False)[0]
        if family == "sdxl":
            with attention_scaling(net, 1.0):
                assert all(isinstance(p, ScaledAttnProcessor) for p in net.attn_processors.values())
                swapped = net(**inputs, return_dict=False)[0]
            assert torch.allclose(plain, swapped, atol=1e-5)
        else:
            error, words = NOT_A_DROP_IN[family]
            with pytest.raises(error, match=words), attention_scaling(net, 1.0):
                net(**inputs, return_dict=False)
        assert not any(isinstance(p, ScaledAttnProcessor) for p in net.attn_processors.values())
        assert torch.equal(net(**inputs, return_dict=False)[0], plain)
    assert bases.family_of(pipe.base).joint_attention == (family != "sdxl")


@families("sdxl")
def test_attention_scaling_works_on_sdxl_and_is_identity_at_its_training_size(pipe):
    at = lambda size, on: pipe.base_latents(PROMPT, base_steps=2, width=size, height=size, attention_scale=on)
    assert torch.allclose(at(32, True), at(32, False), atol=1e-5)
    assert (at(64, True) - at(64, False)).abs().max() > 1e-2


@families("sd3", "flux")
def test_attention_scaling_is_refused_for_mm_dit_in_one_line(trained, tmp_path, capsys):
    _, base, model, _ = trained
    code, _, err = run(capsys, "generate", PROMPT, "--base", base, "--model", model, "--base-size", 64,
                       "--attention-scaling", "-o", tmp_path / "x.png")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--attention-scaling" in lines[0] and "joint" in lines[0]
    assert not (tmp_path / "x.png").exists()


@families("flux")
def test_a_negative_prompt_is_refused_for_flux_in_one_line_naming_the_flag(trained, tmp_path, capsys):
    _, base, model, _ = trained
    code, _, err = run(capsys, "generate", PROMPT, "--base", base, "--model", model, "--base-size", 64,
                       "--negative", "blurry", "-o", tmp_path / "x.png")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--negative: a negative prompt is not for FLUX.1" in lines[0]
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- few-step bases

@families("sdxl")
def test_an_lcm_lora_for_sdxl_is_fused_with_lcm_scheduler_4_steps_guidance_1(trained, pipe, tmp_path, capsys):
    _, base, model, _ = trained
    pytest.importorskip("peft")
    lora = tiny_lcm_lora(base, tmp_path / "lcm-lora-sdxl")
    fused = BoostedLatentDiffusionPipeline.from_pretrained(base, model, lcm_lora=str(lora))
    assert type(fused.base.scheduler).__name__ == "LCMScheduler"
    assert bases.sampling_defaults(fused.base, base, str(lora)) == (4, 1.0)
    name = next(n for n, _ in pipe.base.unet.named_parameters() if n.endswith("attn1.to_q.weight"))
    before, after = (dict(p.base.unet.named_parameters())[name] for p in (pipe, fused))
    assert before.shape == after.shape and not torch.allclose(before, after)  # fused: no adapter left per step
    code, out, err = run(capsys, "generate", PROMPT, "--base", base, "--model", model, "--lcm-lora", lora,
                         "--base-size", 32, "--steps", 1, "-o", tmp_path / "x.png")
    assert code == 0, err
    assert "LCMScheduler, 4 steps, guidance 1" in out


@families("flux")
def test_an_lcm_lora_is_refused_for_a_flow_matching_base(trained, tmp_path, capsys):
    _, base, model, _ = trained
    code, _, err = run(capsys, "generate", PROMPT, "--base", base, "--model", model, "--lcm-lora", tmp_path / "l",
                       "-o", tmp_path / "x.png")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--lcm-lora" in lines[0] and "FLUX.1" in lines[0]


@pytest.mark.parametrize("family, kw, folder, expected, scheduler", [
    ("sd", {}, "base", (25, 7.0), "DDIMScheduler"),
    ("sdxl", {}, "base", (25, 5.0), "EulerDiscreteScheduler"),
    ("sdxl", {"turbo": True}, "sdxl-turbo", (1, 0.0), "EulerAncestralDiscreteScheduler"),
    ("sd3", {}, "stable-diffusion-3.5-large-turbo", (4, 0.0), "FlowMatchEulerDiscreteScheduler"),
    ("flux", {}, "base", (28, 3.5), "FlowMatchEulerDiscreteScheduler"),
    ("flux", {"schnell": True}, "base", (4, 0.0), "FlowMatchEulerDiscreteScheduler"),
])
def test_sampling_defaults_follow_the_family_and_distillation(tmp_path, family, kw, folder, expected, scheduler):
    """The rule in bases.sampling_defaults: FLUX.1-schnell is recognised by its transformer (no guidance
    embedding) whatever its folder is called; turbo bases by their name; the scheduler is the base's own."""
    base = BUILDERS[family](tmp_path, **kw)
    assert bases.sampling_defaults(base, tmp_path / folder) == expected
    assert type(base.scheduler).__name__ == scheduler


@families("flux")
def test_a_distilled_flux_base_runs_with_its_own_defaults(trained, tmp_path, capsys):
    """FLUX.1-schnell: no --base-steps or --guidance given, 4 steps without guidance, 256 T5 tokens; its VAE is
    FLUX's, so the FLUX model boosts it."""
    from diffusers import AutoencoderKL

    _, dev, model, _ = trained
    schnell = tmp_path / "FLUX.1-schnell"
    torch.manual_seed(0)
    flux = BUILDERS["flux"](tmp_path, schnell=True)
    flux.vae = AutoencoderKL.from_pretrained(dev / "vae")  # the same VAE as FLUX.1-dev
    flux.save_pretrained(schnell)
    assert bases.call_kwargs(flux, None) == {"max_sequence_length": 256}
    code, out, err = run(capsys, "generate", PROMPT, "--base", schnell, "--model", model, "--base-size", 32,
                         "--steps", 1, "-o", tmp_path / "x.png")
    assert code == 0, err
    assert "FluxPipeline, FlowMatchEulerDiscreteScheduler, 4 steps, guidance 0" in out
    pipe = BoostedLatentDiffusionPipeline.from_pretrained(schnell, model)  # the Python API takes the same defaults
    calls = []
    pipe.base.transformer.register_forward_hook(lambda *_: calls.append(1))
    assert pipe(PROMPT, base_size=32, steps=1).size == (64, 64) and len(calls) == 4


# ---------------------------------------------------------------- fmboost serve --base with FLUX

@families("flux")
def test_serve_text_to_image_with_a_flux_base(trained, sd_and_flux, tmp_path):
    from PIL import Image

    from tests.test_serve import Server

    pytest.importorskip("uvicorn")
    _, base, model, _ = trained
    sd_model = sd_and_flux["sd"][1]  # on SD's VAE: upscale-only beside a FLUX base
    server = Server(tmp_path / "serve", "--no-default", "--model", str(model), "--model", str(sd_model), "--base",
                    str(base), "--base-size", "32", "--base-steps", "2")
    try:
        info = server.request("/api/info")[1]["text_to_image"]
        assert info["models"] == [model.name] and (info["width"], info["height"]) == (32, 32)
        assert f"model {sd_model.name} is upscale-only: it works in another latent space" in server.log.read_text()
        jobs = [server.generate(prompt=PROMPT, steps=1, seed=s, model=model.name) for s in (3, 3)]
        assert all(j["state"] == "done" and (j["width"], j["height"]) == (64, 64) for j in jobs), jobs
        assert jobs[0]["nfe_done"] == 2 + 1  # the transformer's 2 steps, then one Euler step of the flow
        pngs = [server.request(j["result"])[1] for j in jobs]
        assert np.array_equal(*(np.asarray(Image.open(io.BytesIO(p))) for p in pngs))  # the seed decides
        refused = server.generate(prompt=PROMPT, model=model.name, negative_prompt="blurry")
        assert refused["state"] == "error" and "not for FLUX.1" in refused["message"]
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0

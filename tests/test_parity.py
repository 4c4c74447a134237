"""Parity with the paper's own code (CompVis/fm-boosting, in ../shared/reference): its network, sampler, noise
augmentation, loss and PSU beside fmboost's, on random weights of a shrunk config; and `fmboost convert-compvis`,
which makes model folders of its checkpoints. Where fmboost differs on purpose, the test shows by how much."""
from __future__ import annotations

import math
import pickle
import sys
import types
import typing

import pytest
import torch
import yaml

from tests.compvis_reference import Reference, reference_root

REFERENCE = reference_root()
pytestmark = pytest.mark.skipif(REFERENCE is None, reason="the reference code (CompVis/fm-boosting) is not in "
                                                          "../shared/reference")
pytest.importorskip("einops", reason="the reference's flow.py imports einops (pip install 'fmboost[test]')")

from fmboost.cli import main as cli  # noqa: E402
from fmboost.convert.compvis import convert_network, network_kwargs  # noqa: E402
from fmboost.flow.noise import alpha_bar, noise_augment  # noqa: E402
from fmboost.flow.objective import cfm_loss, cfm_path  # noqa: E402
from fmboost.pipelines.upscale import FMBoostPipeline  # noqa: E402
from fmboost.solvers.ode import solve  # noqa: E402

# Shrunk shapes: a 32-channel, two-level U-Net (GroupNorm(32) needs multiples of 32) with attention at 1/2 and a
# two-level first stage (×2), so a 16 px image is an 8×8 latent.
NET = dict(in_channels=8, model_channels=32, out_channels=4, num_res_blocks=1, channel_mult=[1, 2],
           attention_resolutions=[2], dropout=0.0, conv_resample=True, dim_head=8, num_heads=2,
           use_linear_attn=False, use_scale_shift_norm=True, pool_factor=-1)
# The other branches: linear attention (also at full size), additive time embedding, resampling without
# convolutions, a 2×2 patchify, dropout (off in eval).
NET_VARIANT = {**NET, "attention_resolutions": [1, 2], "use_linear_attn": True, "use_scale_shift_norm": False,
               "conv_resample": False, "pool_factor": 2, "dropout": 0.1}
DDCONFIG = dict(double_z=True, z_channels=4, resolution=32, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2],
                num_res_blocks=1, attn_resolutions=[], dropout=0.0)
SCALE_FACTOR = 0.18215


def trainer_config(net=NET, ae_ckpt=None, **params) -> dict:
    """The reference trainer's YAML, shrunk (configs/flow400_64-128/unet-base_psu.yaml's keys)."""
    first_stage = None if ae_ckpt is None else dict(target="fmboost.kl_autoencoder.AutoencoderKL",
                                                    params=dict(ckpt_path=str(ae_ckpt), ddconfig=dict(DDCONFIG),
                                                                embed_dim=4))
    return dict(model=dict(target="fmboost.trainer.TrainerFMBoost", params=dict(
        low_res_size=16, high_res_size=32, upsampling_mode="psu", upsampling_mode_context="psu",
        upsampling_mode_ca_context="identity", start_from_noise=False, noising_step=400, concat_context=True,
        ca_context=False, scale_factor=SCALE_FACTOR if first_stage else 1.0, first_stage_cfg=first_stage,
        fm_cfg=dict(target="fmboost.flow.FlowModel", params=dict(
            schedule="linear", net_cfg=dict(target="fmboost.models.unet.model.EfficientUNet", params=dict(net)))),
        **params)))


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere (the reference zero-initialises its output layers: v would be 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return module.eval()


@pytest.fixture(scope="module")
def ref():
    return Reference(REFERENCE)


@pytest.fixture(scope="module")
def ae_ckpt(ref, tmp_path_factory):
    """The reference's first stage, random, saved as its sd_ae.ckpt is (a bare LDM-layout state dict)."""
    torch.manual_seed(0)
    with pytest.warns(UserWarning):  # "No checkpoint provided. Random initialization."
        ae = ref.kl.AutoencoderKL(ddconfig=dict(DDCONFIG), embed_dim=4)
    path = tmp_path_factory.mktemp("ae") / "sd_ae.ckpt"
    torch.save(ae.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def trainer(ref, ae_ckpt):
    """The reference's Lightning module (lightning stubbed) with random online and EMA weights, as after training."""
    with ref.active():
        module = ref.trainer.instantiate_from_config(trainer_config(ae_ckpt=ae_ckpt)["model"])
    randomize(module.model.net, 1)
    randomize(module.ema_model.ema_model.net, 2)
    module.ema_model.step.fill_(1234)
    module.ema_model.initted.fill_(True)
    return module.eval()


def reference_net(ref, params, seed=0):
    return randomize(ref.unet.EfficientUNet(**params), seed)


def ours_of(reference: torch.nn.Module, params: dict):
    return convert_network({f"model.net.{k}": v for k, v in reference.state_dict().items()}, "model.net.",
                           network_kwargs(params), "test")


def test_the_reference_never_shadows_fmboost(ref):
    import fmboost

    assert REFERENCE not in __import__("pathlib").Path(fmboost.__file__).resolve().parents
    assert ref.flow.__file__.startswith(str(REFERENCE)) and "FlowModel" in vars(ref.flow)
    assert not any(name in sys.modules for name in ("model", "layers", "residual", "fmboost.trainer"))


# (a) ---------------------------------------------------------------------------------------------- the network

@pytest.mark.parametrize("params", [NET, NET_VARIANT], ids=["base", "variant"])
def test_velocity_equals_the_reference_networks(ref, params):
    theirs = reference_net(ref, params)
    ours = ours_of(theirs, params)
    g = torch.Generator().manual_seed(0)
    x_t, x_cond = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 16, 16, generator=g)
    with torch.no_grad():
        for t in (0.0, 0.1, 0.5, 0.93, 1.0):
            v = theirs(x_t, torch.full((2,), t), context=x_cond)
            assert v.abs().mean() > 1e-2  # not the zero of untrained output layers
            assert torch.allclose(ours(x_t, torch.tensor(t), x_cond), v, atol=1e-5), t
        t = torch.tensor([0.2, 0.8])  # one t per sample
        assert torch.allclose(ours(x_t, t, x_cond), theirs(x_t, t, context=x_cond), atol=1e-5)


def test_time_scale_the_reference_embeds_t_fmboosts_own_unet_1000_t(ref):
    """Both use [cos, sin] features with max period 10⁴. The reference feeds t ∈ [0, 1] as it is; fmboost's CFMUNet
    (diffusers' UNet2DModel) feeds 1000·t, the range that embedding was made for. A converted network keeps the
    reference's (models/efficient_unet.py)."""
    from fmboost.models.efficient_unet import time_features
    from tests.conftest import tiny_unet

    t, dim = torch.tensor([0.0, 0.25, 0.5, 1.0]), 32
    theirs = ref.t_emb.timestep_embedding
    assert torch.allclose(time_features(t, dim), theirs(t, dim), atol=1e-6)
    cfm = tiny_unet()
    features = cfm.unet.time_proj(t * 1000)  # what CFMUNet.forward gives its time MLP
    assert torch.allclose(features, theirs(t * 1000, features.shape[1]), atol=1e-4)
    # Over the whole of t ∈ [0, 1] the reference's features move far less than fmboost's.
    spread = lambda f: (f[-1] - f[0]).abs().mean().item()
    assert spread(theirs(t, features.shape[1])) < 0.5 * spread(features)


# (b) ---------------------------------------------------------------------------------------------- the sampler

@pytest.mark.parametrize("steps", [1, 4])
def test_euler_equals_the_reference_generate(ref, steps):
    """The reference's `num_steps` counts the points of its time grid, fmboost's `steps` the steps between them:
    reference num_steps = steps + 1 (its num_steps = 1 returns the start unchanged)."""
    theirs = reference_net(ref, NET)
    ours = ours_of(theirs, NET)
    flow = ref.flow.FlowModel(net_cfg=theirs)
    g = torch.Generator().manual_seed(1)
    x0, x_cond = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 16, 16, generator=g)
    with torch.no_grad():
        expected = flow.generate(x0, sample_kwargs=dict(num_steps=steps + 1, method="euler"), context=x_cond)
        x1, nfe = solve(lambda x, t: ours(x, t, x_cond), x0, steps, "euler")
        assert torch.equal(flow.generate(x0, sample_kwargs=dict(num_steps=1, method="euler"), context=x_cond), x0)
    assert nfe == steps and (expected - x0).abs().mean() > 1e-2
    assert torch.allclose(x1, expected, atol=1e-4)


# (c) --------------------------------------------------------------------------------------- noise augmentation

def test_noise_augmentation_equals_forward_diffusion_with_the_reference_schedule(ref):
    """fmboost's default `cosine` (Nichol & Dhariwal, s = 0.008, τ/1000) is not the reference's shifted-cosine
    log-SNR (τ/999, no offset): at τ = 400 they give different x0 for the same noise, so converted models carry
    `noise_schedule: shifted-cosine`."""
    diffusion = ref.diffusion.ForwardDiffusion()
    table = torch.tensor([alpha_bar(i, "shifted-cosine") for i in range(1000)])
    assert torch.allclose(diffusion.alpha_bar_t, table.float(), atol=1e-6)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))  # what noise_augment draws
    expected = diffusion.q_sample(x, 400, noise=noise)
    ours = noise_augment(x, 400, torch.Generator().manual_seed(3), "shifted-cosine")
    assert torch.allclose(ours, expected, atol=1e-6)
    default = noise_augment(x, 400, torch.Generator().manual_seed(3), "cosine")
    gap = (default - expected).abs().max().item()
    assert gap > 1e-3, f"ᾱ(400): reference {alpha_bar(400, 'shifted-cosine'):.4f}, fmboost {alpha_bar(400):.4f}"


# (d) ------------------------------------------------------------------------------------------ the training loss

def test_training_loss_equals_the_reference_trainers(ref, trainer):
    """One batch of pre-computed latents (the reference's README: `latent_lowres` already upsampled): the trainer's
    own get_source_and_context and loss against fmboost's cfm_loss, with the same random draws (the augmentation's
    ε, then t)."""
    ours = ours_of(trainer.model.net, NET)
    g = torch.Generator().manual_seed(4)
    x1, x_cond = torch.randn(3, 4, 16, 16, generator=g), torch.randn(3, 4, 16, 16, generator=g)
    with torch.no_grad():
        torch.manual_seed(5)
        x0, context, context_ca = trainer.get_source_and_context(x_cond, z_size=16)
        expected = trainer(x_target=x1, x_source=x0, context=context, context_ca=context_ca)
        torch.manual_seed(5)
        loss = cfm_loss(ours, x1, x_cond, sigma_min=0.0, tau=400, noise_schedule="shifted-cosine")
        torch.manual_seed(5)
        default = cfm_loss(ours, x1, x_cond, sigma_min=0.0, tau=400)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert default.item() != pytest.approx(expected.item(), rel=1e-4)  # the schedules differ (test above)


def test_sigma_min_means_another_path_in_the_reference(ref):
    """At σ_min = 0 (the reference's default, and its config's) both paths are x_t = (1 − t)·x0 + t·x1 with
    u_t = x1 − x0. Above 0 the reference adds σ_min·N(0, I) to x_t and keeps u_t; fmboost follows Lipman et al.'s
    OT path, (1 − (1 − σ_min)·t)·x0 + t·x1 with u_t = x1 − (1 − σ_min)·x0. Sampling uses neither, so a converted
    model gets σ_min = 0 and its converted_from records the reference's value."""
    g = torch.Generator().manual_seed(6)
    x0, x1, t = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g), torch.tensor([0.3, 0.7])
    plain = ref.flow.FlowModel(net_cfg=torch.nn.Identity())
    x_t, u_t = cfm_path(x0, x1, t, 0.0)
    assert torch.allclose(plain.compute_xt(x0, x1, t), x_t) and torch.allclose(plain.compute_ut(x0, x1, t), u_t)
    noisy = ref.flow.FlowModel(net_cfg=torch.nn.Identity(), sigma_min=0.1)
    x_t, u_t = cfm_path(x0, x1, t, 0.1)
    assert not torch.allclose(noisy.compute_xt(x0, x1, t), noisy.compute_xt(x0, x1, t))  # random
    assert torch.allclose(noisy.compute_ut(x0, x1, t), x1 - x0) and torch.allclose(u_t, x1 - 0.9 * x0)


# --------------------------------------------------------------------------------- PSU and the first stage

def test_psu_and_the_converted_first_stage_equal_the_references(ref, trainer):
    """The LDM-layout first stage converts exactly (diffusers' key map); the reference's PSU is bilinear with
    nothing clamped (`psu_resize: bilinear`), fmboost's own bicubic and clamped to [-1, 1]."""
    from fmboost.convert.compvis import ldm_autoencoder, tensors_of
    from fmboost.flow.upsampling import upsample_latent

    state = tensors_of(trainer.state_dict())
    ae = ldm_autoencoder(state, trainer_config(ae_ckpt="x")["model"]["params"], SCALE_FACTOR, "test")
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1
    with torch.no_grad():
        z = trainer.encode_first_stage(image)
        assert torch.allclose(ae.encode(image), z, atol=1e-5)
        assert torch.allclose(ae.decode(z, clamp=False), trainer.decode_first_stage(z), atol=1e-5)
        expected = trainer.upsample_latent(z, z_size=16, im_size=32, mode="psu")
        ours = upsample_latent(z, 2, "psu", ae, resize="bilinear")
        bicubic = upsample_latent(z, 2, "psu", ae)
    assert torch.allclose(ours, expected, atol=1e-5)
    assert (bicubic - expected).abs().max() > 1e-3


# ------------------------------------------------------------------------------------- fmboost convert-compvis

def lightning_checkpoint(trainer, path, monkeypatch, **extra):
    """What the trainer's ModelCheckpoint saves: state_dict, global_step, and hyper_parameters holding its config
    as omegaconf objects (stood in for here by a class of that name; omegaconf is not needed to read it)."""
    pkg, mod = types.ModuleType("omegaconf"), types.ModuleType("omegaconf.dictconfig")
    DictConfig = type("DictConfig", (), {"__module__": "omegaconf.dictconfig"})
    mod.DictConfig, pkg.dictconfig = DictConfig, mod
    monkeypatch.setitem(sys.modules, "omegaconf", pkg)
    monkeypatch.setitem(sys.modules, "omegaconf.dictconfig", mod)
    hparams = DictConfig()
    hparams.__dict__.update(_content={"noising_step": 400}, ref_type=typing.Any)
    torch.save({"state_dict": trainer.state_dict(), "global_step": 1234, "pytorch-lightning_version": "2.1.0",
                "hyper_parameters": {"fm_cfg": hparams}, **extra}, path)
    monkeypatch.delitem(sys.modules, "omegaconf.dictconfig")
    monkeypatch.delitem(sys.modules, "omegaconf")
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory, trainer, ae_ckpt):
    """A checkpoint and config as the reference leaves them, converted with the CLI (online and EMA weights)."""
    folder = tmp_path_factory.mktemp("compvis")
    with pytest.MonkeyPatch.context() as monkeypatch:
        ckpt = lightning_checkpoint(trainer, folder / "last.ckpt", monkeypatch)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(trainer_config(ae_ckpt=ae_ckpt)))
    outs = {}
    for weights in ("auto", "online"):
        outs[weights] = folder / weights
        assert cli.main(["convert-compvis", str(ckpt), "--config", str(config), "--out", str(outs[weights]),
                         "--weights", weights]) == 0
    return dict(ckpt=ckpt, config=config, **outs)


def test_convert_uses_ema_and_records_where_the_model_came_from(converted, trainer, capsys):
    import json

    settings = json.loads((converted["auto"] / "fmboost.json").read_text())
    source = settings["converted_from"]
    assert source["weights"].startswith("EMA") and "1234 updates" in source["weights"]
    assert source["checkpoint"] == str(converted["ckpt"].resolve()) and len(source["checkpoint_sha256"]) == 64
    assert source["config"] == str(converted["config"].resolve()) and source["global_step"] == 1234
    assert "first stage" in source["autoencoder"]
    assert settings | {"converted_from": None} == dict(
        format="fmboost", scale=2, upsampling="psu", tau=400, sigma_min=0.0, objective="cfm",
        noise_schedule="shifted-cosine", psu_resize="bilinear", color_fix="none", back_projection=0, steps=4,
        solver="euler", converted_from=None)
    # The checkpoint's omegaconf objects were read as inert stand-ins, without omegaconf and without its code.
    from fmboost.convert.compvis import Opaque, load_plain

    hparams = load_plain(converted["ckpt"])["hyper_parameters"]["fm_cfg"]
    assert isinstance(hparams, Opaque) and hparams.state["_content"] == {"noising_step": 400}
    assert "omegaconf" not in sys.modules
    pipe = FMBoostPipeline.from_pretrained(converted["auto"])
    assert type(pipe.model).__name__ == "EfficientUNet" and pipe.autoencoder.scaling_factor == SCALE_FACTOR
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        v = trainer.ema_model.ema_model.net(x, torch.full((1,), 0.5), context=x)
        assert torch.allclose(pipe.model(x, torch.tensor(0.5), x), v, atol=1e-5)


def test_converted_folder_upscales_as_the_reference_trainer_predicts(converted, trainer):
    """The trainer's whole inference (PSU through its first stage, the augmentation at step 400, Euler through
    FlowModel.generate) against the converted folder's. The trainer samples with `ema_model.model`, which is the
    *online* network (its EMA wrapper's `model` property), so it is compared with `--weights online`."""
    pipe = FMBoostPipeline.from_pretrained(converted["online"])
    z_lr = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        torch.manual_seed(3)  # the global generator from seed 3 draws what a Generator seeded 3 draws
        expected = trainer.predict_high_res_z(z_lr, 16, im_size=32, sample_kwargs=dict(num_steps=5, method="euler"))
        z, nfe = pipe.flow(pipe.upsample(z_lr), steps=4, seed=3)
    assert nfe == 4 and torch.allclose(z, expected, atol=1e-4)


def test_converted_folder_runs_in_every_command(converted, tmp_path, capsys):
    import json

    from PIL import Image

    from fmboost.serve.app import model_info
    from tests.conftest import random_photo

    out = converted["auto"]
    assert cli.main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cfm"]["network"] == "EfficientUNet"
    random_photo(16, 24).save(tmp_path / "in.png")
    assert cli.main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "up.png"), "--model", str(out),
                     "--steps", "2"]) == 0
    assert Image.open(tmp_path / "up.png").size == (48, 32)
    (tmp_path / "hr").mkdir()
    random_photo(32, 32).save(tmp_path / "hr" / "a.png")
    assert cli.main(["eval", str(tmp_path / "hr"), "--model", str(out), "--steps", "1", "--metrics", "psnr",
                     "--methods", "cfm", "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    assert (tmp_path / "eval" / "results.json").is_file()
    pipe = FMBoostPipeline.from_pretrained(out)
    assert model_info({"compvis": pipe})[0]["methods"][0] == "cfm"  # what serve offers for it
    # Fine-tuning would switch it to fmboost's schedule and PSU unseen: `train --init` refuses it in one line.
    from fmboost.training.config import TrainConfig
    from fmboost.training.train import initial_model

    with pytest.raises(ValueError, match="EfficientUNet"):
        initial_model(TrainConfig(init=str(out)), 4)


def test_generate_boosts_a_base_with_a_converted_model(tmp_path, base_dir, trainer, monkeypatch):
    """`--vae` an AutoencoderKL folder (here the tiny base's own): the config's scale_factor is the base VAE's."""
    from PIL import Image

    ckpt = lightning_checkpoint(trainer, tmp_path / "last.ckpt", monkeypatch)
    config = trainer_config(ae_ckpt="unused")
    config["model"]["params"]["scale_factor"] = 0.5  # tests/tiny_bases.py's VAEs
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["convert-compvis", str(ckpt), "--config", str(tmp_path / "config.yaml"), "--vae",
                     str(base_dir / "vae"), "--out", str(tmp_path / "model")]) == 0
    out = tmp_path / "out.png"
    assert cli.main(["generate", "a red cat", "--base", str(base_dir), "--model", str(tmp_path / "model"),
                     "--base-size", "32", "--base-steps", "1", "--steps", "1", "-o", str(out)]) == 0
    assert Image.open(out).size == (64, 64)


# ------------------------------------------------------------------------------------------------- bad input

class RunsCode:
    """A pickle that calls code when loaded: exec writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def refused(argv, capsys, out) -> str:
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))  # nothing written, no temporary left
    return err


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused_unexecuted(tmp_path, converted, capsys, how):
    marker, ckpt = tmp_path / "ran", tmp_path / "evil.ckpt"
    payload = {"state_dict": {"model.net.x": torch.zeros(1)}, "extra": RunsCode(marker)}
    if how == "torch.save":
        torch.save(payload, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps(payload))
    err = refused(["convert-compvis", str(ckpt), "--config", str(converted["config"]), "--out",
                   str(tmp_path / "out")], capsys, tmp_path / "out")
    assert "exec" in err and not marker.exists()


def broken_checkpoints(trainer):
    """name → (state_dict, what the error names)."""
    state = trainer.state_dict()
    first = next(k for k in state if k.startswith("ema_model.ema_model.net."))
    missing = {k: v for k, v in state.items() if k != first}
    reshaped = {**state, first: torch.zeros(3, 3)}
    foreign = {"encoder.weight": torch.zeros(2), "decoder.bias": torch.zeros(2)}
    return {"missing": (missing, "missing"), "reshaped": (reshaped, "another shape"),
            "not-the-trainers": (foreign, "not a checkpoint of")}


@pytest.mark.parametrize("case", ["missing", "reshaped", "not-the-trainers", "not-a-checkpoint", "wrong-config",
                                  "unknown-config-key"])
def test_bad_checkpoints_and_configs_are_one_line_and_write_nothing(tmp_path, converted, trainer, capsys, case):
    ckpt, config = converted["ckpt"], converted["config"]
    if case in ("missing", "reshaped", "not-the-trainers"):
        state, said = broken_checkpoints(trainer)[case]
        ckpt = tmp_path / "broken.ckpt"
        torch.save({"state_dict": state}, ckpt)
    elif case == "not-a-checkpoint":
        ckpt, said = tmp_path / "photo.ckpt", "cannot be read"
        ckpt.write_bytes(b"\x89PNG not a checkpoint at all")
    else:
        params = dict(NET, model_channels=64) if case == "wrong-config" else dict(NET, use_flash=True)
        said = "do not fit" if case == "wrong-config" else "use_flash"
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(trainer_config(net=params)))
    out = tmp_path / "out"
    err = refused(["convert-compvis", str(ckpt), "--config", str(config), "--out", str(out)], capsys, out)
    assert said in err


def test_a_config_fmboost_cannot_follow_is_refused(tmp_path, converted, capsys):
    for change, said in ((dict(upsampling_mode="noise_upsampling"), "upsampling_mode"),
                         (dict(ca_context=True), "cross-attention"),
                         (dict(upsampling_mode_context="bilinear"), "conditions on x0's own upsampling")):
        config = trainer_config()
        config["model"]["params"].update(change)
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        err = refused(["convert-compvis", str(converted["ckpt"]), "--config", str(tmp_path / "c.yaml"), "--out",
                       str(tmp_path / "out")], capsys, tmp_path / "out")
        assert said in err, err
    assert math.isfinite(alpha_bar(999, "shifted-cosine"))

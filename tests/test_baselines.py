"""The paper's baselines: same U-Net, data and loop; each trains, saves and samples the right shape."""
import json

import pytest
import torch

from fmboost.flow.noise import NUM_TRAIN_STEPS
from fmboost.flow.objectives import diffusion_scheduler, loss_for, sample_diffusion
from fmboost.pipelines.upscale import FMBoostPipeline
from fmboost.training.config import TrainConfig
from fmboost.training.train import train
from tests.conftest import TINY_MODEL, random_photo


@pytest.mark.parametrize("objective", ["naive-fm", "diffusion", "regression-l1", "regression-l2"])
def test_each_baseline_trains_and_upscales(tmp_path, shards_dir, objective):
    cfg = TrainConfig(data=str(shards_dir), out=str(tmp_path / objective), objective=objective, model=TINY_MODEL,
                      batch_size=4, max_steps=3, warmup_steps=1, sample_every=0, log_every=1)
    pipe = FMBoostPipeline.from_pretrained(train(cfg))
    assert pipe.config["objective"] == objective
    out = pipe(random_photo(20, 24), method=objective, steps=3)
    assert out.size == (48, 40)
    x_cond = torch.randn(1, 4, 8, 8)
    _, nfe = pipe.flow(x_cond, steps=3)
    assert nfe == (1 if objective.startswith("regression") else 3)
    with pytest.raises(ValueError, match="trained with objective"):
        pipe(random_photo(20, 24), method="cfm")


def test_losses_are_finite_and_differ_by_objective():
    model = lambda x, t, c: x * 0.5 + c * 0.1
    x1, c = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    values = {}
    for objective in ("cfm", "naive-fm", "diffusion", "regression-l1", "regression-l2"):
        loss = loss_for(objective)(model, x1, c, torch.Generator().manual_seed(0))
        assert torch.isfinite(loss)
        values[objective] = loss.item()
    assert values["regression-l2"] == pytest.approx((0.6 * c - x1).square().mean().item(), rel=1e-5)
    assert values["regression-l1"] == pytest.approx((0.6 * c - x1).abs().mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="unknown objective"):
        loss_for("gan")


def point_mass_model(c, error=0.0):
    """The ideal v-model when the data is one point c, plus a constant `error` on its output: from x_t,
    ε = (x_t − √ᾱ·c)/√(1 − ᾱ) and v = √ᾱ·ε − √(1 − ᾱ)·c."""
    alphas = diffusion_scheduler().alphas_cumprod

    def v(x, t):
        a = alphas[int(round(t.item() * NUM_TRAIN_STEPS))]
        return a.sqrt() * (x - a.sqrt() * c) / (1 - a).sqrt() - (1 - a).sqrt() * c + error
    return v


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
def test_diffusion_sampler_denoises_a_point_mass_with_the_ideal_model(kind):
    c = torch.randn(1, 4, 4, 4)
    x, nfe = sample_diffusion(point_mass_model(c), c, steps=50, kind=kind, generator=torch.Generator().manual_seed(0))
    assert nfe == 50
    assert (x - c).abs().max() < 0.05


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
def test_the_samplers_estimate_of_x1_is_no_further_off_than_the_network(kind):
    # An under-trained network is off by a little everywhere. With ε-prediction each step's estimate of x1 multiplied
    # that by √(1−ᾱ)/√ᾱ (34 at t = 980, 2e4 at t = 999): an ε-model of 750 steps gave worse samples in 50 DDIM steps
    # than in 4. With v-prediction it is √(1−ᾱ) ≤ 1 at every step of the schedule.
    c, error = torch.randn(1, 4, 4, 4), 0.05
    model = point_mass_model(c, error)
    scheduler = diffusion_scheduler(kind)
    scheduler.set_timesteps(50)
    assert scheduler.timesteps[0] == 999  # the first step is where the noise is pure
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    for t in scheduler.timesteps:
        step = scheduler.step(model(x, t.float() / NUM_TRAIN_STEPS), t, x, generator=torch.Generator().manual_seed(0))
        assert (step.pred_original_sample - c).abs().max() <= error + 1e-4
        x = step.prev_sample


def test_the_diffusion_loss_regresses_v():
    # An oracle that knows x1 returns v = √ᾱ·ε − √(1−ᾱ)·x1 = (√ᾱ·x_t − x1)/√(1−ᾱ) exactly: the loss must vanish for
    # it, and not for the ε it would have matched before.
    x1, c = torch.randn(8, 4, 8, 8, dtype=torch.float64), torch.randn(8, 4, 8, 8, dtype=torch.float64)
    alphas = diffusion_scheduler().alphas_cumprod.double()

    def oracle(x_t, t, cond, predict="v"):
        a = alphas[(t * NUM_TRAIN_STEPS).round().long()].view(-1, 1, 1, 1)
        eps = (x_t - a.sqrt() * x1) / (1 - a).sqrt()
        return (a.sqrt() * x_t - x1) / (1 - a).sqrt() if predict == "v" else eps

    loss = loss_for("diffusion")
    assert loss(oracle, x1, c, torch.Generator().manual_seed(0)).item() < 1e-12
    eps_oracle = lambda x_t, t, cond: oracle(x_t, t, cond, predict="eps")
    assert loss(eps_oracle, x1, c, torch.Generator().manual_seed(0)).item() > 0.1


def test_a_diffusion_model_that_does_not_say_it_predicts_v_is_refused(tmp_path, tiny_vae_dir, capsys):
    """Diffusion models made when the baseline regressed ε have no "prediction" in fmboost.json: sampled as v they
    would give plausible-looking garbage, so loading one stops with one line (from the command line too)."""
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.cli.main import main
    from fmboost.models.unet import CFMUNet

    folder = tmp_path / "diffusion"
    FMBoostPipeline(Autoencoder.from_pretrained(tiny_vae_dir), CFMUNet(latent_channels=4, **TINY_MODEL),
                    objective="diffusion").save_pretrained(folder)
    config = json.loads((folder / "fmboost.json").read_text())
    assert config["prediction"] == "v"
    assert FMBoostPipeline.from_pretrained(folder).config["prediction"] == "v"

    del config["prediction"]
    (folder / "fmboost.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="says nothing of what it predicts.*train it again"):
        FMBoostPipeline.from_pretrained(folder)
    random_photo(16, 16).save(tmp_path / "in.png")
    code = main(["upscale", str(tmp_path / "in.png"), "--model", str(folder), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 2 and "train it again" in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()

import math

import pytest
import torch

from fmboost.flow.noise import cosine_alpha_bar, noise_augment
from fmboost.flow.objective import cfm_loss, cfm_path


def test_path_starts_at_x0_and_ends_at_x1_without_sigma_min():
    x0, x1 = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    x_t, _ = cfm_path(x0, x1, torch.zeros(3), sigma_min=0.0)
    assert torch.equal(x_t, x0)
    x_t, _ = cfm_path(x0, x1, torch.ones(3), sigma_min=0.0)
    assert torch.allclose(x_t, x1)


def test_target_and_sigma_min_follow_the_paper():
    g = torch.Generator().manual_seed(0)
    x0, x1, s = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g), 1e-2
    t = torch.tensor([0.0, 0.3])
    x_t, u = cfm_path(x0, x1, t, sigma_min=s)
    assert torch.allclose(u, x1 - (1 - s) * x0)
    # float32's t against Python's 0.3: an absolute tolerance, or a value near zero would fail on rounding alone
    assert torch.allclose(x_t[1], (1 - (1 - s) * 0.3) * x0[1] + 0.3 * x1[1], atol=1e-6)
    assert torch.equal(x_t[0], x0[0])
    # The path's time derivative is the target: a finite difference must agree.
    h = 1e-3
    a, _ = cfm_path(x0, x1, torch.full((2,), 0.5 + h), s)
    b, _ = cfm_path(x0, x1, torch.full((2,), 0.5 - h), s)
    assert torch.allclose((a - b) / (2 * h), u, atol=1e-3)


def test_cosine_schedule_values():
    assert cosine_alpha_bar(0) == pytest.approx(1.0)
    assert cosine_alpha_bar(1000) == pytest.approx(0.0, abs=1e-6)
    expected = math.cos((0.4 + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    assert cosine_alpha_bar(400) == pytest.approx(expected)
    values = [cosine_alpha_bar(s) for s in range(0, 1001, 100)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_noise_augmentation_is_variance_preserving_and_off_at_zero():
    x = torch.randn(64, 4, 16, 16)
    assert noise_augment(x, 0) is x
    g = torch.Generator().manual_seed(0)
    y = noise_augment(x, 400, g)
    assert y.std().item() == pytest.approx(1.0, abs=0.02)
    a = cosine_alpha_bar(400)
    assert torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1].item() == pytest.approx(math.sqrt(a), abs=0.02)


def test_loss_augments_x0_but_conditions_on_the_clean_latent():
    seen = {}

    def model(x_t, t, x_cond):
        seen.update(x_t=x_t, t=t, x_cond=x_cond)
        return torch.zeros_like(x_t)

    x1, x_cond = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    g = torch.Generator().manual_seed(1)
    loss = cfm_loss(model, x1, x_cond, sigma_min=0.0, tau=400, generator=g)
    assert seen["x_cond"] is x_cond
    # Recompute with the same random draws: x0 is the augmented latent, the target is x1 − x0.
    g = torch.Generator().manual_seed(1)
    x0 = noise_augment(x_cond, 400, g)
    t = torch.rand(4, generator=g)
    assert torch.allclose(seen["t"], t)
    assert not torch.allclose(x0, x_cond)
    assert loss.item() == pytest.approx((x1 - x0).square().mean().item(), rel=1e-5)


@pytest.mark.parametrize("sigma_min", [0.0, 0.1])
def test_the_one_step_estimate_lands_on_x1_for_the_true_velocity(sigma_min):
    from fmboost.flow.objective import one_step_x1

    x0, x1, t = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.tensor([0.0, 0.4, 0.9])
    x_t, u = cfm_path(x0, x1, t, sigma_min)
    assert torch.allclose(one_step_x1(x_t, u, t, x0, sigma_min), x1, atol=1e-5)
    assert not torch.allclose(one_step_x1(x_t, 0.5 * u, t, x0, sigma_min), x1, atol=1e-2)


def test_the_pixel_term_vanishes_for_the_true_velocity_and_trains_through_the_decoder(tiny_vae_dir):
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.flow.objective import DecodedL1

    ae = Autoencoder.from_pretrained(tiny_vae_dir)
    x1, x_cond = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    pixel = DecodedL1(ae, 1.0)
    oracle = lambda x_t, t, c: x1 - x_cond  # the exact velocity of the straight path from x_cond (τ 0)
    assert cfm_loss(oracle, x1, x_cond, tau=0, pixel_loss=pixel).item() == pytest.approx(0.0, abs=1e-5)
    scale = torch.nn.Parameter(torch.tensor(0.5))
    halved = lambda x_t, t, c: scale * (x1 - x_cond)
    latent_only = cfm_loss(halved, x1, x_cond, tau=0, generator=torch.Generator().manual_seed(0))
    loss = cfm_loss(halved, x1, x_cond, tau=0, generator=torch.Generator().manual_seed(0), pixel_loss=pixel)
    assert loss.item() > latent_only.item() > 0
    loss.backward()
    assert scale.grad is not None and scale.grad.item() < 0  # both terms ask for a larger velocity
    assert all(p.grad is None for p in ae.vae.parameters())  # the decoder stays frozen


def test_only_cfm_takes_a_pixel_term():
    from fmboost.flow.objectives import loss_for

    with pytest.raises(ValueError, match="only the cfm objective"):
        loss_for("regression-l2", pixel_loss=lambda a, b: 0)

import pytest
import torch

from fmboost.flow.objective import cfm_loss
from fmboost.models.presets import PRESETS, build_model
from fmboost.solvers.ode import solve
from tests.conftest import tiny_unet


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset,paper", [("faces", 113e6), ("general", 306e6)])
def test_paper_presets_match_the_paper_parameter_counts(preset, paper):
    with torch.device("meta"):  # counts parameters without allocating 1.2 GB
        model = build_model(preset)
    assert abs(count(model) - paper) / paper < 0.10


def test_tiny_preset_is_cpu_sized_and_runs():
    model = build_model("tiny")
    assert 1e6 <= count(model) <= 5e6
    x = torch.randn(2, 4, 16, 16)
    assert model(x, torch.rand(2), x).shape == x.shape
    assert PRESETS["faces"]["head_channels"] == 64 and PRESETS["faces"]["num_res_blocks"] == 3


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge")


def test_overfitting_one_pair_makes_one_euler_step_reproduce_x1():
    torch.manual_seed(0)
    model = tiny_unet()
    x1, x_cond = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = cfm_loss(model, x1, x_cond, sigma_min=0.0, tau=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    pred, nfe = solve(lambda x, t: model(x, t, x_cond), x_cond.clone(), steps=1, solver="euler")
    assert nfe == 1
    start_error = (x_cond - x1).abs().mean()
    assert (pred - x1).abs().mean() < 0.05 * start_error

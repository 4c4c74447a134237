import math

import pytest
import torch

from fmboost.solvers.ode import EVALS_PER_STEP, solve


def test_euler_is_exact_for_a_constant_field():
    v = torch.randn(2, 3)
    x0 = torch.randn(2, 3)
    x1, nfe = solve(lambda x, t: v, x0, steps=1, solver="euler")
    assert torch.allclose(x1, x0 + v)
    assert nfe == 1


@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_error_shrinks_with_the_solver_order(solver, order):
    # dx/dt = x  ⇒  x(1) = e·x(0); halving the step divides the global error by about 2**order.
    field = lambda x, t: x
    x0 = torch.ones(1, dtype=torch.float64)
    exact = math.e
    errors = []
    for steps in (4, 8):
        x1, nfe = solve(field, x0, steps=steps, solver=solver)
        errors.append(abs(x1.item() - exact))
        assert nfe == steps * EVALS_PER_STEP[solver]
    assert errors[0] / errors[1] == pytest.approx(2 ** order, rel=0.25)


def test_dopri5_is_accurate_and_reports_nfe():
    field = lambda x, t: x * torch.cos(t)
    x1, nfe = solve(field, torch.ones(1, dtype=torch.float64), solver="dopri5")
    assert x1.item() == pytest.approx(math.exp(math.sin(1.0)), rel=1e-3)
    assert nfe >= 6  # at least one Dormand–Prince step of 6 fresh evaluations


def test_bad_solver_and_steps_are_refused():
    with pytest.raises(ValueError, match="unknown solver"):
        solve(lambda x, t: x, torch.ones(1), solver="leapfrog")
    with pytest.raises(ValueError, match="at least 1"):
        solve(lambda x, t: x, torch.ones(1), steps=0)

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


# Time-dependent fields with closed-form solutions from x(0) = 1. Not separable (dx/dt = a(t)·g(x) would give the same
# x(1) for a(t) and a(1 − t)), so a solver that reads the velocity at the wrong time ends at the wrong x(1).
TIME_DEPENDENT = {
    "x + t": (lambda x, t: x + t, 2 * math.e - 2),  # x(t) = 2e^t − t − 1
    "t² − x": (lambda x, t: t * t - x, 1 - math.exp(-1)),  # x(t) = t² − 2t + 2 − e^−t
}


@pytest.mark.parametrize("field", TIME_DEPENDENT)
@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_time_dependent_error_shrinks_with_the_solver_order(solver, order, field):
    velocity, exact = TIME_DEPENDENT[field]
    x0 = torch.ones(1, dtype=torch.float64)
    errors = [abs(solve(velocity, x0, steps=steps, solver=solver)[0].item() - exact) for steps in (8, 16)]
    assert errors[1] < 0.1 * abs(exact)  # near the solution, not merely converging somewhere
    assert errors[0] / errors[1] == pytest.approx(2 ** order, rel=0.25)


@pytest.mark.parametrize("solver,degree", [("midpoint", 1), ("heun", 1), ("rk4", 3)])
def test_solvers_integrate_polynomials_in_t_of_their_degree_exactly(solver, degree):
    """dx/dt = (degree + 1)·t^degree ⇒ x(1) = x(0) + 1: a quadrature rule of the solver's order is exact here, at
    any step count, only if each evaluation reads the time it is made at."""
    velocity = lambda x, t: (degree + 1) * t ** degree * torch.ones_like(x)
    for steps in (1, 3):
        x1, _ = solve(velocity, torch.zeros(1, dtype=torch.float64), steps=steps, solver=solver)
        assert x1.item() == pytest.approx(1.0, abs=1e-12)


def test_euler_reads_the_velocity_at_the_start_of_each_step():
    seen = []
    solve(lambda x, t: seen.append(t.item()) or torch.zeros_like(x), torch.zeros(1), steps=4, solver="euler")
    assert seen == [0.0, 0.25, 0.5, 0.75]


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

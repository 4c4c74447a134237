"""Every flow recipe under recipes/ loads and builds its network: a typo in a config that only a GPU lease or a
long run would read must fail here, on the CPU, in seconds."""
from pathlib import Path

import pytest

from fmboost.models.presets import build_model
from fmboost.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FLOW_RECIPES = sorted({*ROOT.glob("recipes/*/cfm*.yaml"), *ROOT.glob("recipes/default/design/*.yaml")} -
                      {ROOT / "recipes/default/design/base.yaml"})


def test_the_recipes_are_found():
    names = {p.name for p in FLOW_RECIPES}
    assert {"cfm.yaml", "cfm_gpu.yaml", "cfm_gpu_patch.yaml", "s2d_wide.yaml"} <= names


@pytest.mark.parametrize("path", FLOW_RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_flow_recipe_loads_and_builds_its_network(path):
    cfg = TrainConfig.load(str(path))
    model = build_model(cfg.preset, 8, **cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    if "patch" in cfg.model:
        assert model.size_multiple == cfg.model["patch"]

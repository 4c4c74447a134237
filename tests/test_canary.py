"""The embedded default model against its canary figures, in any clone (no photos needed): crops of the shipped
example upscaled by the model must give the figures in results/default_model/canary.json, within the tolerances
derived there from their measured spread. Random or scaled weights, a sampler that feeds the network 1 − t, and a
network that reads x_t as its condition (or the condition as x_t) each move them by hundreds of tolerances.

When the embedded weights are replaced on purpose, rerun `python recipes/default/canary.py` and commit the file."""
import json
import sys
from pathlib import Path

import pytest

from fmboost import DEFAULT_MODEL
from fmboost.pipelines.upscale import FMBoostPipeline

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "results" / "default_model" / "canary.json"
sys.path.insert(0, str(ROOT / "recipes" / "default"))
import canary  # noqa: E402

RERUN = "rerun `python recipes/default/canary.py` and commit results/default_model/canary.json"


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(RAW.read_text())


def test_the_shipped_example_is_the_one_the_figures_were_measured_on(raw):
    st = raw["settings"]
    assert canary.sha256(ROOT / st["source"]) == st["source_sha256"], f"{st['source']} changed: {RERUN}"


def test_the_default_model_reproduces_its_canary_figures(raw):
    st, tolerance = raw["settings"], raw["tolerance"]
    pipe = FMBoostPipeline.from_pretrained(DEFAULT_MODEL)
    boxes = [c["box"] for c in raw["crops"]]
    wrong = []
    for want, (x, hr) in zip(raw["crops"], canary.crops(ROOT, boxes)):
        got = canary.figures(pipe, x, hr, st["steps"])
        wrong += [f"crop {want['box']}: {name} {got[name]:.7g}, recorded {want[name]:.7g} ± {tolerance[name]:.2g}"
                  for name in tolerance if abs(got[name] - want[name]) > tolerance[name]]
    if wrong:
        same = canary.weights_sha256(Path(DEFAULT_MODEL)) == st["weights_sha256"]
        why = ("the weights are those the figures were measured with, so the code now computes something else" if
               same else f"the embedded weights are not those the figures were measured with: if replaced on "
                         f"purpose, {RERUN}")
        pytest.fail(f"{why}:\n" + "\n".join(wrong))


def test_every_recorded_sabotage_moved_every_crop_by_more_than_twice_the_tolerance(raw):
    """The tolerances in the file are tight enough to see what the test exists to catch: the script measured how
    far each sabotage moves each figure, and a tolerance widened by hand past that fails here."""
    names = {"random weights", "weights x 0.5", "fed 1 - t", "x_t read as the condition",
             "the condition read as x_t"}
    moved, tolerance = raw["sabotages"], raw["tolerance"]
    assert set(moved) == names
    for name, per_crop in moved.items():
        assert len(per_crop) == len(raw["crops"])
        for m in per_crop:
            assert max(m[f] / tolerance[f] for f in tolerance) > 2, name

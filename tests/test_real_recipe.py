"""recipes/real/choose_steps.py: the `real` model's sampling steps, chosen on held-back training photos by the
default's rule."""
import importlib.util
import json
import shutil
from pathlib import Path

from tests.conftest import random_photo

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "real" / "choose_steps.py"


def recipe():
    spec = importlib.util.spec_from_file_location("choose_steps", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rule_takes_the_fewest_steps_within_the_tie_of_the_best():
    choose = recipe().choose
    assert choose([{"steps": 1, "psnr": 22.131}, {"steps": 4, "psnr": 22.135}])["steps"] == 1
    assert choose([{"steps": 1, "psnr": 22.0}, {"steps": 4, "psnr": 22.1}])["steps"] == 4


def test_it_scores_the_held_back_photos_and_writes_the_choice_into_the_model(tmp_path, tiny_model_dir):
    from fmboost.data.model_config import ModelConfig
    from fmboost.data.photos import split_photos

    for folder in ("train", "train_hr"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    for i in range(20):  # every 10th is held back: 2 photos
        random_photo(48, 64, seed=i).save(tmp_path / "data" / "train" / f"p{i:02d}.png")
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    results = tmp_path / "heldback.json"
    choose_steps = recipe()
    assert choose_steps.main(["--data", str(tmp_path / "data"), "--model", str(model), "--steps", "1,2",
                          "--photos", "2", "--results", str(results)]) == 0
    rows = json.loads(results.read_text())
    _, held = split_photos([str(tmp_path / "data" / "train"), str(tmp_path / "data" / "train_hr")], 10)
    assert rows["images"] == [p.stem for p in held] and len(held) == 2 and [r["steps"] for r in rows["results"]] == [1, 2]
    chosen = choose_steps.choose(rows["results"])["steps"]
    assert ModelConfig.read(model).steps == chosen
    made = json.loads((model / "training.json").read_text())["after_training"]
    assert made["steps"] == chosen and "results/real/heldback_steps.json" in made["why"]
    assert choose_steps.main(["--data", str(tmp_path / "data"), "--model", str(model), "--photos", "3",
                          "--results", str(results)]) == 2  # too few held-back photos: said, nothing run


def test_cascade_compares_another_models_own_x4_as_upscale_runs_it(tmp_path, tiny_model_dir):
    """recipes/real/cascade.py --compare LABEL=MODEL: a ×2 folder's ×4 is two passes, the second by its own
    next_model, as `fmboost upscale --model MODEL --scale 4` runs it."""
    import numpy as np

    from fmboost.data.images import resize_by
    from fmboost.pipelines.upscale import FMBoostPipeline

    spec = importlib.util.spec_from_file_location("cascade_recipe", RECIPE.parent / "cascade.py")
    cascade = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cascade)
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    pipe, image = FMBoostPipeline.from_pretrained(model), random_photo(16, 24, seed=3)
    out = cascade.own_x4(str(model))(image)
    assert out.size == (96, 64)
    assert np.array_equal(np.asarray(out), np.asarray(pipe.upscale(pipe.upscale(image)[0])[0]))
    detail = cascade.own_x4(str(model), tau=300)(image)  # --taus: `--tau T` on every pass, as upscale gives it
    assert np.array_equal(np.asarray(detail), np.asarray(pipe.upscale(pipe.upscale(image, tau=300)[0], tau=300)[0]))
    assert not np.array_equal(np.asarray(detail), np.asarray(out))
    assert cascade.compare_target(f"{model}@300") == (str(model), 300.0)  # --compare LABEL=MODEL@T
    assert cascade.compare_target("runs/x4") == ("runs/x4", None)
    settings = json.loads((model / "fmboost.json").read_text())
    (model / "fmboost.json").write_text(json.dumps({**settings, "next_model": "bicubic"}))
    then_bicubic = np.asarray(resize_by(pipe.upscale(image)[0], 2, "bicubic"))
    assert np.array_equal(np.asarray(cascade.own_x4(str(model))(image)), then_bicubic)

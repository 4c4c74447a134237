"""One owner per setting (issue 23): a model folder's settings live in its ModelConfig, read once from fmboost.json;
the command line, the pipelines and serve ask it for the defaults the user did not give."""
import json
import shutil

import pytest

from fmboost.cli.main import main
from fmboost.data.model_config import ModelConfig
from fmboost.errors import FmboostError
from tests.conftest import random_photo


@pytest.fixture
def own_defaults_dir(tmp_path, tiny_model_dir):
    """The tiny model, with its own default steps and solver in fmboost.json."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "fmboost.json").read_text())
    (folder / "fmboost.json").write_text(json.dumps({**config, "steps": 1, "solver": "midpoint"}))
    return folder


def test_a_model_folder_carries_its_own_steps_and_solver(own_defaults_dir, capsys):
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline.from_pretrained(own_defaults_dir)
    assert (pipe.config.steps, pipe.config.solver) == (1, "midpoint")
    image = random_photo(16, 16)
    assert pipe.upscale(image)[1] == 2  # one midpoint step: two network evaluations
    assert pipe.upscale(image, steps=3)[1] == 6 and pipe.upscale(image, solver="euler")[1] == 1  # flags win
    assert main(["info", str(own_defaults_dir)]) == 0
    assert "1 step(s) of midpoint" in capsys.readouterr().out


def test_save_and_load_keep_every_setting(tmp_path, own_defaults_dir):
    from fmboost.pipelines.upscale import FMBoostPipeline

    config = json.loads((own_defaults_dir / "fmboost.json").read_text())
    (own_defaults_dir / "fmboost.json").write_text(json.dumps({**config, "made_by": "a newer fmboost"}))
    pipe = FMBoostPipeline.from_pretrained(own_defaults_dir)
    pipe.save_pretrained(tmp_path / "again")
    again = ModelConfig.read(tmp_path / "again")
    assert again == pipe.config and again.extra == {"made_by": "a newer fmboost"}
    assert again.steps == 1 and again["solver"] == "midpoint" and again.get("nothing", 7) == 7


@pytest.mark.parametrize("text", ['{"scale": 2, "tau"', "[1, 2]", '{"steps": 0}', '{"scale": "two"}'])
def test_a_damaged_fmboost_json_names_its_path_in_one_line(tmp_path, tiny_model_dir, capsys, text):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "fmboost.json").write_text(text)
    with pytest.raises(FmboostError) as e:
        ModelConfig.read(folder)
    assert str(folder / "fmboost.json") in str(e.value) and "\n" not in str(e.value)
    random_photo(16, 16).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder / "fmboost.json") in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_model_is_resolved_and_its_config_read_once_per_load(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import fmboost.cli.common as common
    import fmboost.data.sources as sources
    import fmboost.pipelines.upscale as upscale

    resolved, read = [], []
    real_resolve, real_read = sources.resolve_model, ModelConfig.read.__func__

    def counting_resolve(name):
        resolved.append(name)
        return real_resolve(name)

    for module in (common, sources, upscale):
        monkeypatch.setattr(module, "resolve_model", counting_resolve)
    monkeypatch.setattr(ModelConfig, "read", classmethod(lambda cls, f: read.append(f) or real_read(cls, f)))
    random_photo(16, 16).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "--model", str(tiny_model_dir), "--steps", "1"]) == 0
    assert [str(r) for r in resolved].count(str(tiny_model_dir)) == 1 and len(read) == 1  # (its autoencoder/ is
    # resolved on its own)


def test_serve_starts_from_the_models_own_steps_and_solver(own_defaults_dir):
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.serve.app import Limits, parse_flow

    models = {"mine": FMBoostPipeline.from_pretrained(own_defaults_dir)}
    flow = parse_flow({}, models, Limits(), ("euler", "midpoint", "heun"))
    assert (flow["steps"], flow["solver"]) == (1, "midpoint")
    assert parse_flow({"steps": "3", "solver": "heun"}, models, Limits(), ("euler", "heun"))["steps"] == 3

"""Fine-tuning a model's flow for its one Euler step (fmboost/training/onestep.py, recipes/default/train_onestep.py)."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from fmboost.data.files import sha256


def config(tmp_path, model, photos, **changes):
    from fmboost.training.onestep import OneStepConfig

    settings = dict(model=str(model), photos=(str(photos),), out=str(tmp_path / "run"), crop=32, pairs=8, batch=8,
                    steps=30, lr=3e-3, warmup=1, ema_decay=0.0, checkpoint_every=30, holdout_every=0, bf16=False)
    return OneStepConfig(**{**settings, **changes})


def test_the_one_step_learns_the_photos_and_the_autoencoder_stays(tmp_path, tiny_model_dir, photos_dir):
    from fmboost.models.networks import load_network
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.training.onestep import batch, one_step_loss, train_one_step

    cfg = config(tmp_path, tiny_model_dir, photos_dir, keep_weight=0.0)
    made = train_one_step(cfg)
    pairs = load_file(str(tmp_path / "run" / "pairs.safetensors"))
    assert {k: v.shape[0] for k, v in pairs.items()} == {"x_cond": 8, "x1": 8, "x_lr": 8, "x": 8}
    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir).channels_last(False)
    (x_cond, _, x_lr, x), _ = batch(pairs, cfg, 0)
    with torch.no_grad():
        before = one_step_loss(pipe.model, pipe.autoencoder, x_cond, x_lr, x, pipe.config.color_fix).item()
        after = one_step_loss(load_network(made), pipe.autoencoder, x_cond, x_lr, x, pipe.config.color_fix).item()
    assert after < 0.9 * before
    how = json.loads((made / "training.json").read_text())
    assert how["one_step_steps"] == 30
    assert how["started_from_sha256"] == sha256(tiny_model_dir / "cfm" / "diffusion_pytorch_model.safetensors")


def test_the_keep_term_holds_the_network_where_it_does_not_learn(tmp_path, tiny_model_dir, photos_dir):
    """Away from the clean start (noised x0, t > 0) the fine-tuned network stays nearer the one it started from with
    the keep term than without."""
    from fmboost.models.networks import load_network
    from fmboost.training.onestep import batch, keep_loss, train_one_step

    drift = {}
    for weight in (0.0, 10.0):
        cfg = config(tmp_path / str(weight), tiny_model_dir, photos_dir, keep_weight=weight)
        made = train_one_step(cfg)
        teacher, student = load_network(tiny_model_dir / "cfm"), load_network(made)
        pairs = load_file(str(tmp_path / str(weight) / "run" / "pairs.safetensors"))
        with torch.no_grad():
            drift[weight] = sum(keep_loss(student, teacher, *batch(pairs, cfg, 1000 + k)[0][:2], cfg,
                                          batch(pairs, cfg, 1000 + k)[1]).item() for k in range(4))
    assert drift[10.0] < 0.5 * drift[0.0]


def test_the_one_step_loss_scores_the_output_as_the_pipeline_makes_it(tiny_model_dir):
    """One Euler step of the pipeline's own sampler from the clean start, finished as FMBoostPipeline.finish
    finishes it (without its clamp of the decoded pixels, which would stop the gradient where they overshoot)."""
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.training.onestep import one_step_loss

    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir).channels_last(False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the tiny network's last layer starts at zero (v = 0): give it a velocity
        for weight in pipe.model.parameters():
            weight.add_(0.05 * torch.randn(weight.shape, generator=g))
    x_lr = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1
    x = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    for k in (0, 1):
        pipe.config = pipe.config.replace(color_fix="luma", back_projection=k, tau=0)
        with torch.no_grad():
            x_cond = pipe.condition(x_lr)
            decoded = pipe.autoencoder.decode
            pipe.autoencoder.decode = lambda z: decoded(z, clamp=False)
            want = (pipe.finish(pipe.flow(x_cond, steps=1)[0], x_lr) - x).abs().mean()
            pipe.autoencoder.decode = decoded
            got = one_step_loss(pipe.model, pipe.autoencoder, x_cond, x_lr, x, "luma", k)
        assert torch.allclose(got, want, atol=1e-5)


def test_the_recipe_resumes_refuses_a_used_folder_and_installs_only_a_finished_run(tmp_path, tiny_model_dir,
                                                                                   photos_dir, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "train_onestep", Path(__file__).resolve().parents[1] / "recipes" / "default" / "train_onestep.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    flow = model / "cfm" / "diffusion_pytorch_model.safetensors"
    before, autoencoder = sha256(flow), sha256(model / "autoencoder" / "diffusion_pytorch_model.safetensors")
    common = [str(photos_dir), "--model", str(model), "--crop", "32", "--pairs", "4", "--batch", "2",
              "--checkpoint-every", "1", "--fp32", "--out", str(tmp_path / "run")]
    assert recipe.main(common + ["--steps", "3", "--max-minutes", "0", "--install"]) == 0
    assert "not installed" in capsys.readouterr().out and sha256(flow) == before
    assert recipe.main(common + ["--steps", "3"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert recipe.main(common + ["--steps", "3", "--resume", "--install"]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]
    assert "resumed" in capsys.readouterr().out
    assert sha256(flow) != before
    (tmp_path / "run" / "cfm" / "training.json").unlink()
    assert recipe.main(common + ["--steps", "3", "--resume"]) == 0  # finished: exported again, not trained on
    assert json.loads((tmp_path / "run" / "cfm" / "training.json").read_text())["one_step_steps"] == 3
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]
    assert sha256(model / "autoencoder" / "diffusion_pytorch_model.safetensors") == autoencoder
    assert recipe.main([str(tmp_path / "nowhere"), "--model", str(model), "--out", str(tmp_path / "x")]) == 2


def test_info_says_the_flow_was_fine_tuned_for_one_step_and_the_decoder_it_went_through_still_fits(
        tmp_path, tiny_model_dir, photos_dir, capsys):
    from fmboost.cli.main import main
    from fmboost.training.onestep import train_one_step
    from fmboost.training.part import install

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    flow = sha256(model / "cfm" / "diffusion_pytorch_model.safetensors")
    (model / "autoencoder" / "training.json").write_text(json.dumps({"decoder_steps": 20, "flow_sha256": flow}))
    made = train_one_step(config(tmp_path, model, photos_dir, steps=2))
    install(made, model / "cfm", 2, 2)

    def info():
        capsys.readouterr()
        assert main(["info", str(model)]) == 0
        return capsys.readouterr().out

    out = info()
    assert "fine-tuned for one Euler step from the clean x0: 2 steps\n" in out  # the first round says no round
    assert "decoder fine-tuned 20 steps" in out and "another flow" not in out
    (model / "temporal").mkdir()  # temporal layers trained beside the flow before the fine-tune
    (model / "temporal" / "training.json").write_text(json.dumps({"steps": 5, "flow_sha256": flow}))
    out = info()
    assert "trained beside the flow this cfm/ was fine-tuned from" in out and "retrain them" not in out
    (model / "temporal" / "training.json").write_text(json.dumps({"steps": 5, "flow_sha256": "0" * 64}))
    assert "trained beside another flow than this cfm/: retrain them" in info()
    record = model / "cfm" / "training.json"  # a flow fine-tuned through another autoencoder
    record.write_text(json.dumps({**json.loads(record.read_text()), "autoencoder_sha256": "0" * 64}))
    assert "(of another flow than this cfm/)" in info()


def test_only_a_cfm_model_can_be_fine_tuned_for_one_step(tmp_path, tiny_model_dir, photos_dir):
    from fmboost.data.model_config import ModelConfig
    from fmboost.errors import InputError
    from fmboost.training.onestep import train_one_step

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    ModelConfig.read(model).replace(objective="regression-l2").write(model)
    with pytest.raises(InputError, match="regression-l2 model"):
        train_one_step(config(tmp_path, model, photos_dir))


def test_an_early_install_does_not_change_the_teacher_of_the_resumed_run(tmp_path, tiny_model_dir, photos_dir):
    """--install-now replaces the model's cfm/; the run resumed afterwards still holds the network to the flow it
    started from (OUT/teacher), and says so in its record."""
    from fmboost.models.networks import load_network
    from fmboost.training.onestep import train_one_step
    from fmboost.training.part import install

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    first = sha256(model / "cfm" / "diffusion_pytorch_model.safetensors")
    cfg = config(tmp_path, model, photos_dir, steps=2, checkpoint_every=1, keep_weight=1.0)
    install(train_one_step(cfg), model / "cfm", 2, 2)
    assert sha256(model / "cfm" / "diffusion_pytorch_model.safetensors") != first
    cfg.steps = 3
    made = train_one_step(cfg, resume=True)
    assert json.loads((made / "training.json").read_text())["started_from_sha256"] == first
    teacher = load_network(tmp_path / "run" / "teacher").state_dict()
    original = load_network(tiny_model_dir / "cfm").state_dict()
    assert all(torch.equal(teacher[k], original[k]) for k in original)


def test_a_second_fine_tune_keeps_the_lineage_so_the_temporal_layers_still_fit(tmp_path, tiny_model_dir, photos_dir,
                                                                               capsys):
    from fmboost.cli.main import main
    from fmboost.training.onestep import train_one_step
    from fmboost.training.part import install

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    original = sha256(model / "cfm" / "diffusion_pytorch_model.safetensors")
    for round in ("one", "two"):
        install(train_one_step(config(tmp_path / round, model, photos_dir, steps=1)), model / "cfm", 1, 1)
    made = json.loads((model / "cfm" / "training.json").read_text())
    assert made["lineage"][-1] == original and len(made["lineage"]) == 2
    (model / "temporal").mkdir()  # layers (their record alone) trained beside the flow before both fine-tunes
    (model / "temporal" / "training.json").write_text(json.dumps({"steps": 5, "flow_sha256": original}))
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "trained beside the flow this cfm/ was fine-tuned from" in out
    assert "for one Euler step from the clean x0: 1 step, round 2 (each from the last round's flow)" in out

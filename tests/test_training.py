import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from fmboost.data.files import WEIGHTS_NAME as WEIGHTS, sha256
from fmboost.training.prepare import load_shards, prepare, reupsample
from fmboost.training.config import TrainConfig
from fmboost.training.train import TrainingDiverged, train
from tests.conftest import TINY_MODEL, newest


def config(shards_dir, out, **kw):
    base = dict(data=str(shards_dir), out=str(out), preset="tiny", model=TINY_MODEL, batch_size=4, max_steps=6,
                warmup_steps=2, log_every=1, checkpoint_every=100, sample_every=0, lr=1e-3)
    return TrainConfig(**{**base, **kw})


def weights(out):
    return load_file(str(newest(out) / "ema.safetensors")), load_file(str(newest(out) / "model.safetensors"))


def test_prepare_writes_pairs_of_the_right_shapes(shards_dir):
    data, manifest = load_shards(shards_dir)
    assert manifest["count"] == 12 and manifest["scale"] == 2
    # 32 px crops through a factor-2 autoencoder: 16×16 high-res latents, 8×8 low-res ones.
    assert data["x1"].shape == (12, 4, 16, 16)
    assert data["x_cond"].shape == (12, 4, 16, 16)
    assert data["z_lr"].shape == (12, 4, 8, 8)


def test_prepare_resumes_to_the_same_shards(tmp_path, tiny_vae_dir, photos_dir):
    full = prepare(photos_dir, tmp_path / "a", tiny_vae_dir, size=32, images_per_shard=1)
    # Simulate an interruption after the first shard: drop the later shards from the manifest and rerun.
    partial = dict(full, shards=full["shards"][:1], count=4)
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(partial))
    (tmp_path / "a" / full["shards"][2]).unlink()
    resumed = prepare(photos_dir, tmp_path / "a", tiny_vae_dir, size=32, images_per_shard=1)
    assert resumed["shards"] == full["shards"] and resumed["count"] == full["count"]
    prepare(photos_dir, tmp_path / "b", tiny_vae_dir, size=32, images_per_shard=1)
    for name in full["shards"]:
        a, b = load_file(str(tmp_path / "a" / name)), load_file(str(tmp_path / "b" / name))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_prepare_refuses_other_settings_in_the_same_folder(tmp_path, tiny_vae_dir, photos_dir):
    prepare(photos_dir, tmp_path / "s", tiny_vae_dir, size=32)
    with pytest.raises(ValueError, match="other settings"):
        prepare(photos_dir, tmp_path / "s", tiny_vae_dir, size=64)


def test_reupsampled_shards_change_only_the_condition(tmp_path, shards_dir):
    psu, _ = load_shards(shards_dir)
    manifest = reupsample(shards_dir, tmp_path / "nearest", "nearest")
    nearest, _ = load_shards(tmp_path / "nearest")
    assert manifest["upsampling"] == "nearest" and manifest["count"] == 12
    assert torch.equal(nearest["x1"], psu["x1"]) and torch.equal(nearest["z_lr"], psu["z_lr"])
    # Nearest ×2 repeats each low-res latent over a 2×2 block.
    assert torch.equal(nearest["x_cond"], psu["z_lr"].repeat_interleave(2, -1).repeat_interleave(2, -2))
    assert reupsample(shards_dir, tmp_path / "nearest", "nearest") == manifest  # a rerun is a no-op
    with pytest.raises(ValueError, match="already holds"):
        reupsample(shards_dir, tmp_path / "nearest", "bilinear")
    again = reupsample(tmp_path / "nearest", tmp_path / "psu", "psu")  # back through the autoencoder
    assert torch.allclose(load_shards(tmp_path / "psu")[0]["x_cond"], psu["x_cond"], atol=1e-5)
    assert again["upsampling"] == "psu"


def test_resumed_training_equals_uninterrupted_training(tmp_path, shards_dir):
    train(config(shards_dir, tmp_path / "full", max_steps=6))
    train(config(shards_dir, tmp_path / "half", max_steps=3))
    train(config(shards_dir, tmp_path / "half", max_steps=6), resume=True)
    (ema_a, model_a), (ema_b, model_b) = weights(tmp_path / "full"), weights(tmp_path / "half")
    for k in model_a:
        assert torch.equal(model_a[k], model_b[k]), k
        assert torch.equal(ema_a[k], ema_b[k]), k
    assert [l.split(",")[1] for l in (tmp_path / "full" / "log.csv").read_text().splitlines()] == \
           [l.split(",")[1] for l in (tmp_path / "half" / "log.csv").read_text().splitlines()]


def test_training_writes_model_logs_and_samples(tmp_path, shards_dir):
    from fmboost.pipelines.upscale import FMBoostPipeline

    out = tmp_path / "run"
    model_dir = train(config(shards_dir, out, max_steps=4, sample_every=2, tau=200))
    pipe = FMBoostPipeline.from_pretrained(model_dir)
    assert pipe.config["tau"] == 200 and pipe.config["upsampling"] == "psu"
    made = json.loads((model_dir / "training.json").read_text())
    assert made["steps"] == 4 and made["config"]["tau"] == 200 and made["data"]["count"] == 12
    assert (out / "samples" / "step_0000002.png").exists() and (out / "samples" / "step_0000004.png").exists()
    assert len((out / "log.csv").read_text().splitlines()) == 5
    assert [f.name for f in (out / "checkpoints").iterdir()] == ["step_0000004"]  # no temporary folder left


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, shards_dir, monkeypatch):
    import fmboost.training.train as training

    out = tmp_path / "nan"
    real_loss_for, calls = training.loss_for, []

    def loss_for_that_breaks(*args, **kwargs):
        real = real_loss_for(*args, **kwargs)

        def loss(*a):
            calls.append(1)
            return real(*a) * float("nan") if len(calls) == 4 else real(*a)
        return loss

    monkeypatch.setattr(training, "loss_for", loss_for_that_breaks)
    with pytest.raises(TrainingDiverged, match="step 4"):
        train(config(shards_dir, out, max_steps=6, checkpoint_every=2))
    state = torch.load(newest(out) / "state.pt", weights_only=True)
    assert state["step"] == 2 and newest(out).name == "step_0000002"
    assert all(torch.isfinite(v).all() for v in weights(out)[1].values())


def test_config_file_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: faces\nlr: 0.001\ntau: 200\n")
    cfg = TrainConfig.load(f, tau=0, lr=None)
    assert (cfg.preset, cfg.lr, cfg.tau) == ("faces", 0.001, 0)
    f.write_text("lrate: 1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        TrainConfig.load(f)


def test_config_files_inherit_from_a_base(tmp_path):
    (tmp_path / "base.yaml").write_text("preset: tiny\nlr: 0.001\ntau: 400\n")
    (tmp_path / "run.yaml").write_text("base: base.yaml\ntau: 0\nobjective: naive-fm\n")
    cfg = TrainConfig.load(tmp_path / "run.yaml")
    assert (cfg.preset, cfg.lr, cfg.tau, cfg.objective) == ("tiny", 0.001, 0, "naive-fm")


def test_cosine_lr_decay_warms_up_then_falls_to_zero():
    from fmboost.training.train import lr_lambda

    f = lr_lambda(warmup_steps=10, max_steps=110, decay="cosine")
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0, abs=1e-12)
    assert lr_lambda(10, 110)(100) == 1.0  # no decay unless asked
    with pytest.raises(ValueError, match="lr_decay"):
        lr_lambda(10, 110, "linear")


def info(model) -> str:
    """`fmboost info`'s line on where a fine-tuned flow started."""
    from fmboost.cli.info import as_text, describe_folder
    from fmboost.cli.common import find_model

    line = next(l for l in as_text(describe_folder(find_model(str(model), flag="MODEL"))).splitlines()
                if "fine-tuned" in l and " from " in l)
    return line.strip()


def test_fine_tuning_starts_from_the_init_models_weights(tmp_path, shards_dir):
    first = train(config(shards_dir, tmp_path / "a", max_steps=3))
    # lr 0: the fine-tuned weights must be exactly the init weights, whatever the preset says.
    train(config(shards_dir, tmp_path / "b", max_steps=1, lr=0.0, init=str(first), preset="faces"))
    init, _ = weights(tmp_path / "a")  # the exported model holds the EMA weights
    _, tuned = weights(tmp_path / "b")
    assert init.keys() == tuned.keys() and all(torch.equal(init[k], tuned[k]) for k in init)
    # its record names the flow it started from, and keeps naming it when the run resumes after the init changed
    digest = sha256(first / "cfm" / "diffusion_pytorch_model.safetensors")
    record = lambda: json.loads((tmp_path / "b" / "model" / "training.json").read_text())
    assert record()["init_sha256"] == digest
    assert info(tmp_path / "b" / "model") == f"fine-tuned 1 step from the flow in {first}"
    other = train(config(shards_dir, tmp_path / "other", max_steps=1, seed=1))
    shutil.copytree(other / "cfm", first / "cfm", dirs_exist_ok=True)  # the init folder now holds another flow
    assert sha256(first / "cfm" / "diffusion_pytorch_model.safetensors") != digest
    train(config(shards_dir, tmp_path / "b", max_steps=2, lr=0.0, init=str(first), preset="faces"), resume="auto")
    assert record()["steps"] == 2 and record()["init_sha256"] == digest
    said = f"fine-tuned 2 steps from the flow {first} held then (it holds another now)"
    assert info(tmp_path / "b" / "model") == said
    assert "init_sha256" not in json.loads((first / "training.json").read_text())  # a fresh run has no init
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        train(config(shards_dir, tmp_path / "c", init=str(tmp_path)))


def test_a_chain_of_fine_tunes_names_every_round(tmp_path, shards_dir, tiny_vae_dir, photos_dir, monkeypatch):
    """`real`'s two rounds (recipes/real/make_real.sh): plain pairs from the default's flow, then pairs for the first
    pass of ×4 (`prepare --cascade 2`) from round 1's: the last record holds the first's, and `fmboost info` names
    both rounds without round 1's folder."""
    import fmboost.cli.info as info_module

    base = train(config(shards_dir, tmp_path / "base", max_steps=1))
    one = train(config(shards_dir, tmp_path / "one", max_steps=2, init=str(base)))
    prepare(photos_dir, tmp_path / "x4", tiny_vae_dir, size=32, crops_per_image=2, cascade=2)
    two = train(config(tmp_path / "x4", tmp_path / "two", max_steps=3, init=str(one)))
    first_record = json.loads((one / "training.json").read_text())
    assert "init_record" not in first_record  # round 1 started from a fresh flow's folder: nothing before it
    made = json.loads((two / "training.json").read_text())
    assert made["data"]["cascade"] == 2 and made["init_sha256"] == sha256(one / "cfm" / WEIGHTS)
    assert made["init_record"] == {k: first_record[k] for k in ("steps", "data", "init_sha256")}
    monkeypatch.setattr(info_module, "EMBEDDED_MODELS", {"base": base})
    said = "fine-tuned 2 steps from the embedded `base`'s flow, then 3 steps on pairs for the first pass of ×4"
    assert info(two) == said
    shutil.rmtree(one)
    assert info(two) == said


def test_a_flow_trained_through_a_fine_tuned_decoder_says_the_decoder_fits_it(tmp_path, shards_dir, capsys):
    """The decoder's record travels with the export, and the pixel term's autoencoder is recorded: `fmboost info`
    then says the decoder fits the flow that was trained through it, though it was fine-tuned on another."""
    from fmboost.cli.main import main

    shards = shutil.copytree(shards_dir, tmp_path / "shards")
    manifest = json.loads((shards / "manifest.json").read_text())
    vae = shutil.copytree(manifest["vae"], tmp_path / "vae")
    (vae / "training.json").write_text(json.dumps({"decoder_steps": 7, "flow_sha256": "0" * 64}))
    (shards / "manifest.json").write_text(json.dumps({**manifest, "vae": str(vae)}))

    def info(model):
        capsys.readouterr()
        assert main(["info", str(model)]) == 0
        return capsys.readouterr().out

    through = train(config(shards, tmp_path / "through", max_steps=1, pixel_weight=1.0))
    assert json.loads((through / "autoencoder" / "training.json").read_text())["decoder_steps"] == 7
    said = info(through)
    assert "its decoder fine-tuned 7 steps on the flow's outputs\n" in said
    latent_only = train(config(shards, tmp_path / "latent", max_steps=1))  # no pixel term: not trained through it
    assert "its decoder fine-tuned 7 steps on the flow's outputs (of another flow than this cfm/)" in info(latent_only)


def test_exported_model_samples_with_sample_tau_and_steps_when_given(tmp_path, shards_dir):
    from fmboost.pipelines.upscale import FMBoostPipeline

    model_dir = train(config(shards_dir, tmp_path / "run", max_steps=1, tau=100, sample_tau=0, sample_steps=2))
    settings = FMBoostPipeline.from_pretrained(model_dir).config
    assert settings["tau"] == 0 and settings["steps"] == 2
    assert json.loads((model_dir / "training.json").read_text())["config"]["tau"] == 100
    with pytest.raises(ValueError, match="steps"):  # refused before the first step, not when the model is written
        train(config(shards_dir, tmp_path / "bad", max_steps=1, sample_steps=0))
    assert not (tmp_path / "bad").exists()

"""Fine-tuning a model's decoder on its flow's outputs (fmboost/training/decoder.py, recipes/default/train_decoder.py)."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from fmboost.data.files import sha256


def decoder_and_rest(folder):
    state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    part = lambda k: k.startswith(("decoder.", "post_quant_conv."))
    return {k: v for k, v in state.items() if part(k)}, {k: v for k, v in state.items() if not part(k)}


def test_the_decoder_learns_the_flow_outputs_and_nothing_else_changes(tmp_path, tiny_model_dir, photos_dir):
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.training.decoder import DecoderConfig, batch, decoder_loss, train_decoder

    cfg = DecoderConfig(model=str(tiny_model_dir), photos=(str(photos_dir),), out=str(tmp_path / "run"), crop=32,
                        pairs=8, batch=8, steps=30, lr=3e-3, warmup=1, ema_decay=0.0, checkpoint_every=30,
                        holdout_every=0)
    made = train_decoder(cfg)
    pairs = load_file(str(tmp_path / "run" / "pairs.safetensors"))
    assert pairs["x1_hat"].shape[0] == pairs["x_lr"].shape[0] == pairs["x"].shape[0] == 8
    fix = FMBoostPipeline.from_pretrained(tiny_model_dir).config.color_fix
    with torch.no_grad():
        data = batch(pairs, cfg, 0)
        before = decoder_loss(Autoencoder.from_pretrained(tiny_model_dir / "autoencoder"), *data, fix).item()
        after = decoder_loss(Autoencoder.from_pretrained(made), *data, fix).item()
    assert after < 0.9 * before
    old_decoder, old_rest = decoder_and_rest(tiny_model_dir / "autoencoder")
    new_decoder, new_rest = decoder_and_rest(made)
    assert old_rest.keys() == new_rest.keys() and all(torch.equal(old_rest[k], new_rest[k]) for k in old_rest)
    assert any(not torch.equal(old_decoder[k], new_decoder[k]) for k in old_decoder)
    # the decoder fits this flow: the digest says which
    made_how = json.loads((made / "training.json").read_text())
    assert made_how["flow_sha256"] == sha256(tiny_model_dir / "cfm" / "diffusion_pytorch_model.safetensors")
    assert made_how["decoder_steps"] == 30
    assert made_how["color_fix"] == fix  # the fix its loss went through, the model's own
    assert made_how["back_projection"] == 0


def test_decoder_training_resumes_and_refuses_a_used_folder(tmp_path, tiny_model_dir, photos_dir):
    from fmboost.errors import InputError
    from fmboost.training.decoder import DecoderConfig, train_decoder

    cfg = DecoderConfig(model=str(tiny_model_dir), photos=(str(photos_dir),), out=str(tmp_path / "run"), crop=32,
                        pairs=4, batch=2, steps=2, checkpoint_every=1, holdout_every=0)
    train_decoder(cfg)
    pairs = tmp_path / "run" / "pairs.safetensors"
    made_at = pairs.stat().st_mtime_ns
    with pytest.raises(InputError, match="already holds checkpoints"):
        train_decoder(cfg)
    cfg.steps = 3
    train_decoder(cfg, resume=True)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]
    assert pairs.stat().st_mtime_ns == made_at  # made once


def test_the_recipe_installs_only_a_finished_run(tmp_path, tiny_model_dir, photos_dir, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "train_decoder", Path(__file__).resolve().parents[1] / "recipes" / "default" / "train_decoder.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    before = sha256(model / "autoencoder" / "diffusion_pytorch_model.safetensors")
    common = [str(photos_dir), "--model", str(model), "--crop", "32", "--pairs", "4", "--batch", "2",
              "--checkpoint-every", "1", "--max-minutes", "0"]
    assert recipe.main(common + ["--out", str(tmp_path / "short"), "--steps", "5", "--install"]) == 0
    assert "not installed" in capsys.readouterr().out
    assert sha256(model / "autoencoder" / "diffusion_pytorch_model.safetensors") == before
    assert recipe.main(common[:-2] + ["--out", str(tmp_path / "done"), "--steps", "1", "--install"]) == 0
    assert sha256(model / "autoencoder" / "diffusion_pytorch_model.safetensors") != before
    assert recipe.main([str(tmp_path / "nowhere"), "--model", str(model), "--out", str(tmp_path / "x")]) == 2


def test_info_says_the_decoder_was_fine_tuned_and_for_which_flow(tmp_path, tiny_model_dir, capsys):
    from fmboost.cli.main import main

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    made = model / "autoencoder" / "training.json"
    flow = sha256(model / "cfm" / "diffusion_pytorch_model.safetensors")

    def info():
        capsys.readouterr()
        assert main(["info", str(model)]) == 0
        return capsys.readouterr().out

    assert "fine-tuned" not in info()
    made.write_text(json.dumps({"decoder_steps": 1500, "flow_sha256": flow}))
    out = info()
    assert "decoder fine-tuned 1,500 steps on the flow's outputs" in out and "another flow" not in out
    made.write_text(json.dumps({"decoder_steps": 1500, "flow_sha256": "0" * 64}))
    assert "(of another flow than this cfm/)" in info()


def test_the_decoder_loss_scores_the_output_as_the_pipeline_finishes_it(tiny_model_dir):
    """The same colour fix and back-projection as FMBoostPipeline.finish (without its final clamp of the decoded
    pixels, which would stop the gradient where the decoder overshoots)."""
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.training.decoder import decoder_loss

    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, pipe.autoencoder.latent_channels, 8, 8, generator=g)
    x_lr = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1
    x = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    for k in (0, 1):
        pipe.config = pipe.config.replace(color_fix="luma", back_projection=k)
        with torch.no_grad():
            decoded = pipe.autoencoder.decode
            pipe.autoencoder.decode = lambda z: decoded(z, clamp=False)
            want = (pipe.finish(z, x_lr) - x).abs().mean()
            pipe.autoencoder.decode = decoded
            got = decoder_loss(Autoencoder.from_pretrained(tiny_model_dir / "autoencoder"), z, x_lr, x, "luma",
                               back_projection=k)
        assert torch.allclose(got, want, atol=1e-5)



def test_resuming_a_part_from_a_checkpoint_without_its_tensors_fails(tmp_path):
    """part.fit loads a checkpoint non-strictly (the decoder's holds the decoder alone, not the whole autoencoder),
    but one without the trained part's tensors must not resume silently from untrained weights."""
    from fmboost.training.decoder import DecoderConfig
    from fmboost.training.part import fit, newest_checkpoint, save_checkpoint

    Settings = lambda: DecoderConfig(model="unused", photos=(), out=str(tmp_path), steps=2, lr=1e-3, warmup=1,
                                     ema_decay=0.9, checkpoint_every=1, keep_checkpoints=2)
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(net.parameters())
    save_checkpoint(tmp_path, 1, {"part": {"other.weight": torch.zeros(2, 2)}, "ema": net.state_dict()}, opt, Settings())
    loss = lambda step: net(torch.ones(1, 2)).sum()
    with pytest.raises(RuntimeError, match="does not hold this run's part"):
        fit(net, net.state_dict, loss, lambda ema, step: None, Settings(), tmp_path, newest_checkpoint(tmp_path), "part")
    save_checkpoint(tmp_path, 1, {"part": net.state_dict(), "ema": net.state_dict()}, opt, Settings())
    assert fit(net, net.state_dict, loss, lambda ema, step: None, Settings(), tmp_path, newest_checkpoint(tmp_path),
               "part") == 2

"""The small autoencoder's trainer (`fmboost train-autoencoder`): it saves a loadable model, resumes exactly where it
stopped (also from a checkpoint of the old pickled format), starts from another run, holds photos back for
validation, augments colour without moving grey, and never uses emulated bf16."""
import json
import math
import random
import shutil

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

import fmboost.training.autoencoder as T
import fmboost.models.device as D
import fmboost.training.precision as P
from fmboost.autoencoders.vae import Autoencoder, small_autoencoder_config
from fmboost.cli.main import main
from fmboost.data.photos import color_augment, hue_rotation, split_photos
from fmboost.training.autoencoder import AutoencoderConfig, train


def config(photos_dir, out, steps, **extra):
    values = dict(data=[str(photos_dir)], out=str(out), block_out_channels=[8, 16], latent_channels=4, steps=steps,
                  warmup=2, batch_size=2, crop=32, lr=1e-3, gradient_weight=0.5, color_weight=3.0, color_augment=0.5,
                  holdout_every=0, checkpoint_every=2, threads=1)
    return AutoencoderConfig(**{**values, **extra})


def weights(out):
    return load_file(out / "checkpoint" / "model.safetensors")


class Killed(Exception):
    pass


def test_trains_saves_and_resumes_exactly(tmp_path, photos_dir, monkeypatch):
    folder = train(config(photos_dir, tmp_path / "full", 4))
    ae = Autoencoder.from_pretrained(folder)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert ae.decode(ae.encode(x)).shape == x.shape and ae.scaling_factor > 0
    assert json.loads((folder / "training.json").read_text())["trained_steps"] == 4

    save = T.save_checkpoint

    def save_then_die(path, vae, opt, step, rng):  # the process dies right after the step-2 checkpoint
        save(path, vae, opt, step, rng)
        if step == 2:
            raise Killed

    monkeypatch.setattr(T, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(config(photos_dir, tmp_path / "half", 4))
    monkeypatch.setattr(T, "save_checkpoint", save)
    train(config(photos_dir, tmp_path / "half", 4))  # continues from the step-2 checkpoint
    full, half = weights(tmp_path / "full"), weights(tmp_path / "half")
    assert all(torch.allclose(full[k], half[k], atol=1e-6) for k in full)
    assert len((tmp_path / "half" / "log.csv").read_text().splitlines()) == 4


def test_resumes_a_checkpoint_of_the_old_pickled_trainer_once(tmp_path, photos_dir, capsys):
    """The old trainer wrote OUT/checkpoint.pt (torch.save); the new one converts it once and goes on from its step."""
    cfg = config(photos_dir, tmp_path / "legacy", 3)
    train(config(photos_dir, tmp_path / "legacy", 2))
    model = weights(tmp_path / "legacy")
    vae = AutoencoderKL(**small_autoencoder_config([8, 16], 4))  # rebuild the old file from the new checkpoint
    opt = torch.optim.AdamW(vae.parameters())
    rng = random.Random()
    step = T.load_checkpoint(tmp_path / "legacy" / "checkpoint", vae, opt, rng)
    torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "py_rng": rng.getstate(),
                "torch_rng": torch.get_rng_state()}, tmp_path / "legacy" / "checkpoint.pt")
    shutil.rmtree(tmp_path / "legacy" / "checkpoint")
    capsys.readouterr()
    train(cfg)
    err = capsys.readouterr().err
    assert "converted" in err and "resumed at step 2" in err
    assert not (tmp_path / "legacy" / "checkpoint.pt").exists()
    assert json.loads((tmp_path / "legacy" / "checkpoint" / "state.json").read_text())["step"] == 3
    assert not all(torch.equal(model[k], v) for k, v in weights(tmp_path / "legacy").items())  # it trained on


def test_init_starts_from_another_runs_weights(tmp_path, photos_dir, capsys):
    train(config(photos_dir, tmp_path / "first", 2))
    first = weights(tmp_path / "first")
    train(config(photos_dir, tmp_path / "longer", 0, init=str(tmp_path / "first" / "checkpoint")))
    assert "initialised from" in capsys.readouterr().err
    longer = weights(tmp_path / "longer")
    assert all(torch.equal(first[k], longer[k]) for k in first)  # zero steps: exactly the weights it started from


def test_holds_photos_back_and_logs_their_psnr(tmp_path, photos_dir):
    for i in range(3, 6):  # six photos: every third (the 3rd and the 6th) is held back
        (photos_dir / f"q{i}.png").write_bytes((photos_dir / f"p{i - 3}.png").read_bytes())
    train_files, held = split_photos([str(photos_dir)], 3)
    assert len(held) == 2 and not set(held) & set(train_files) and len(train_files) == 4
    train(config(photos_dir, tmp_path / "val", 2, holdout_every=3, val_every=1, val_crop=64))
    rows = [line.split(",") for line in (tmp_path / "val" / "log.csv").read_text().splitlines()]
    psnrs = [float(r[3]) for r in rows]
    assert len(psnrs) == 2 and all(0 < p < 60 for p in psnrs)


def test_color_augmentation_turns_hues_and_keeps_grey():
    red_to_green = hue_rotation(2 * math.pi / 3) @ torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(red_to_green, torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    grey = torch.full((3, 8, 8), 0.2)
    out = color_augment(grey, random.Random(0))
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[1], out[2])  # still grey
    coloured = torch.stack([torch.full((8, 8), 0.8), torch.full((8, 8), -0.5), torch.full((8, 8), 0.6)])
    outs = [color_augment(coloured, random.Random(s)) for s in range(8)]
    assert len({tuple(o[:, 0, 0].round(decimals=3).tolist()) for o in outs}) == 8
    assert all(o.min() >= -1 and o.max() <= 1 for o in outs)


def test_gradient_term_penalises_blur_that_l1_alone_barely_sees():
    x = torch.zeros(1, 3, 16, 16)
    x[..., ::2, :] = 1.0  # stripes
    blurred = torch.full_like(x, 0.5)
    g = sum((a - b).abs().mean() for a, b in zip(T.image_gradients(blurred), T.image_gradients(x)))
    assert g > (blurred - x).abs().mean()


def test_block_mean_term_sees_a_colour_offset_whole_and_ignores_texture_noise():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2 - 1.0  # ±1, zero mean per 8×8 block
    noisy = x + 0.1 * checker
    assert float(T.block_mean_l1(noisy, x)) < 1e-6 < float((noisy - x).abs().mean())
    greener = x.clone()
    greener[:, 1] += 0.3
    assert float(T.block_mean_l1(greener, x)) == pytest.approx(0.1, abs=1e-6)  # 0.3 on one channel of three


def test_bf16_is_used_only_where_the_cpu_has_it(monkeypatch, capsys):
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: False)
    assert P.resolve_bf16(True, "cpu") is False
    err = capsys.readouterr().err
    assert "bf16 off" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: True)
    assert P.resolve_bf16(True, "cpu") is True
    assert P.resolve_bf16(False, "cpu") is False and capsys.readouterr().err == ""


def test_trainer_falls_back_to_fp32_on_a_cpu_without_bf16(tmp_path, photos_dir, monkeypatch, capsys):
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: False)
    used = []
    real_autocast = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kw):
        used.append(enabled)
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(T.torch, "autocast", spy)
    train(config(photos_dir, tmp_path / "bf16", 1, bf16=True))
    assert used == [False] and "bf16 off" in capsys.readouterr().err


def test_cli_user_mistakes_are_one_line(tmp_path, capsys):
    assert main(["train-autoencoder", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such folder" in err
    (tmp_path / "bad.yaml").write_text("latent_chanels: 4\n")
    assert main(["train-autoencoder", "--config", str(tmp_path / "bad.yaml"), "--data", str(tmp_path)]) == 2
    assert "unknown setting" in capsys.readouterr().err


def test_cfm_trainer_falls_back_to_fp32_on_a_cpu_without_bf16(monkeypatch, capsys):
    from accelerate.state import AcceleratorState

    from fmboost.training.config import TrainConfig
    from fmboost.training.distributed import make_accelerator

    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: False)
    AcceleratorState._reset_state(True)
    try:
        accelerator = make_accelerator(TrainConfig(bf16=True))
        assert accelerator.mixed_precision == "no" and "bf16 off" in capsys.readouterr().err
    finally:
        AcceleratorState._reset_state(True)


# ---------------------------------------------------------------- the CFM trainer's checkpoint protocol (issue 23)

def test_checkpoints_are_verified_and_a_damaged_one_is_refused(tmp_path, photos_dir, capsys):
    from fmboost.errors import FmboostError
    from fmboost.training.checkpoints import COMPLETE, checkpoint_problem

    train(config(photos_dir, tmp_path / "run", 2))
    ckpt = tmp_path / "run" / "checkpoint"
    record = json.loads((ckpt / COMPLETE).read_text())
    assert record["step"] == 2 and set(record["files"]) == {"model.safetensors", "optimizer.safetensors", "state.json"}
    assert checkpoint_problem(ckpt) is None
    assert not list(tmp_path.glob("run/*.tmp")) and not list(tmp_path.glob("run/*.old"))
    with open(ckpt / "model.safetensors", "r+b") as f:  # one flipped byte in the weights
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(FmboostError, match="model.safetensors") as e:
        train(config(photos_dir, tmp_path / "run", 4))
    assert "\n" not in str(e.value) and json.loads((ckpt / "state.json").read_text())["step"] == 2


def test_a_run_killed_between_the_renames_resumes_from_the_previous_checkpoint(tmp_path, photos_dir, capsys):
    train(config(photos_dir, tmp_path / "run", 2))
    ckpt = tmp_path / "run" / "checkpoint"
    ckpt.rename(ckpt.with_name("checkpoint.old"))  # what write_atomic leaves if killed between its two renames
    capsys.readouterr()
    train(config(photos_dir, tmp_path / "run", 3))
    assert "resumed at step 2" in capsys.readouterr().err
    assert json.loads((ckpt / "state.json").read_text())["step"] == 3


def test_sigterm_finishes_the_step_checkpoints_exports_and_exits_with_its_code(tmp_path, photos_dir, monkeypatch,
                                                                               capsys):
    import os
    import signal

    sample = T.sample_crops
    calls = []

    def sample_then_signal(*args, **kwargs):  # SIGTERM arrives during the second step
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return sample(*args, **kwargs)

    monkeypatch.setattr(T, "sample_crops", sample_then_signal)
    code = main(["train-autoencoder", "--data", str(photos_dir), "--out", str(tmp_path / "run"), "--steps", "5",
                 "--threads", "1", "--config", str(write_config(tmp_path))])
    assert code == 128 + signal.SIGTERM and "stopped by SIGTERM at step 2" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 2
    assert json.loads((tmp_path / "run" / "autoencoder" / "training.json").read_text())["trained_steps"] == 2
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler was put back


def write_config(tmp_path):
    path = tmp_path / "ae.json"
    path.write_text(json.dumps(dict(block_out_channels=[8, 16], latent_channels=4, warmup=2, batch_size=2, crop=32,
                                    holdout_every=0, checkpoint_every=100, val_every=0)))
    return path


def test_the_committed_autoencoder_checkpoint_still_loads():
    """recipes/default/progress/autoencoder/checkpoint was written before checkpoints had a record: it still passes
    the check and resumes (its weights, optimizer state, RNG and step)."""
    from pathlib import Path

    folder = Path(__file__).parents[1] / "recipes" / "default" / "progress" / "autoencoder" / "checkpoint"
    settings = json.loads((folder.parent / "config.json").read_text())
    vae = AutoencoderKL(**small_autoencoder_config(settings["block_out_channels"], settings["latent_channels"]))
    opt = torch.optim.AdamW(vae.parameters(), lr=settings["lr"])
    rng = random.Random()
    T.check_checkpoint(folder)
    step = T.load_checkpoint(folder, vae, opt, rng)
    assert step == json.loads((folder / "state.json").read_text())["step"] > 0
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in load_file(folder / "model.safetensors").items())
    assert len(opt.state) == len(list(vae.parameters()))

"""The small autoencoder's trainer: it saves a loadable model, resumes where it stopped, and starts from another run."""
import pytest
import torch

import fmboost.autoencoders.train as T
from fmboost.autoencoders.train import train
from fmboost.autoencoders.vae import Autoencoder


def config(photos_dir, out, steps, **extra):
    return dict(data=[str(photos_dir)], out=str(out), block_out_channels=[8, 16], latent_channels=4, steps=steps,
                warmup=2, batch_size=2, crop=32, lr=1e-3, kl_weight=1e-6, bf16=False, seed=0, checkpoint_every=2,
                threads=1, **extra)


def weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)["model"]


class Killed(Exception):
    pass


def test_trains_saves_and_resumes_exactly(tmp_path, photos_dir, monkeypatch):
    folder = train(config(photos_dir, tmp_path / "full", 4))
    ae = Autoencoder.from_pretrained(folder)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert ae.decode(ae.encode(x)).shape == x.shape and ae.scaling_factor > 0

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


def test_init_starts_from_another_runs_weights(tmp_path, photos_dir, capsys):
    train(config(photos_dir, tmp_path / "first", 2))
    first = weights(tmp_path / "first")
    train(config(photos_dir, tmp_path / "longer", 0, init=str(tmp_path / "first" / "checkpoint.pt")))
    assert "initialised from" in capsys.readouterr().out
    longer = weights(tmp_path / "longer")
    assert all(torch.equal(first[k], longer[k]) for k in first)  # zero steps: exactly the weights it started from

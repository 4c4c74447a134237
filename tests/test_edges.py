"""The rough edges a new user meets (issue 14): embedded names in every command, hub ids that cannot be fetched,
short training runs, file modes, and commands that start without importing torch."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmboost import DEFAULT_MODEL, EMBEDDED_MODELS
from fmboost.cli.main import main
from tests.conftest import random_photo

BOGUS = "fmboost-tests/no-such-model-1f3a"  # a well-formed hub id that exists nowhere


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- embedded names everywhere

def test_autoencoder_names_resolve_to_the_embedded_or_a_model_folders_autoencoder(tiny_model_dir):
    from fmboost.data.sources import resolve_autoencoder

    embedded = str(EMBEDDED_MODELS["default"] / "autoencoder")
    assert resolve_autoencoder("default") == embedded
    assert resolve_autoencoder(EMBEDDED_MODELS["default"]) == embedded  # `--vae fmboost/weights/default`
    assert resolve_autoencoder(tiny_model_dir) == str(tiny_model_dir / "autoencoder")
    assert resolve_autoencoder("stabilityai/sd-vae-ft-mse") == "stabilityai/sd-vae-ft-mse"


def test_prepare_vae_default_encodes_with_the_embedded_autoencoder(tmp_path, photos_dir, tiny_model_dir, capsys):
    from fmboost.training.prepare import load_shards

    code, out, err = run(capsys, "prepare", photos_dir, "--out", tmp_path / "d", "--vae", "default", "--size", 32,
                         "--crops-per-image", 1)
    assert code == 0, err
    data, manifest = load_shards(tmp_path / "d")
    # The embedded autoencoder has 8 latent channels; the tests' tiny one (also ×2) has 4.
    cfg = json.loads((DEFAULT_MODEL / "autoencoder" / "config.json").read_text())
    side = 32 // 2 ** (len(cfg["block_out_channels"]) - 1)
    assert data["x1"].shape[1:] == (cfg["latent_channels"], side, side) == (8, 16, 16)
    assert manifest["vae"] == "default"
    code, _, err = run(capsys, "prepare", photos_dir, "--out", tmp_path / "m", "--vae", tiny_model_dir, "--size", 32,
                       "--crops-per-image", 1)
    assert code == 0, err  # a model folder means its autoencoder/
    assert load_shards(tmp_path / "m")[0]["x1"].shape[1:] == (4, 16, 16)


def test_prepare_help_names_the_embedded_autoencoder(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    assert "`default` (the embedded one" in " ".join(capsys.readouterr().out.split())


def test_train_init_takes_an_embedded_name_and_says_why_it_refuses_others(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from fmboost.training.config import TrainConfig
    from fmboost.training.train import initial_model

    model = initial_model(TrainConfig(init="default"), latent_channels=8)
    embedded = load_file(DEFAULT_MODEL / "cfm" / "diffusion_pytorch_model.safetensors")
    state = model.state_dict()  # the embedded default's weights, not a fresh U-Net from the preset
    assert all(torch.equal(state[k], v) for k, v in embedded.items())
    code, _, err = run(capsys, "train", "--init", "nosuch", "--data", tmp_path)
    assert code == 2 and err.strip().endswith("--init nosuch: not a model folder (no cfm/) nor an embedded model "
                                              "(default, real)")


# ---------------------------------------------------------------- hub ids that cannot be fetched

def test_an_unreachable_hub_endpoint_counts_as_offline(monkeypatch):
    from fmboost.data.sources import hub_kwargs, hub_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert hub_offline() and hub_kwargs() == {"local_files_only": True}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()


def test_the_download_command_the_hint_names_is_installed():
    """huggingface-hub replaced `huggingface-cli` with `hf`: the hint must name the one that is there."""
    from importlib.metadata import entry_points

    assert "hf" in {ep.name for ep in entry_points(group="console_scripts")}
    from fmboost.data.sources import HubUnreachable

    line = HubUnreachable("owner/name/vae", "offline").for_flag("--vae")  # a subfolder of a repository
    assert "`hf download owner/name --local-dir DIR`" in line and line.endswith("pass --vae DIR/vae")


@pytest.mark.parametrize("offline", ["1", None], ids=["HF_HUB_OFFLINE", "no-network"])
def test_a_hub_id_that_cannot_be_fetched_fails_fast_in_one_line_in_every_command(tmp_path, photos_dir, tiny_model_dir,
                                                                                  monkeypatch, capsys, offline):
    """Without HF_HUB_OFFLINE this machine has no route to the hub: the probe gives up after 1.5 s instead of the
    30 s of retries `prepare --vae` spent before. (Where the hub can be reached, it says it has no such model.)"""
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    photo = tmp_path / "a.png"
    random_photo(16, 16).save(photo)
    commands = {
        "--vae": ["prepare", photos_dir, "--out", tmp_path / "shards", "--vae", BOGUS],
        "--model": ["upscale", photo, "--model", BOGUS],
        "--base": ["generate", "a cat", "--base", BOGUS, "--model", tiny_model_dir, "-o", tmp_path / "g.png"],
    }
    for flag, argv in commands.items():
        start = time.monotonic()
        code, _, err = run(capsys, *argv)
        assert time.monotonic() - start < 10, argv  # a guard against retries, not a speed target
        line = err.strip()
        assert code == 2 and len(line.splitlines()) == 1, err
        assert f"{flag} {BOGUS}:" in line and f"`hf download {BOGUS} --local-dir DIR`" in line \
            and f"pass {flag} DIR" in line
    from fmboost.cli.serve import main as serve

    assert serve(["--no-default", "--model", BOGUS, "--port", "0"]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and f"--model {BOGUS}:" in line and "pass --model DIR" in line
    assert not (tmp_path / "shards" / "manifest.json").exists() and not (tmp_path / "g.png").exists()


# ---------------------------------------------------------------- training: short runs, help, the start line

def test_a_warm_up_longer_than_half_the_run_is_said_in_one_line():
    from fmboost.training.train import describe_run, warmup_note

    note = warmup_note(500, 20, 2e-4)
    assert "500 steps" in note and "8e-06" in note and "--warmup-steps" in note and "\n" not in note
    assert warmup_note(500, 10000, 2e-4) is None and warmup_note(10, 20, 2e-4) is None
    assert describe_run(1, "NO", "cpu", "no") == "1 process, CPU, fp32"
    assert describe_run(8, "MULTI_GPU", "cuda", "bf16") == "8 processes (MULTI_GPU), CUDA, bf16"


def test_train_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for default in ("optimiser steps (default: 10000)", "warm-up (default: 500)", "(default: tiny)",
                    "(default: 0.0002)"):
        assert default in out


def test_train_warmup_steps_flag_reaches_the_config(tmp_path, shards_dir, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {channels: 8, norm_groups: 4, head_channels: 8}\nsample_every: 0\nbatch_size: 2\n")
    code, out, err = run(capsys, "train", "--config", cfg, "--data", shards_dir, "--max-steps", 1, "--out",
                         tmp_path / "run")
    assert code == 0, err
    assert "1 process, CPU, fp32" in out and "warning: the warm-up (500 steps)" in out
    code, out, err = run(capsys, "train", "--config", cfg, "--data", shards_dir, "--max-steps", 2, "--warmup-steps",
                         1, "--out", tmp_path / "run2")
    assert code == 0 and "warm-up" not in out


def test_the_torch_free_name_lists_match_the_objectives_and_solvers():
    from fmboost.flow.names import OBJECTIVE_NAMES, OBJECTIVE_SOLVERS
    from fmboost.flow.objectives import OBJECTIVES, get_objective
    from fmboost.solvers.names import SOLVER_NAMES
    from fmboost.solvers.ode import SOLVERS

    assert tuple(OBJECTIVES) == OBJECTIVE_NAMES and tuple(SOLVERS) == SOLVER_NAMES
    assert all(get_objective(name).solvers == OBJECTIVE_SOLVERS[name] for name in OBJECTIVES)


# ---------------------------------------------------------------- file modes

def modes(folder: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [folder, *folder.rglob("*")]}


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_weights_shards_and_model_folders_get_normal_modes(tmp_path, tiny_model_dir, umask, file_mode, dir_mode):
    import torch
    from safetensors.torch import save_file

    from fmboost.data.files import write_atomic
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    old = os.umask(umask)
    try:
        pipe.save_pretrained(tmp_path / "saved")  # save_pretrained, as a user calls it
        write_atomic(tmp_path / "exported", pipe.save_pretrained)  # OUT/model, checkpoints: folders renamed in
        write_atomic(tmp_path / "shard_000000.safetensors", lambda p: save_file({"x": torch.zeros(2)}, str(p)))
    finally:
        os.umask(old)
    expected = {("file", file_mode), ("dir", dir_mode)}
    assert modes(tmp_path / "saved") == expected and modes(tmp_path / "exported") == expected
    assert stat.S_IMODE((tmp_path / "shard_000000.safetensors").stat().st_mode) == file_mode  # not 0o600


# ---------------------------------------------------------------- start-up: no torch for quick commands

@pytest.mark.parametrize("argv", [["upscale", "IN", "-o", "OUT", "--method", "bicubic"], ["info"], ["--help"]])
def test_quick_commands_never_import_torch(tmp_path, argv):
    """`upscale --method bicubic` never loads the model, and `info` reads the folder's files: neither imports
    torch or diffusers (seconds of start-up). benchmarks/startup.py measures the time."""
    random_photo(16, 20).save(tmp_path / "in.png")
    argv = [str(tmp_path / "in.png") if a == "IN" else str(tmp_path / "out.png") if a == "OUT" else a for a in argv]
    code = ("import sys\nfrom fmboost.cli.main import main\n"
            "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
            "print('heavy:', heavy)\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stdout
    if argv[0] == "upscale":
        from PIL import Image

        assert Image.open(tmp_path / "out.png").size == (40, 32)

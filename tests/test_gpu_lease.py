"""recipes/default/gpu_lease.py: the schedule sized from a measured step rate, the lease's results packed into
pieces the GPU machine can return, and a fine-tuned flow installed as the default's."""
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_lease", ROOT / "recipes" / "default" / "gpu_lease.py")
lease = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lease)


def write_log(run: Path, rows):
    run.mkdir(parents=True, exist_ok=True)
    (run / "log.csv").write_text("step,loss,lr,seconds\n" + "".join(f"{s},0.1,0.001,{t}\n" for s, t in rows))


def test_the_schedule_ends_when_the_lease_does_at_the_rate_measured_after_the_start(tmp_path):
    # the first 15 s (kernels chosen, shards read) are slow and left out: 10 steps/s after them
    write_log(tmp_path / "run", [(100, 5.0), (200, 16.0), (300, 26.0), (400, 36.0)])
    assert lease.steps_for(tmp_path / "run", 50) == 400 + 500
    assert lease.steps_for(tmp_path / "run", -5) == 400  # no time left: stop where it is
    write_log(tmp_path / "short", [(3, 20.0)])  # too few rows to tell: the time limit ends the run instead
    assert lease.steps_for(tmp_path / "short", 50) == 3 + 100_000


def test_pack_returns_pieces_that_hold_the_run_with_fp16_checkpoints_and_without_the_autoencoder(tmp_path,
                                                                                                 monkeypatch):
    run = tmp_path / "runs" / "finetune"
    write_log(run, [(10, 1.0), (20, 2.0)])
    (run / "config.json").write_text("{}")
    for sub in ("model/cfm", "model/autoencoder"):
        (run / sub).mkdir(parents=True)
        save_file({"w": torch.randn(8, 8)}, str(run / sub / "diffusion_pytorch_model.safetensors"))
    emas = {}
    for step in (10, 20, 30):
        (run / f"checkpoints/step_{step:07d}").mkdir(parents=True)
        emas[step] = {"w": torch.randn(64, 64)}
        save_file(emas[step], str(run / f"checkpoints/step_{step:07d}/ema.safetensors"))
    (tmp_path / "extra.log").write_text("lease: done\n")
    monkeypatch.setattr(lease, "PIECE", 4096)
    lease.pack(tmp_path / "out", [run, tmp_path / "extra.log"])
    pieces = sorted((tmp_path / "out").iterdir())
    assert len(pieces) > 1 and all(p.stat().st_size <= 4096 for p in pieces)
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in pieces))) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "back", filter="data")
    assert "finetune/model/cfm/diffusion_pytorch_model.safetensors" in names and "logs/extra.log" in names
    assert not any("autoencoder" in n for n in names)  # the default's own, not sent back
    back = load_file(str(tmp_path / "back/finetune/checkpoints/step_0000030/ema.safetensors"))
    assert back["w"].dtype == torch.float16 and torch.allclose(back["w"].float(), emas[30]["w"], atol=1e-2)


def default_like(folder: Path, training: dict, steps: int = 1) -> Path:
    (folder / "cfm").mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(folder / "cfm" / "diffusion_pytorch_model.safetensors"))
    (folder / "fmboost.json").write_text(json.dumps({"scale": 2, "color_fix": "wavelet", "steps": steps}))
    (folder / "training.json").write_text(json.dumps(training))
    return folder


def test_install_replaces_the_flow_and_keeps_what_it_started_from(tmp_path):
    default = default_like(tmp_path / "default", {"steps": 3000, "after_training": {"steps": 1}})
    model = default_like(tmp_path / "model", {"steps": 4548, "config": {"init": "default"}}, steps=4)
    save_file({"w": torch.ones(2)}, str(model / "cfm" / "diffusion_pytorch_model.safetensors"))
    lease.install(model, default)
    assert torch.equal(load_file(str(default / "cfm" / "diffusion_pytorch_model.safetensors"))["w"], torch.ones(2))
    made = json.loads((default / "training.json").read_text())
    assert made["steps"] == 4548 and made["started_from"] == {"steps": 3000} and made["after_training"] == {"steps": 1}
    assert json.loads((default / "fmboost.json").read_text())["steps"] == 1  # the default's own sampling settings


def test_install_refuses_a_flow_not_fine_tuned_from_the_default(tmp_path):
    default = default_like(tmp_path / "default", {"steps": 3000, "after_training": {}})
    model = default_like(tmp_path / "model", {"steps": 10, "config": {"init": None}})
    with pytest.raises(SystemExit, match="not fine-tuned from the default"):
        lease.install(model, default)

"""Training at scale: `fmboost train` under torchrun and `accelerate launch` on 2 CPU processes (gloo), and the
pieces it stands on (the sharded stream, checkpoint checks, signals, sharded prepare), small enough for CI."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import fmboost
from fmboost.cli.main import main
from fmboost.training.prepare import load_shards, prepare
from fmboost.data.stream import epoch_pieces, pair_batches
from fmboost.models.presets import build_model
from fmboost.training.config import TrainConfig
from fmboost.training.checkpoints import checkpoint_problem
from fmboost.training.train import train
from tests.conftest import TINY_MODEL, newest, random_photo

REPO = Path(fmboost.__file__).parents[1]
TIMEOUT = 240  # seconds for one launch of 2 processes; they need about 10 on 2 cores


def settings(data, **kw) -> dict:
    return {"data": str(data), "preset": "tiny", "model": TINY_MODEL, "batch_size": 4, "max_steps": 6,
            "warmup_steps": 2, "log_every": 1, "checkpoint_every": 100, "sample_every": 0, "lr": 1e-3, **kw}


def config_file(folder: Path, data, **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.yaml").write_text(yaml.safe_dump(settings(data, **kw)))
    return folder / "cfg.yaml"


def child_env() -> dict:
    """This checkout's fmboost, one thread per process, and no launcher variables inherited from outside."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "fmboost.cli.main", "train", *map(str, args)]


def accelerate_launch(*args) -> list[str]:
    # The example config (MULTI_GPU) with 2 processes. It starts torchrun's workers, which fmboost train puts on
    # the CPUs (gloo) when there is no GPU. (`--cpu --num_processes 2` starts one process unless mpirun is set up.)
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(REPO / "examples" / "accelerate_config.yaml"), "--num_processes", "2",
            "--main_process_port", str(free_port()), "-m", "fmboost.cli.main", "train", *map(str, args)]


def launch(cmd) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, parents first: torchrun starts each worker in a session of its own (out of reach
    of killpg)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if not children.exists():
        return [pid]
    return [pid] + [p for c in children.read_text().split() for p in process_tree(int(c))]


def kill(pids) -> None:
    for pid in pids:  # parents first: torchrun cannot pass anything on, as when a node dies
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_gone(pids, timeout: float = 60) -> None:
    """Until none of pids runs (a killed orphan may linger a moment as a zombie)."""
    alive = lambda p: Path(f"/proc/{p}/stat").exists() and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"
    deadline = time.time() + timeout
    while any(alive(p) for p in pids):
        assert time.time() < deadline, f"processes {pids} still run"
        time.sleep(0.05)


def model_weights(out: Path, name: str = "model") -> dict:
    return load_file(str(newest(out) / f"{name}.safetensors"))


def losses(out: Path) -> list[str]:
    return [line.split(",")[1] for line in (out / "log.csv").read_text().splitlines()]


@pytest.fixture(scope="session")
def two_processes(tmp_path_factory):
    """Skips the 2-process tests, with the reason, where 2 gloo processes cannot start here."""
    probe = tmp_path_factory.mktemp("probe") / "probe.py"
    probe.write_text("import torch, torch.distributed as dist\ndist.init_process_group('gloo')\n"
                     "t = torch.ones(1)\ndist.all_reduce(t)\nassert t.item() == 2\ndist.destroy_process_group()\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(probe)]
    try:
        done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"2 gloo processes cannot start here: {e}")
    if done.returncode != 0:
        pytest.skip(f"2 gloo processes cannot start here: {(done.stdout + done.stderr)[-500:]}")


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many_photos")
    for i in range(3):
        random_photo(72, 88, seed=20 + i).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="session")
def three_shards(tmp_path_factory, tiny_vae_dir, photos):
    """3 shards of 4 pairs (32 px crops, 16×16 latents)."""
    out = tmp_path_factory.mktemp("three_shards")
    prepare(photos, out, tiny_vae_dir, size=32, crops_per_image=4, images_per_shard=1)
    return out


@pytest.fixture(scope="session")
def two_shards(tmp_path_factory, tiny_vae_dir, photos):
    """2 shards of 4 pairs: a global batch of 8 is every pair, whichever process reads which shard."""
    two = tmp_path_factory.mktemp("two_photos")
    for name in ("p0.png", "p1.png"):
        (two / name).write_bytes((photos / name).read_bytes())
    out = tmp_path_factory.mktemp("two_shards")
    prepare(two, out, tiny_vae_dir, size=32, crops_per_image=4, images_per_shard=1)
    return out


# ---------------------------------------------------------------- the stream (one process plays each rank)

def rows(batch) -> set:
    return {tuple(x.flatten().tolist()) for x in batch["x1"]}


def test_ranks_read_disjoint_shards_in_an_order_fixed_by_the_seed(three_shards):
    every = rows(load_shards(three_shards)[0])
    for world in (2, 3, 5):  # 5 processes on 3 shards: shards are split into interleaved parts
        for epoch in range(3):
            pieces = [set(epoch_pieces(3, 0, epoch, r, world)) for r in range(world)]
            assert all(not (a & b) for i, a in enumerate(pieces) for b in pieces[i + 1:])
            parts = -(-world // 3)
            assert set().union(*pieces) == {(shard, part, parts) for shard in range(3) for part in range(parts)}
    # The pairs the 2 ranks read in their first epoch: disjoint, and together every pair once.
    sizes = [sum(4 for _ in epoch_pieces(3, 0, 0, r, 2)) for r in range(2)]
    seen = [rows(next(pair_batches(three_shards, n, seed=0, rank=r, world=2))) for r, n in enumerate(sizes)]
    assert len(seen[0]) == sizes[0] and len(seen[1]) == sizes[1]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == every
    # The order is the seed's: the same again, another for another seed; `start` continues where a run stopped.
    stream = lambda seed, start=0: pair_batches(three_shards, 5, seed=seed, rank=1, world=2, start=start)
    a, b, c = ([next(s)["x1"] for _ in range(4)] for s in (stream(0), stream(0), stream(1)))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not all(torch.equal(x, y) for x, y in zip(a, c))
    later = stream(0, start=10)
    assert torch.equal(next(later)["x1"], torch.cat(a)[10:15])


# ---------------------------------------------------------------- 2 processes

def test_two_processes_take_the_same_step_as_one(tmp_path, two_shards, two_processes):
    # regression-l2 draws no noise, so the gradient of a batch does not depend on which process holds which pair.
    same = dict(objective="regression-l2", batch_size=8, max_steps=2, warmup_steps=2, lr=1e-4)
    cfg = config_file(tmp_path / "two", two_shards, **same)
    launch(accelerate_launch("--config", cfg, "--out", tmp_path / "two"))
    effective = json.loads((tmp_path / "two" / "config.json").read_text())["effective"]
    assert (effective["processes"], effective["per_process_batch"], effective["global_batch"]) == (2, 4, 8)
    train(TrainConfig(**settings(two_shards, out=str(tmp_path / "one"), **same)))
    train(TrainConfig(**settings(two_shards, out=str(tmp_path / "accum"), grad_accum=2, **same)))
    train(TrainConfig(**settings(two_shards, out=str(tmp_path / "half"), **{**same, "batch_size": 4})))
    two, one, accum, half = (model_weights(tmp_path / n) for n in ("two", "one", "accum", "half"))
    torch.manual_seed(0)  # the seed: the weights all runs started from
    start = build_model("tiny", 4, **TINY_MODEL).state_dict()
    gap = lambda a, b: max((a[k] - b[k]).abs().max().item() for k in a)
    assert gap(two, start) > 1e-4  # the steps moved the weights
    assert gap(two, one) < 1e-6 and gap(accum, one) < 1e-6
    assert gap(half, one) > 1e-5  # a different batch gives different weights: the comparison can fail


def test_sigkill_then_resume_auto_equals_an_uninterrupted_run(tmp_path, three_shards, two_processes):
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs Linux's /proc/PID/task/PID/children to find torchrun's workers")
    cfg = config_file(tmp_path, three_shards, max_steps=30, checkpoint_every=5)
    launch(torchrun("--config", cfg, "--out", tmp_path / "whole"))
    run = subprocess.Popen(torchrun("--config", cfg, "--out", tmp_path / "killed"), env=child_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = [run.pid]
    try:
        deadline = time.time() + TIMEOUT
        while not (tmp_path / "killed" / "checkpoints" / "step_0000005").exists():
            assert run.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.02)
    finally:
        pids = process_tree(run.pid)
        kill(pids)
        run.wait()
        wait_gone(pids)
    assert len(pids) == 3  # torchrun and its 2 workers
    reached = int(newest(tmp_path / "killed").name[5:])
    assert 5 <= reached < 30
    resumed = launch(torchrun("--config", cfg, "--out", tmp_path / "killed", "--resume", "auto"))
    assert f"from step {reached}" in resumed.stdout
    for name in ("model", "ema"):
        a, b = model_weights(tmp_path / "whole", name), model_weights(tmp_path / "killed", name)
        assert newest(tmp_path / "killed").name == "step_0000030"
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert losses(tmp_path / "whole") == losses(tmp_path / "killed")


def test_sigterm_finishes_the_step_and_checkpoints(tmp_path, three_shards, two_processes):
    cfg = config_file(tmp_path, three_shards, max_steps=100000, checkpoint_every=100000)
    log = tmp_path / "run" / "log.csv"
    with open(tmp_path / "output.txt", "w") as output:
        run = subprocess.Popen(torchrun("--config", cfg, "--out", tmp_path / "run"), env=child_env(), stdout=output,
                               stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + TIMEOUT
            while not (log.exists() and len(log.read_text().splitlines()) > 3):  # training has begun
                assert run.poll() is None and time.time() < deadline
                time.sleep(0.05)
            run.send_signal(signal.SIGTERM)  # to torchrun, which passes it on to its workers
            run.wait(timeout=TIMEOUT)
        finally:
            kill(process_tree(run.pid) if run.poll() is None else [])
    output = (tmp_path / "output.txt").read_text()
    folder = newest(tmp_path / "run")
    step = int(folder.name[5:])
    assert checkpoint_problem(folder) is None and 3 <= step < 100000
    assert f"stopped by SIGTERM at step {step}" in output
    assert json.loads((folder / "complete.json").read_text())["step"] == step


def test_fsdp2_shards_are_gathered_into_checkpoints_and_scattered_back(tmp_path, two_processes):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "fsdp2_worker.py"), str(tmp_path)]
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("restored exactly") == 2


# ---------------------------------------------------------------- checkpoints and prepare, in this process

def test_truncated_or_altered_checkpoints_are_skipped(tmp_path, three_shards, capsys):
    cfg = lambda out, **kw: TrainConfig(**settings(three_shards, out=str(tmp_path / out), checkpoint_every=2, **kw))
    train(cfg("whole", max_steps=6))
    train(cfg("broken", max_steps=4))
    with pytest.raises(ValueError, match="--resume"):  # a second fresh start would overwrite them
        train(cfg("broken", max_steps=6))
    damaged = tmp_path / "broken" / "checkpoints" / "step_0000004" / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    train(cfg("broken", max_steps=6), resume="auto")
    err = capsys.readouterr().err
    assert "skipping checkpoint" in err and "step_0000004: model.safetensors is truncated" in err
    a, b = model_weights(tmp_path / "whole"), model_weights(tmp_path / "broken")
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed from step 2, and exactly
    # Same length, one byte changed: the recorded sha256 catches it.
    state = newest(tmp_path / "broken") / "state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    assert "sha256" in checkpoint_problem(newest(tmp_path / "broken"))
    assert [f.name for f in (tmp_path / "broken" / "checkpoints").iterdir()] == ["step_0000004", "step_0000006"]


def test_global_batch_accumulation_and_lr_scaling_are_worked_out_and_recorded(tmp_path, three_shards, capsys):
    cfg = TrainConfig(**settings(three_shards, out=str(tmp_path / "run"), max_steps=1, batch_size=8, grad_accum=2,
                                 lr_scaling="sqrt", reference_batch=2, lr=1e-3))
    train(cfg)
    assert "global batch 8 = 4 per process × 2 accumulation × 1; lr 0.002" in capsys.readouterr().out
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["effective"] == {"processes": 1, "distributed": "NO", "global_batch": 8, "per_process_batch": 4,
                                    "grad_accum": 2, "lr": 2e-3, "lr_scaling": "sqrt", "mixed_precision": "no",
                                    "start_step": 0}
    assert TrainConfig.load(tmp_path / "run" / "config.json") == cfg  # the record is a config file again
    with pytest.raises(ValueError, match="multiple of 1 process"):
        train(TrainConfig(**settings(three_shards, out=str(tmp_path / "odd"), batch_size=6, grad_accum=4)))


def test_sharded_prepare_and_merge_equal_one_prepare(tmp_path, tiny_vae_dir, photos, capsys, monkeypatch):
    one = prepare(photos, tmp_path / "one", tiny_vae_dir, size=32, images_per_shard=1)
    args = ["prepare", str(photos), "--out", str(tmp_path / "sharded"), "--vae", str(tiny_vae_dir), "--size", "32",
            "--images-per-shard", "1"]
    for rank in (1, 0):  # as torchrun would start them: the rank from the environment
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main(args) == 0
        assert ((tmp_path / "sharded" / "manifest.json").exists()) == (rank == 0)  # the last one merges
    assert json.loads((tmp_path / "sharded" / "manifest.rank1-of-2.json").read_text())["shards"] == \
        ["shard_00001.safetensors"]
    (tmp_path / "sharded" / "manifest.json").unlink()
    assert main(["prepare", "--merge", str(tmp_path / "sharded")]) == 0
    merged = json.loads((tmp_path / "sharded" / "manifest.json").read_text())
    assert {**merged, "skipped": None} == {**one, "skipped": None} and set(merged["skipped"]) == set(one["skipped"])
    a, b = load_shards(tmp_path / "one")[0], load_shards(tmp_path / "sharded")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for rank in range(4):  # 4 ranks for 3 photos: rank 3 has no shard to make, and says so
        prepare(photos, tmp_path / "four", tiny_vae_dir, size=32, images_per_shard=1, rank=rank, world_size=4)
    assert {**load_shards(tmp_path / "four")[1], "skipped": None} == {**one, "skipped": None}
    (tmp_path / "sharded" / "manifest.rank0-of-2.json").unlink()
    assert main(["prepare", "--merge", str(tmp_path / "sharded")]) == 2
    assert "rank(s) 0 of 2 have not finished" in capsys.readouterr().err

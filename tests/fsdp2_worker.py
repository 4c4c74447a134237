"""Run by tests/test_distributed.py under torchrun (2 CPU processes): fmboost's EMA and checkpoint helpers on a
U-Net sharded by FSDP2's fully_shard, as `distributed: fsdp` shards it on GPUs (accelerate's FSDP plugin itself
runs only on GPUs). Saving gathers whole tensors; restoring scatters them back into shards, exactly."""
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from fmboost.models.presets import build_model
from fmboost.training.checkpoints import restore
from fmboost.training.distributed import full_tensors
from fmboost.training.train import make_optimizer, update_ema
from tests.conftest import TINY_MODEL


class Wrapped:
    """What accelerate.prepare returns for an optimizer: the torch optimizer as .optimizer."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.state_dict, self.load_state_dict = optimizer.state_dict, optimizer.load_state_dict


def sharded_run(mesh):
    torch.manual_seed(0)
    model = build_model("tiny", 4, **TINY_MODEL)
    for block in model.unet.down_blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = Wrapped(make_optimizer(model.parameters(), 1e-3, 0.0, fused=False))
    sched = torch.optim.lr_scheduler.LambdaLR(opt.optimizer, lambda step: 1.0)
    return model, opt, sched, {n: p.detach().clone().float() for n, p in model.named_parameters()}


def step(model, opt, ema, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 16, 16, generator=g)
    model(x, torch.rand(2, generator=g), x).square().mean().backward()
    opt.optimizer.step()
    opt.optimizer.zero_grad()
    update_ema(ema, model, 0.9)


def main(folder: Path):
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model, opt, sched, ema = sharded_run(mesh)
    for seed in (1, 2):
        step(model, opt, ema, seed)
    whole, averaged = full_tensors(model.state_dict()), full_tensors(ema)  # collectives: on every process
    optimizer = opt.state_dict()
    optimizer["state"] = {i: full_tensors(s) for i, s in optimizer["state"].items()}
    assert isinstance(next(model.parameters()), torch.distributed.tensor.DTensor)
    assert whole["unet.conv_in.weight"].shape == (8, 8, 3, 3)  # gathered: whole, not a shard
    if dist.get_rank() == 0:
        save_file({**whole, **averaged}, str(folder / "ema.safetensors"))
        torch.save({"optimizer": optimizer, "scheduler": sched.state_dict(), "step": 2}, folder / "state.pt")
    dist.barrier()
    again, opt2, sched2, ema2 = sharded_run(mesh)
    again.load_state_dict(model.state_dict())
    assert restore(folder, again, ema2, opt2, sched2) == 2
    step(model, opt, ema, 3)
    step(again, opt2, ema2, 3)  # the same step after a restore: the same weights, EMA and all
    for a, b in ((model.state_dict(), again.state_dict()), (ema, ema2)):
        a, b = full_tensors(a), full_tensors(b)
        assert all(torch.equal(a[k], b[k]) for k in a)
    print(f"rank {dist.get_rank()}: restored exactly")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

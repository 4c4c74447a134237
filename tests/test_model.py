import pytest
import torch

from fmboost.flow.objective import cfm_loss
from fmboost.models.presets import PRESETS, build_model
from fmboost.solvers.ode import solve
from tests.conftest import tiny_unet


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset,paper", [("faces", 113e6), ("general", 306e6)])
def test_paper_presets_match_the_paper_parameter_counts(preset, paper):
    with torch.device("meta"):  # counts parameters without allocating 1.2 GB
        model = build_model(preset)
    assert abs(count(model) - paper) / paper < 0.10


def test_tiny_preset_is_cpu_sized_and_runs():
    model = build_model("tiny")
    assert 1e6 <= count(model) <= 5e6
    x = torch.randn(2, 4, 16, 16)
    assert model(x, torch.rand(2), x).shape == x.shape
    assert PRESETS["faces"]["head_channels"] == 64 and PRESETS["faces"]["num_res_blocks"] == 3


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge")


def test_overfitting_one_pair_makes_one_euler_step_reproduce_x1():
    torch.manual_seed(0)
    model = tiny_unet()
    x1, x_cond = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = cfm_loss(model, x1, x_cond, sigma_min=0.0, tau=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    pred, nfe = solve(lambda x, t: model(x, t, x_cond), x_cond.clone(), steps=1, solver="euler")
    assert nfe == 1
    start_error = (x_cond - x1).abs().mean()
    assert (pred - x1).abs().mean() < 0.05 * start_error


def test_sr_network_starts_as_the_identity_flow_and_keeps_any_size():
    model = build_model("sr", 8, channels=16, num_blocks=2)
    x = torch.randn(2, 8, 13, 7)  # odd sizes: the network never changes resolution
    assert model.size_multiple == 1
    assert torch.equal(model(x, torch.rand(2), x), torch.zeros_like(x))  # v = 0: x1 = x0 until trained


def test_sr_network_reads_t_and_the_condition():
    torch.manual_seed(0)
    model = build_model("sr", 4, channels=16, num_blocks=2)
    for p in model.parameters():  # move the zero-initialised layers so every input can matter
        torch.nn.init.normal_(p, std=0.1)
    x, c = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    v = model(x, torch.tensor([0.2]), c)
    assert not torch.allclose(v, model(x, torch.tensor([0.8]), c))
    assert not torch.allclose(v, model(x, torch.tensor([0.2]), torch.randn(1, 4, 8, 8)))
    assert not torch.allclose(v, model(torch.randn(1, 4, 8, 8), torch.tensor([0.2]), c))


def test_a_patched_sr_network_runs_its_blocks_on_folded_patches():
    """patch 2: the blocks see 1/2 of the latent's size with 4× the input channels, and the output is unfolded to
    the latent's own size, each output pixel from its own patch (no mixing of the folding's order)."""
    torch.manual_seed(0)
    model = build_model("sr", 4, channels=16, num_blocks=2, patch=2)
    assert model.size_multiple == 2 and model.conv_in.in_channels == 2 * 4 * 4
    x = torch.randn(1, 4, 8, 6)
    assert torch.equal(model(x, torch.rand(1), x), torch.zeros_like(x))  # still the identity flow at init
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    seen = []
    model.blocks[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    v = model(x, torch.tensor([0.5]), x)
    assert v.shape == x.shape and seen == [torch.Size([1, 16, 4, 3])]
    # with the blocks and conv_in made pointwise, latent pixel (i, j) depends on its own patch only
    model.conv_in.weight.data[..., [0, 0, 2, 2], [0, 2, 0, 2]] = 0
    for conv in [model.conv_in, model.conv_out] + [c for b in model.blocks for c in (b.conv1, b.conv2)]:
        keep = conv.weight.data[..., 1:2, 1:2].clone()
        conv.weight.data.zero_()
        conv.weight.data[..., 1:2, 1:2] = keep
    y = x.clone()
    y[..., 0, 0] += 1  # a pixel of the first 2×2 patch
    diff = (model(y, torch.tensor([0.5]), x) - model(x, torch.tensor([0.5]), x)).abs().sum(1)[0]
    assert diff[:2, :2].sum() > 0 and diff[2:].sum() == 0 and diff[:, 2:].sum() == 0


def test_sr_block_computes_its_equation_and_trains():
    """The block's fused, in-place form must stay h + conv₂(SiLU(conv₁(h)·(1 + scale) + shift)), with the same
    gradients: a slip here would change every model trained or sampled since."""
    from fmboost.models.resnet import ResBlock

    torch.manual_seed(0)
    block = ResBlock(6, 10).double()
    for p in block.parameters():  # conv₂ starts at zero: move it so both convolutions count
        torch.nn.init.normal_(p, std=0.3)
    h = torch.randn(2, 6, 9, 7, dtype=torch.float64, requires_grad=True)
    emb = torch.randn(2, 10, dtype=torch.float64)

    def equation(h):
        scale, shift = block.film(emb)[:, :, None, None].chunk(2, dim=1)
        return h + block.conv2(torch.nn.functional.silu(block.conv1(h) * (1 + scale) + shift))

    out, want = block(h, emb), equation(h)
    assert torch.allclose(out, want, atol=1e-12)
    weights = [h, block.conv1.weight, block.film.weight, block.conv2.weight]
    got = torch.autograd.grad(out.square().sum(), weights)
    expected = torch.autograd.grad(want.square().sum(), weights)
    assert all(torch.allclose(g, e, atol=1e-10) for g, e in zip(got, expected))
    x = h.detach().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(block(x, emb), equation(x), atol=1e-12)


@pytest.mark.parametrize("preset,overrides", [("sr", dict(channels=16, num_blocks=2)), ("tiny", {}),
                                              ("sr", dict(channels=16, num_blocks=2, patch=2))])
def test_a_saved_network_loads_as_its_own_class(tmp_path, preset, overrides):
    from fmboost.models.networks import load_network

    torch.manual_seed(0)
    model = build_model(preset, 4, **overrides)
    model.save_pretrained(tmp_path / "cfm")
    loaded = load_network(tmp_path / "cfm")
    assert type(loaded) is type(model)
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(loaded(x, torch.tensor([0.3]), x), model(x, torch.tensor([0.3]), x))


def test_a_network_of_an_unknown_class_is_refused(tmp_path):
    from fmboost.models.networks import load_network

    (tmp_path / "config.json").write_text('{"_class_name": "Mystery"}')
    with pytest.raises(ValueError, match="a Mystery network, which fmboost does not know"):
        load_network(tmp_path)


def test_cpu_threads_follow_the_idle_cores(monkeypatch):
    from fmboost.models import device

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(device, "idle_cpus", lambda: 1.1)  # another process holds one of the two cores
    assert device.cpu_threads() == 3  # a thread per core and one more for the shared core
    monkeypatch.setattr(device, "idle_cpus", lambda: 0.0)  # both busy: one thread
    assert device.cpu_threads() == 1
    monkeypatch.setattr(device, "idle_cpus", lambda: 1.9)  # quiet: every core
    assert device.cpu_threads() == 2
    monkeypatch.setattr(device, "idle_cpus", lambda: None)  # not readable: every core
    assert device.cpu_threads() == 2
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(device, "idle_cpus", lambda: 5.8)  # two of eight busy: a thread per idle core
    assert device.cpu_threads() == 6
    monkeypatch.setattr(device, "idle_cpus", lambda: 3.2)  # five of eight busy: two per idle core, one per busy
    assert device.cpu_threads() == 11
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's choice wins
    assert device.cpu_threads() == torch.get_num_threads()


def test_idle_cpus_reads_proc_stat():
    from fmboost.models.device import idle_cpus

    import os
    from pathlib import Path

    idle = idle_cpus(0.01)
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat on this system")
    assert idle is not None and 0.0 <= idle <= os.cpu_count()


def test_freed_memory_is_kept_for_reuse_on_cpu_loads_unless_the_user_chose(monkeypatch, tiny_model_dir):
    import platform

    from fmboost.models import device
    from fmboost.pipelines import upscale

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert device.reuse_freed_memory() is False  # the user's own malloc setting wins
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert device.reuse_freed_memory() is True
    calls = []
    monkeypatch.setattr(upscale, "reuse_freed_memory", lambda: calls.append(1))
    upscale.FMBoostPipeline.from_pretrained(tiny_model_dir, device="cpu")
    assert calls == [1]

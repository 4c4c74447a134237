"""`fmboost upscale clip.mp4` (issue 26): frames, timing and audio kept, PNG frames, resume, no partial output on an
interruption, bad clips refused in one line, and the temporal layers (equal to the image model at init, skipped by
--per-frame). Every clip is made here with PyAV: a few frames of a few pixels."""
from __future__ import annotations

import json
import os
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from fmboost.cli.main import main
from fmboost.data.files import sha256
from tests.conftest import random_photo

av = pytest.importorskip("av")


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def scene(w: int, h: int, k: int) -> np.ndarray:
    """Frame k of a pan over a random photo: moves one pixel per frame."""
    a = np.asarray(random_photo(h + 4, w + 16, seed=3))
    return np.ascontiguousarray(a[2:2 + h, k:k + w])


def make_clip(path, frames=6, w=32, h=24, fps=12, audio=False, pts=None, codec="libx264"):
    """A clip of `frames` frames (pts in the stream's time base when given: a variable rate), AAC audio if asked."""
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        if pts is not None:
            v.time_base = v.codec_context.time_base = Fraction(1, fps)
        a = c.add_stream("aac", rate=16000) if audio else None
        if a is not None:
            a.layout = "mono"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(scene(w, h, i), format="rgb24")
            if pts is not None:
                f.pts, f.time_base = pts[i], Fraction(1, fps)
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            n = int(16000 * frames / fps)
            s = (np.sin(np.arange(n) / 7) * 0.3).astype(np.float32)[None]
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(s[:, k:k + 1024], format="flt", layout="mono")
                af.sample_rate = 16000
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def packets(path, kind):
    with av.open(str(path)) as c:
        stream = getattr(c.streams, kind)[0]
        return stream, [(p.pts, bytes(p)) for p in c.demux(stream) if p.size]


def stream_facts(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(s) if p.size)
        return s.time_base, s.average_rate, pts


def decoded(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def randomize(module, seed=0):
    """Non-zero weights everywhere, so the zero-initialised layers do something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return module


@pytest.fixture(scope="module")
def video_model(tmp_path_factory, tiny_vae_dir):
    """A tiny CFMResNet with random temporal layers (not the identity), saved as a model folder with temporal/."""
    from fmboost.autoencoders.vae import Autoencoder
    from fmboost.models.resnet import CFMResNet
    from fmboost.models.temporal import TemporalLayers
    from fmboost.pipelines.upscale import FMBoostPipeline

    net = randomize(CFMResNet(latent_channels=4, channels=8, num_blocks=2, emb_channels=16))
    temporal = randomize(TemporalLayers.for_network(net, hidden=4), seed=1)
    path = tmp_path_factory.mktemp("video_model")
    FMBoostPipeline(Autoencoder.from_pretrained(tiny_vae_dir), net, temporal=temporal, steps=1,
                    solver="euler").save_pretrained(path)
    return path


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_clip_keeps_every_frame_its_timing_and_its_audio(tmp_path, video_model, capsys):
    clip = make_clip(tmp_path / "clip.mp4", audio=True)
    code, out, err = run(capsys, "upscale", clip, "--model", video_model, "-o", tmp_path / "up.mp4")
    assert code == 0, err
    frames = decoded(tmp_path / "up.mp4")
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert stream_facts(tmp_path / "up.mp4") == stream_facts(clip)  # time base, rate, every frame's pts
    assert packets(tmp_path / "up.mp4", "audio")[1] == packets(clip, "audio")[1]  # copied unchanged
    assert listing(tmp_path) == ["clip.mp4", "up.mp4"]


def test_frames_as_a_png_folder_and_gif_input(tmp_path, video_model, capsys):
    gif = tmp_path / "anim.gif"
    ims = [Image.fromarray(scene(20, 14, k)) for k in range(4)]
    ims[0].save(gif, save_all=True, append_images=ims[1:], duration=100, loop=0)
    code, _, err = run(capsys, "upscale", gif, "--model", video_model, "--format", "png", "-o", tmp_path / "frames")
    assert code == 0, err
    assert listing(tmp_path / "frames") == [f"{i:06d}.png" for i in range(1, 5)]
    with Image.open(tmp_path / "frames" / "000001.png") as im:
        assert im.size == (40, 28)
    code, _, err = run(capsys, "upscale", gif, "--model", video_model, "--per-frame")
    assert code == 0, err
    assert len(decoded(tmp_path / "anim_x2.mp4")) == 4  # a gif becomes an mp4 unless -o says .gif


def test_resume_skips_finished_frames(tmp_path, video_model, capsys):
    clip = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "frames"
    assert run(capsys, "upscale", clip, "--model", video_model, "--format", "png", "-o", out)[0] == 0
    marker = Image.new("RGB", (64, 48), "red")
    marker.save(out / "000002.png")
    for name in ("000005.png", "000006.png"):
        (out / name).unlink()
    code, _, err = run(capsys, "upscale", clip, "--model", video_model, "--format", "png", "-o", out, "--resume")
    assert code == 0, err
    assert len(listing(out)) == 6
    with Image.open(out / "000002.png") as im:  # finished: not redone
        assert np.asarray(im)[..., 0].min() == 255


class Interrupt:
    """upscale_window that is interrupted (Ctrl-C) at its `at`-th call."""

    def __init__(self, at):
        from fmboost.pipelines import video

        self.calls, self.at, self.real = 0, at, video.upscale_window

    def __call__(self, *a):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.real(*a)


@pytest.mark.parametrize("extra", [(), ("--format", "png", "-o", "frames"), ("--per-frame",)])
def test_ctrl_c_leaves_no_partial_output(tmp_path, video_model, capsys, monkeypatch, extra):
    from fmboost.pipelines import video

    clip = make_clip(tmp_path / "clip.mp4", audio=True)
    monkeypatch.setattr(video, "WINDOW", 2)
    monkeypatch.setattr(video, "upscale_window", Interrupt(2))
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "upscale", clip, "--model", video_model, *extra)
    assert code == 130 and "interrupted" in err
    assert listing(tmp_path) == ["clip.mp4"]


def test_an_interrupted_video_resumes_from_its_finished_frames(tmp_path, video_model, capsys, monkeypatch):
    from fmboost.pipelines import video

    clip = make_clip(tmp_path / "clip.mp4", audio=True)
    monkeypatch.setattr(video, "WINDOW", 2)
    monkeypatch.setattr(video, "upscale_window", Interrupt(3))
    out = tmp_path / "up.mp4"
    assert run(capsys, "upscale", clip, "--model", video_model, "-o", out, "--resume")[0] == 130
    assert not out.exists() and len(listing(tmp_path / ".up.mp4.frames")) == 4  # two windows of two
    counter = Interrupt(0)
    monkeypatch.setattr(video, "upscale_window", counter)
    code, _, err = run(capsys, "upscale", clip, "--model", video_model, "-o", out, "--resume")
    assert code == 0, err
    assert counter.calls == 1  # the last window only
    assert len(decoded(out)) == 6 and stream_facts(out) == stream_facts(clip)
    assert listing(tmp_path) == ["clip.mp4", "up.mp4"]


def bad_clips(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    for name in ("empty.mkv", "empty.mp4"):  # a video stream and no frames
        with av.open(str(tmp_path / name), "w") as c:
            s = c.add_stream("libx264", rate=12)
            s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
            c.start_encoding()
    make_clip(tmp_path / "vfr.mkv", frames=6, pts=[0, 1, 2, 4, 5, 8])
    make_clip(tmp_path / "ok.mp4")
    return [("junk.mp4", [], "not a readable video"), ("empty.mkv", [], "no frames"), ("empty.mp4", [], "no frames"),
            ("vfr.mkv", [], "variable frame rate"), ("ok.mp4", ["--size", "63x47"], "even width and height"),
            ("ok.mp4", ["--max-pixels", "300"], "add --tile"),
            ("ok.mp4", ["--format", "jpg"], "png")]


def test_bad_clips_are_one_line_exit_2_and_nothing_written(tmp_path, video_model, capsys):
    for name, extra, words in bad_clips(tmp_path):
        before = listing(tmp_path)
        code, out, err = run(capsys, "upscale", tmp_path / name, "--model", video_model, *extra)
        assert code == 2, (name, err)
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert listing(tmp_path) == before, name


def test_an_odd_sized_input_is_fine_at_x2(tmp_path, video_model, capsys):
    clip = tmp_path / "odd.mkv"
    with av.open(str(clip), "w") as c:
        v = c.add_stream("ffv1", rate=10)
        v.width, v.height, v.pix_fmt = 21, 15, "yuv444p"
        for i in range(3):
            for p in v.encode(av.VideoFrame.from_ndarray(scene(21, 15, i), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    code, _, err = run(capsys, "upscale", clip, "--model", video_model, "-o", tmp_path / "odd.mp4")
    assert code == 0, err
    assert decoded(tmp_path / "odd.mp4")[0].shape == (30, 42, 3)


def test_temporal_layers_at_init_compute_the_image_model(video_model):
    from fmboost.models.resnet import CFMResNet
    from fmboost.models.temporal import TemporalLayers, TemporalResNet

    net = randomize(CFMResNet(latent_channels=4, channels=8, num_blocks=4, emb_channels=16)).eval()
    wrapped = TemporalResNet(net, TemporalLayers.for_network(net, hidden=4)).eval()
    x, c, t = torch.randn(6, 4, 10, 12), torch.randn(6, 4, 10, 12), torch.rand(6)
    with torch.no_grad():
        assert torch.equal(wrapped(x, t, c, frames=3), net(x, t, c))


def test_denser_layers_compute_what_the_sparser_ones_did(video_model):
    from fmboost.errors import InputError
    from fmboost.models.resnet import CFMResNet
    from fmboost.models.temporal import TemporalLayers, TemporalResNet

    net = randomize(CFMResNet(latent_channels=4, channels=8, num_blocks=4, emb_channels=16)).eval()
    sparse = randomize(TemporalLayers.for_network(net, hidden=4, every=2), seed=1).eval()
    dense = sparse.denser(1)
    assert dense.config.every == 1 and len(dense.mixes) == 4
    x, c, t = torch.randn(6, 4, 10, 12), torch.randn(6, 4, 10, 12), torch.rand(6)
    with torch.no_grad():
        want = TemporalResNet(net, sparse)(x, t, c, frames=3)
        assert torch.allclose(TemporalResNet(net, dense)(x, t, c, frames=3), want, atol=1e-6)
        assert not torch.allclose(net(x, t, c), want, atol=1e-4)  # the sparse layers do something to keep
    with pytest.raises(InputError, match="cannot be spread"):
        TemporalLayers.for_network(net, hidden=4, every=1).denser(2)


def test_per_frame_equals_the_image_path_and_aligned_differs(tmp_path, video_model):
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline.from_pretrained(video_model)
    assert pipe.aligned
    x = torch.stack([torch.from_numpy(scene(16, 12, k)).permute(2, 0, 1) for k in range(4)]).float() / 127.5 - 1
    per_frame = pipe.upscale_clip(x, aligned=False)
    images = torch.cat([pipe.upscale_tensor(f[None])[0] for f in x])
    assert torch.allclose(per_frame, images)
    assert not torch.allclose(pipe.upscale_clip(x, aligned=True), per_frame, atol=1e-4)


def test_a_clip_runs_in_bf16_autocast_through_a_back_projecting_model(tmp_path, video_model, capsys):
    """What `--dtype auto` does on a CPU with bf16 units: the temporal layers under autocast, then the output stage
    in fp32 (its resizes have no bf16 kernels)."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(video_model, folder)
    config = json.loads((folder / "fmboost.json").read_text())
    (folder / "fmboost.json").write_text(json.dumps({**config, "back_projection": 1, "color_fix": "luma"}))
    clip = make_clip(tmp_path / "clip.mp4")
    outs = {}
    for dtype in ("fp32", "bf16"):
        outs[dtype] = tmp_path / f"{dtype}.mp4"
        code, _, err = run(capsys, "upscale", clip, "--model", folder, "--dtype", dtype, "-o", outs[dtype])
        assert code == 0 and "Traceback" not in err, err
    fp32, bf16 = (np.stack(decoded(outs[d])).astype(np.float64) for d in ("fp32", "bf16"))
    assert fp32.shape == bf16.shape and np.abs(fp32 - bf16).mean() < 4


def test_temporal_training_resumes(tmp_path, video_model, photos_dir):
    from fmboost.training.temporal import TemporalConfig, train_temporal

    cfg = TemporalConfig(model=str(video_model), photos=(str(photos_dir),), out=str(tmp_path / "run"), size=16,
                         frames=3, clips=1, steps=2, checkpoint_every=1, holdout_every=0, hidden=4)
    made = train_temporal(cfg)
    assert (made / "config.json").is_file()
    # which image flow the layers were trained beside: they fit that one
    flow = video_model / "cfm" / "diffusion_pytorch_model.safetensors"
    assert json.loads((made / "training.json").read_text())["flow_sha256"] == sha256(flow)
    cfg.steps = 3
    train_temporal(cfg, resume=True)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]


def test_a_later_stage_starts_from_trained_layers_and_refuses_others(tmp_path, video_model, photos_dir):
    from fmboost.errors import InputError
    from fmboost.models.temporal import TemporalLayers
    from fmboost.training.temporal import TemporalConfig, train_temporal

    trained = video_model / "temporal"  # random, not the identity: a fresh start would not be near them
    cfg = TemporalConfig(model=str(video_model), photos=(str(photos_dir),), out=str(tmp_path / "stage2"), size=16,
                         frames=3, clips=1, steps=1, checkpoint_every=1, holdout_every=0, hidden=4, lr=1e-6,
                         init=str(trained))
    made = train_temporal(cfg)
    before = TemporalLayers.from_pretrained(trained).state_dict()
    after = TemporalLayers.from_pretrained(made).state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-4) for k in before)
    # a later stage may add layers between the trained ones (every 1 from every 2): those start as the identity
    cfg.out, cfg.every = str(tmp_path / "denser"), 1
    dense = TemporalLayers.from_pretrained(train_temporal(cfg)).state_dict()
    assert all(torch.allclose(before[k], dense[k.replace("mixes.0", "mixes.1")], atol=1e-4) for k in before)
    assert all(dense[k].abs().max() < 1e-4 for k in ("mixes.0.out.weight", "mixes.0.out.bias"))
    cfg.out, cfg.hidden, cfg.every = str(tmp_path / "other"), 8, 2
    with pytest.raises(InputError, match="not temporal layers of this shape"):
        train_temporal(cfg)


def test_info_says_whether_a_model_has_temporal_layers(video_model, tiny_model_dir, capsys):
    code, out, _ = run(capsys, "info", video_model)
    assert code == 0 and "video        temporal layers" in out and "another flow" not in out
    code, out, _ = run(capsys, "info", tiny_model_dir)
    assert code == 0 and "frame by frame" in out


def test_info_says_when_the_temporal_layers_were_trained_beside_another_flow(video_model, tmp_path, capsys):
    import shutil

    model = shutil.copytree(video_model, tmp_path / "model")
    made = model / "temporal" / "training.json"
    flow = sha256(model / "cfm" / "diffusion_pytorch_model.safetensors")
    made.write_text(json.dumps({"steps": 5, "flow_sha256": flow}))
    code, out, _ = run(capsys, "info", model)
    assert code == 0 and "trained 5 steps" in out and "another flow" not in out
    made.write_text(json.dumps({"steps": 5, "flow_sha256": "0" * 64}))
    code, out, _ = run(capsys, "info", model)
    assert code == 0 and "trained beside another flow" in out

"""What users of upscalers expect of `fmboost upscale` (issue 14): alpha, ICC profile and EXIF kept, folders
walked with their structure, any scale or size, precision per device, progress that does not garble the output."""
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageCms

from fmboost.cli.main import main
from tests.conftest import random_photo


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def rgba_photo(h=20, w=24) -> Image.Image:
    """Colour with an alpha ramp from left to right and a fully transparent hole whose hidden colour is black."""
    a = np.asarray(random_photo(h, w)).copy()
    alpha = np.tile(np.linspace(60, 255, w).astype(np.uint8), (h, 1))
    alpha[5:12, 6:14] = 0
    a[5:12, 6:14] = 0
    return Image.fromarray(np.dstack([a, alpha]), "RGBA")


def test_alpha_is_upscaled_and_written_back(tmp_path, tiny_model_dir, capsys):
    rgba_photo().save(tmp_path / "logo.png")
    code, _, err = run(capsys, "upscale", tmp_path / "logo.png", "--model", tiny_model_dir, "--steps", "1")
    assert code == 0, err
    with Image.open(tmp_path / "logo_x2.png") as out:
        assert out.mode == "RGBA" and out.size == (48, 40)
        alpha = np.asarray(out.getchannel("A"), dtype=float)
    expected = np.asarray(rgba_photo().getchannel("A").resize((48, 40), Image.LANCZOS), dtype=float)
    assert np.abs(alpha - expected).max() <= 1
    assert alpha[14:20, 16:24].max() < 40  # the hole stays transparent


def test_hidden_colour_under_transparency_does_not_bleed_into_the_edges(tmp_path, capsys):
    rgba_photo().save(tmp_path / "logo.png")
    assert run(capsys, "upscale", tmp_path / "logo.png", "--method", "bicubic")[0] == 0
    with Image.open(tmp_path / "logo_x2.png") as out:
        rgb = np.asarray(out.convert("RGB"), dtype=float)
    # The hidden black of the hole would pull the visible ring around it towards black.
    ring = np.r_[rgb[8, 8:30], rgb[26, 8:30]]
    assert ring.mean() > 60


def test_formats_without_alpha_get_the_image_flattened_on_white(tmp_path, capsys):
    rgba_photo().save(tmp_path / "logo.png")
    code, _, err = run(capsys, "upscale", tmp_path / "logo.png", "--method", "bicubic", "-o", tmp_path / "logo.jpg")
    assert code == 0, err
    with Image.open(tmp_path / "logo.jpg") as out:
        assert out.mode == "RGB"
        assert np.asarray(out)[14:20, 16:24].mean() > 230  # transparent → the white page


def exif_photo(path, orientation=6):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = orientation, "FMBoost Camera"
    im = random_photo(16, 24)  # 24 wide, 16 high as stored; orientation 6 turns it to 16 × 24
    im.save(path, quality=95, icc_profile=icc, exif=exif.tobytes())
    return icc


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_icc_profile_and_exif_are_kept_and_orientation_applied(tmp_path, tiny_model_dir, capsys, fmt):
    icc = exif_photo(tmp_path / "cam.jpg")
    code, _, err = run(capsys, "upscale", tmp_path / "cam.jpg", "--model", tiny_model_dir, "--steps", "1",
                       "--format", fmt)
    assert code == 0, err
    with Image.open(tmp_path / f"cam_x2.{fmt}") as out:
        assert out.size == (32, 48)  # upright: the pixels were turned, ×2
        assert out.info.get("icc_profile") == icc
        exif = out.getexif()
        assert exif.get(0x010F) == "FMBoost Camera" and exif.get(0x0112, 1) == 1  # not turned a second time


def test_a_recursive_folder_keeps_its_structure_and_survives_a_corrupt_file(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "in"
    (src / "a" / "b").mkdir(parents=True)
    random_photo(16, 16, seed=1).save(src / "top.png")
    random_photo(16, 20, seed=2).save(src / "a" / "mid.jpg")
    random_photo(12, 16, seed=3).save(src / "a" / "b" / "deep.webp")
    (src / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "upscale", src, "-o", out, "-r", "--model", tiny_model_dir, "--steps", "1")
    assert code == 1  # some failed, the others were written
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a/b/deep_x2.png", "a/mid_x2.png", "top_x2.png"]
    assert "broken.png" in err and "1 of 4" in err and "Traceback" not in err
    assert stdout.count(" -> ") == 3
    # Again: the outputs exist, so they are skipped and counted; the broken file still fails (exit 1).
    code, stdout, _ = run(capsys, "upscale", src, "-o", out, "-r", "--model", tiny_model_dir, "--steps", "1")
    assert code == 1 and "skipped 3" in stdout and " -> " not in stdout
    # Without -r only the folder's own images; with --overwrite they are redone.
    code, stdout, _ = run(capsys, "upscale", src, "-o", out, "--model", tiny_model_dir, "--steps", "1", "--overwrite")
    assert code == 0 and stdout.count(" -> ") == 1


def test_an_output_folder_inside_the_input_folder_is_not_walked(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    random_photo(16, 16).save(src / "p.png")
    for _ in range(2):
        code, stdout, _ = run(capsys, "upscale", src, "-o", src / "big", "-r", "--method", "bicubic")
        assert code == 0
    assert sorted(p.name for p in src.rglob("*.png")) == ["p.png", "p_x2.png"]


def test_a_folder_without_images_is_a_user_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "upscale", tmp_path / "empty", "--method", "bicubic")
    assert code == 2 and "no images" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags,size,tag", [(["--scale", "3"], (72, 48), "x3"), (["--scale", "1.5"], (36, 24), "x1.5"),
                                            (["--size", "50x30"], (50, 30), "50x30"),
                                            (["--size", "100x"], (100, 67), "100w")])
def test_any_scale_or_size(tmp_path, tiny_model_dir, capsys, flags, size, tag):
    random_photo(16, 24).save(tmp_path / "p.png")
    code, _, err = run(capsys, "upscale", tmp_path / "p.png", "--model", tiny_model_dir, "--steps", "1", *flags)
    assert code == 0, err
    with Image.open(tmp_path / f"p_{tag}.png") as out:
        assert out.size == size


def test_the_model_is_cascaded_as_often_as_the_scale_needs(tmp_path, monkeypatch, tiny_model_dir, capsys):
    from fmboost.pipelines.scaling import model_passes
    from fmboost.pipelines.upscale import FMBoostPipeline

    assert [model_passes(10, 10, (t, t), 2) for t in (15, 20, 21, 30, 40, 41, 80)] == [1, 1, 2, 2, 2, 3, 3]
    seen = []
    call = FMBoostPipeline.upscale
    monkeypatch.setattr(FMBoostPipeline, "upscale",
                        lambda self, im, **kw: seen.append(im.size) or call(self, im, **kw))
    random_photo(10, 12).save(tmp_path / "p.png")
    assert run(capsys, "upscale", tmp_path / "p.png", "--model", tiny_model_dir, "--steps", "1", "--scale", "3")[0] == 0
    assert seen == [(12, 10), (24, 20)]  # ×2 twice (×4), then down to ×3


def test_bad_scale_and_size_are_one_line_errors(tmp_path, capsys):
    random_photo(16, 16).save(tmp_path / "p.png")
    for flags in (["--scale", "0"], ["--size", "big"], ["--size", "0x10"], ["--scale", "2", "--size", "9x9"],
                  ["--scale", "100"]):
        code, _, err = run(capsys, "upscale", tmp_path / "p.png", *flags)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, flags
    assert not list(tmp_path.glob("p_*"))


def test_precision_per_device(monkeypatch):
    import torch

    from fmboost.pipelines import precision

    with pytest.raises(ValueError, match="fp16"):
        precision.resolve_dtype("fp16", "cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    dtype, notice = precision.resolve_dtype("bf16", "cpu")
    assert dtype == torch.float32 and "fp32" in notice and "\n" not in notice
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_dtype("bf16", "cpu") == (torch.bfloat16, None)
    assert precision.resolve_dtype("fp16", "cuda") == (torch.float16, None)
    assert precision.resolve_dtype("fp32", "cpu") == (torch.float32, None)
    # auto: bf16 exactly where the CPU computes it, never emulated; fp32 on devices without a rule for bf16
    assert precision.resolve_dtype("auto", "cpu") == (torch.bfloat16, None)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_dtype("auto", "cpu") == (torch.float32, None)
    assert precision.resolve_dtype("auto", "mps") == (torch.float32, None)
    with pytest.raises(ValueError, match="auto"):
        precision.resolve_dtype("fp8", "cpu")


@pytest.mark.parametrize("native", [False, True])
def test_the_cli_computes_in_bf16_by_default_only_where_the_cpu_has_it(tiny_model_dir, tmp_path, capsys,
                                                                      monkeypatch, native):
    import torch

    from fmboost.pipelines import precision
    from fmboost.pipelines.upscale import FMBoostPipeline

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    seen = []
    upscale = FMBoostPipeline.upscale
    monkeypatch.setattr(FMBoostPipeline, "upscale", lambda self, *a, **kw: seen.append(kw["dtype"]) or
                        upscale(self, *a, **kw))
    random_photo(16, 16).save(tmp_path / "p.png")
    code, _, err = run(capsys, "upscale", tmp_path / "p.png", "--model", tiny_model_dir, "--device", "cpu")
    assert code == 0 and "Traceback" not in err and (tmp_path / "p_x2.png").is_file()
    assert seen == [torch.bfloat16 if native else torch.float32]
    code, _, err = run(capsys, "upscale", tmp_path / "p.png", "--model", tiny_model_dir, "--device", "cpu",
                       "--dtype", "fp32", "-o", tmp_path / "q.png")
    assert code == 0 and seen[-1] == torch.float32


def test_fp16_on_cpu_and_a_missing_mps_are_one_line_errors(tmp_path, capsys):
    import torch

    random_photo(16, 16).save(tmp_path / "p.png")
    code, _, err = run(capsys, "upscale", tmp_path / "p.png", "--device", "cpu", "--dtype", "fp16")
    assert code == 2 and "fp16" in err and len(err.strip().splitlines()) == 1
    if not torch.backends.mps.is_available():
        code, _, err = run(capsys, "upscale", tmp_path / "p.png", "--device", "mps")
        assert code == 2 and "mps" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("p_*"))


def test_bf16_autocast_gives_the_same_picture(tiny_model_dir):
    import torch

    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    im = random_photo(16, 16)
    a = np.asarray(pipe(im, steps=1), dtype=float)
    b = np.asarray(pipe(im, steps=1, dtype=torch.bfloat16), dtype=float)
    assert np.abs(a - b).mean() < 8 and not np.array_equal(a, b)  # computed in bf16, yet the same image


def test_help_says_what_seed_does_and_the_exit_codes(capsys):
    import json

    from fmboost import EMBEDDED_MODELS

    with pytest.raises(SystemExit):
        main(["upscale", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "seed of the noise augmentation of x0" in text and "changes nothing at τ = 0" in text
    assert "exit codes" in text and "1 some images failed" in text
    # …which is true: the embedded models start from the clean x0.
    assert all(json.loads((p / "fmboost.json").read_text())["tau"] == 0 for p in EMBEDDED_MODELS.values())


def test_file_lines_are_not_printed_over_the_progress_bar(tmp_path):
    """On a terminal, with several inputs, the bar goes to stderr and each `->` line starts on a clean line."""
    import fcntl
    import pty
    import struct
    import termios

    for i in range(3):
        random_photo(16, 16, seed=i).save(tmp_path / f"in{i}.png")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a 120-column terminal
    proc = subprocess.Popen([sys.executable, "-m", "fmboost.cli.main", "upscale", *(str(tmp_path / f"in{i}.png")
                             for i in range(3)), "--method", "bicubic"], stdout=slave, stderr=slave,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    assert "upscale" in text and "3/3" in text  # the bar was drawn
    lines = [line.split("\r")[-1] for line in text.split("\n") if " -> " in line]
    assert len(lines) == 3
    assert all(re.match(r"\S*in\d\.png -> ", line.lstrip()) for line in lines), lines


def test_tiles_and_dopri5_show_progress(capsys):
    import torch
    import torch.nn.functional as F

    from fmboost.pipelines.tiling import tiled_upscale
    from fmboost.solvers.ode import solve

    up = lambda part: F.interpolate(part, scale_factor=2, mode="nearest")
    tiled_upscale(up, torch.zeros(1, 3, 200, 200), 2, tile=96, overlap=16, disable=False)
    err = capsys.readouterr().err
    assert "tiles" in err and "0/9 " in err  # the bar knows the tile count (its last state may be skipped by tqdm)
    solve(lambda x, t: -x, torch.ones(2, 3), solver="dopri5", disable=False)
    err = capsys.readouterr().err
    assert "dopri5" in err and "t=0.00" in err and "t=1.00" in err  # follows the solver's time


def test_a_strip_is_refused_at_its_padded_size_before_any_model_work(tmp_path, tiny_model_dir, capsys, monkeypatch):
    from fmboost.pipelines.upscale import FMBoostPipeline

    Image.new("RGB", (1, 1000), (90, 120, 150)).save(tmp_path / "strip.png")  # 1,000 pixels: within the limit
    m = FMBoostPipeline.from_pretrained(tiny_model_dir).pad_multiple
    real_upscale = FMBoostPipeline.upscale
    monkeypatch.setattr(FMBoostPipeline, "upscale", lambda *a, **k: pytest.fail("the model ran"))
    code, _, err = run(capsys, "upscale", tmp_path / "strip.png", "--model", tiny_model_dir, "--max-pixels", "1000")
    assert code == 2 and not (tmp_path / "strip_x2.png").exists()
    line = err.strip()
    assert "\n" not in line and f"1×1000 is processed as {m}×1000 = {m * 1000:,} pixels" in line and "--tile" in line
    monkeypatch.setattr(FMBoostPipeline, "upscale", real_upscale)  # tiled, it runs: memory follows the tile
    code, _, err = run(capsys, "upscale", tmp_path / "strip.png", "--model", tiny_model_dir, "--max-pixels", "1000",
                       "--tile", "--steps", "1")
    assert code == 0, err
    with Image.open(tmp_path / "strip_x2.png") as out:
        assert out.size == (2, 2000)

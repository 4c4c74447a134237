"""The command line end to end on a tiny random autoencoder, and its answers to bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fmboost.cli.main import main
from tests.conftest import random_photo


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_train_upscale_info_end_to_end(tmp_path, tiny_vae_dir, photos_dir, capsys):
    (photos_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, out, _ = run(capsys, "prepare", photos_dir, "--out", tmp_path / "shards", "--vae", tiny_vae_dir,
                       "--size", "32", "--crops-per-image", "2")
    assert code == 0 and "6 training pairs" in out and "broken.jpg" in out
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {channels: 8, norm_groups: 4, head_channels: 8}\nsample_every: 0\nbatch_size: 2\n")
    code, out, _ = run(capsys, "train", "--config", cfg, "--data", tmp_path / "shards", "--preset", "tiny",
                       "--max-steps", "2", "--out", tmp_path / "run")
    assert code == 0 and (tmp_path / "run" / "model" / "fmboost.json").exists()
    photo = tmp_path / "photo.png"
    random_photo(20, 24).save(photo)
    code, out, _ = run(capsys, "upscale", photo, "--model", tmp_path / "run" / "model", "--steps", "2")
    assert code == 0
    with Image.open(tmp_path / "photo_x2.png") as im:
        assert im.size == (48, 40)
    code, out, _ = run(capsys, "info", tmp_path / "run" / "model")
    info = json.loads(out)
    assert code == 0 and info["scale"] == 2 and info["cfm"]["parameters"] > 0


def test_upscale_several_inputs_into_a_folder_with_every_solver(tmp_path, tiny_model_dir, capsys):
    inputs = []
    for i in range(2):
        inputs.append(tmp_path / f"in{i}.jpg")
        random_photo(16, 20, seed=i).save(inputs[-1])
    for solver in ("euler", "midpoint", "heun", "rk4", "dopri5"):
        code, _, err = run(capsys, "upscale", *inputs, "-o", tmp_path / solver, "--model", tiny_model_dir,
                           "--solver", solver, "--steps", "1")
        assert code == 0, err
        assert sorted(p.name for p in (tmp_path / solver).iterdir()) == ["in0_x2.png", "in1_x2.png"]


def test_existing_output_is_kept_unless_overwrite(tmp_path, tiny_model_dir, capsys):
    photo = tmp_path / "a.png"
    random_photo(16, 16).save(photo)
    (tmp_path / "a_x2.png").write_bytes(b"keep me")
    code, _, err = run(capsys, "upscale", photo, "--model", tiny_model_dir)
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "a_x2.png").read_bytes() == b"keep me"
    assert run(capsys, "upscale", photo, "--model", tiny_model_dir, "--overwrite")[0] == 0


def write_bad(kind, path):
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a PNG\n")
    elif kind == "truncated":
        random_photo(64, 64).save(path.with_suffix(".full.jpg"), quality=95)
        data = path.with_suffix(".full.jpg").read_bytes()
        path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("kind,name", [("missing", "nothere.png"), ("zero", "zero.png"), ("text", "text.png"),
                                       ("truncated", "cut.jpg")])
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, tiny_model_dir, capsys, kind, name):
    path = tmp_path / name
    write_bad(kind, path)
    code, out, err = run(capsys, "upscale", path, "--model", tiny_model_dir)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "error" in err and name in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*_x2*"))


def test_one_bad_input_among_good_ones_writes_nothing(tmp_path, tiny_model_dir, capsys):
    good = tmp_path / "good.png"
    random_photo(16, 16).save(good)
    (tmp_path / "bad.png").write_bytes(b"")
    code, _, _ = run(capsys, "upscale", good, tmp_path / "bad.png", "--model", tiny_model_dir)
    assert code == 2 and not list(tmp_path.glob("*_x2*"))


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P", "LA"])
def test_unusual_modes_are_converted_not_refused(tmp_path, tiny_model_dir, capsys, mode):
    rgb = random_photo(18, 22)
    if mode == "I;16":
        im = Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257))
    else:
        im = rgb.convert(mode)
    im.save(tmp_path / "odd.png")
    code, _, err = run(capsys, "upscale", tmp_path / "odd.png", "--model", tiny_model_dir, "--steps", "1")
    assert code == 0, err
    with Image.open(tmp_path / "odd_x2.png") as out:  # alpha is kept (issue 14): RGBA and LA come out RGBA
        assert out.mode == ("RGBA" if mode in ("RGBA", "LA") else "RGB") and out.size == (44, 36)


def test_sixteen_bit_images_keep_their_contrast():
    from fmboost.data.images import to_rgb

    ramp = (np.linspace(0, 65535, 64).astype(np.uint16)[None].repeat(4, 0))
    rgb = np.asarray(to_rgb(Image.fromarray(ramp)))
    assert rgb.min() == 0 and rgb.max() == 255


def test_images_over_the_pixel_limit_need_tile(tmp_path, tiny_model_dir, capsys):
    photo = tmp_path / "big.png"
    random_photo(40, 40).save(photo)
    code, _, err = run(capsys, "upscale", photo, "--model", tiny_model_dir, "--max-pixels", "1000")
    assert code == 2 and "--tile" in err and not (tmp_path / "big_x2.png").exists()
    code, _, err = run(capsys, "upscale", photo, "--model", tiny_model_dir, "--max-pixels", "1000", "--tile")
    assert code == 0, err
    assert Image.open(tmp_path / "big_x2.png").size == (80, 80)


def test_bad_model_and_flags_are_user_errors(tmp_path, capsys):
    photo = tmp_path / "a.png"
    random_photo(16, 16).save(photo)
    code, _, err = run(capsys, "upscale", photo, "--model", tmp_path / "nomodel")
    assert code == 2 and "no such folder" in err
    code, _, err = run(capsys, "upscale", photo, "--steps", "0")
    assert code == 2 and "--steps" in err
    code, _, err = run(capsys, "train", "--out", tmp_path / "r")
    assert code == 2 and "--data" in err


def test_the_installed_command_prints_help():
    out = subprocess.run([sys.executable, "-m", "fmboost.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for sub in ("upscale", "prepare", "train", "info"):
        assert sub in out.stdout


def test_embedded_model_names_resolve_unless_a_local_folder_has_that_name(tmp_path, monkeypatch, tiny_model_dir):
    from fmboost import EMBEDDED_MODELS
    from fmboost.cli.common import resolve_model

    monkeypatch.chdir(tmp_path)
    assert resolve_model("default") == str(EMBEDDED_MODELS["default"])
    assert resolve_model("real") == str(EMBEDDED_MODELS["real"])
    assert resolve_model("runs/x/model") == "runs/x/model"
    (tmp_path / "real").mkdir()
    assert resolve_model("real") == "real"


def test_outputs_get_a_normal_files_permissions(tmp_path):
    import os
    import stat

    from fmboost.data.images import save_image_atomic

    old = os.umask(0o022)
    try:
        save_image_atomic(Image.new("RGB", (4, 4)), tmp_path / "out.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o644  # not mkstemp's owner-only 0o600

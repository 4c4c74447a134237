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
    code, out, _ = run(capsys, "info", tmp_path / "run" / "model", "--json")
    info = json.loads(out)
    assert code == 0 and info["scale"] == 2 and info["cfm"]["parameters"] > 0
    assert not any(k.startswith("_") for k in info["cfm"])  # no `_name_or_path`: where it was saved from
    code, out, _ = run(capsys, "info", tmp_path / "run" / "model")
    assert code == 0 and "×2" in out and "step(s) of euler" in out and f"{info['cfm']['parameters']:,}" in out


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


# ---------------------------------------------------------------- issue 23: the rough edges a new user hits

def test_grey_in_grey_out_with_the_embedded_default(tmp_path, capsys):
    """A grey photo (mode L, or RGB with R == G == B) comes out grey, channels exactly equal, through the command
    line and the library alike; a colour photo keeps its colours."""
    from fmboost.pipelines.upscale import FMBoostPipeline

    grey = random_photo(24, 28).convert("L")
    grey.save(tmp_path / "l.png")
    grey.convert("RGB").save(tmp_path / "rgb.png")
    for name in ("l", "rgb"):
        code, _, err = run(capsys, "upscale", tmp_path / f"{name}.png", "--steps", "1")
        assert code == 0, err
        a = np.asarray(Image.open(tmp_path / f"{name}_x2.png").convert("RGB")).astype(int)
        assert a.shape == (48, 56, 3) and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    pipe = FMBoostPipeline.from_pretrained("default")
    out = np.asarray(pipe(grey.convert("RGB"), steps=1, tile=True, tile_size=32)).astype(int)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    colour = np.asarray(pipe(random_photo(24, 28), steps=1)).astype(int)
    assert np.abs(colour[..., 0] - colour[..., 1]).max() > 10


@pytest.mark.parametrize("argv,words", [
    (["--tile-size", "0"], ["--tile-size", "at least"]),
    (["--tile-size", "1"], ["--tile-size", "at least"]),
    (["--size", "0x0"], ["--size", "positive"]),
    (["--size", "1920"], ["--size", "WIDTHxHEIGHT"]),
    (["--steps", "0"], ["--steps", "at least 1"]),
    (["--tau", "-1"], ["--tau", "between 0 and 999"]),
    (["--tau", "1000"], ["--tau", "between 0 and 999"]),
])
def test_upscale_flag_mistakes_name_the_flag(tmp_path, capsys, argv, words):
    random_photo(16, 16).save(tmp_path / "a.png")
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and all(w in err for w in words), err
    assert "overlap of" not in err and not list(tmp_path.glob("*_x*"))


def test_a_size_over_the_limit_names_the_pass_that_is_too_large(tmp_path, capsys):
    random_photo(60, 80).save(tmp_path / "a.png")
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", "--size", "300x", "--max-pixels", "10000")
    # 80×60 → 300×225 takes two ×2 passes: the second runs on 160×120 = 19,200 pixels, over 10,000.
    assert code == 2 and "160×120" in err and "pass 2 of 2" in err, err


def test_several_inputs_into_one_image_name_are_refused_with_advice_that_helps(tmp_path, capsys):
    for name in ("a", "b"):
        random_photo(16, 16).save(tmp_path / f"{name}.png")
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "single.png",
                       "--method", "bicubic")
    assert code == 2 and "-o FOLDER" in err and not (tmp_path / "single.png").exists()
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", "--method", "bicubic", "-o", tmp_path / "one.png")
    assert code == 0
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", "--method", "bicubic", "-o", tmp_path / "one.png")
    assert code == 2 and "another -o" in err  # they used -o already


def test_every_run_counts_what_it_wrote_and_a_rerun_keeps_the_failure_summary(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        random_photo(16, 16, seed=i).save(src / f"p{i}.png")
    (src / "broken.png").write_bytes(b"not a png")
    code, out, err = run(capsys, "upscale", src, "--method", "bicubic")
    assert code == 1 and "2 of 3 image(s) written" in out and "1 of 3 image(s) failed" in err
    code, out, err = run(capsys, "upscale", src, "--method", "bicubic")
    assert code == 1 and "0 of 3 image(s) written" in out and "skipped 2" in out
    assert "1 of 3 image(s) failed" in err and "broken.png" in err


def test_generate_model_does_not_swallow_the_prompt():
    from fmboost.cli.main import build_parser

    args = build_parser().parse_args(["generate", "--base", "B", "--model", "M1", "a lighthouse", "--model", "M2"])
    assert args.prompt == ["a lighthouse"] and args.model == ["M1", "M2"]


def test_an_unknown_flag_prints_the_commands_usage_and_version_is_known(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "usage: fmboost info" in err and "--bogus" in err
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    from fmboost import __version__
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_info_names_its_argument_and_prints_text(capsys):
    code, _, err = run(capsys, "info", "nosuchdir")
    assert code == 2 and "MODEL nosuchdir" in err and "--model" not in err
    code, out, _ = run(capsys, "info")
    assert code == 0 and "embedded `default`" in out and "_name_or_path" not in out and not out.startswith("{")


def test_a_reader_who_leaves_gets_no_traceback(tmp_path):
    """`fmboost info | head` with head gone before fmboost writes: no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "fmboost.cli.main", "info"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves at once
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err and proc.returncode == 141, err


def test_a_missing_file_is_reported_before_torch_is_imported(tmp_path):
    code = ("import sys\nfrom fmboost.cli.main import main\ncode = main(sys.argv[1:])\n"
            "print('torch' in sys.modules)\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "upscale", str(tmp_path / "nothere.png")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "nothere.png: no such file" in done.stderr
    assert done.stdout.strip() == "False"


def test_tau_starts_the_flow_from_a_seeded_noised_x0(tmp_path, tiny_model_dir, capsys):
    random_photo(24, 24).save(tmp_path / "a.png")

    def upscale(tau, seed):
        out = tmp_path / f"tau{tau}_seed{seed}.png"
        assert run(capsys, "upscale", tmp_path / "a.png", "-o", out, "--tau", tau, "--seed", seed,
                   "--overwrite")[0] == 0
        return np.asarray(Image.open(out))

    assert np.array_equal(upscale(0, 0), upscale(0, 1))  # the clean x0: the seed draws nothing
    assert not np.array_equal(upscale(300, 0), upscale(300, 1))
    assert np.array_equal(upscale(300, 0), upscale(300, 0))
    out = tmp_path / "more_steps.png"
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", "-o", out, "--tau", 300, "--steps", 8)
    assert code == 0 and out.exists() and "notice: 8 steps" in err and "--tau 300 --steps 1" in err
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", "-o", out, "--tau", 300, "--steps", 1, "--overwrite")
    assert code == 0 and "notice" not in err


def test_a_tiled_upscale_shows_one_bar_over_every_network_evaluation(tiny_model_dir, capsys):
    from fmboost.pipelines.tiling import count_tiles
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    tiles = count_tiles(64, 64, 32)
    calls = []
    pipe(random_photo(64, 64), steps=2, solver="midpoint", tile=True, tile_size=32, disable=False,
         callback=calls.append)
    err = capsys.readouterr().err
    # The bar's total is every tile's evaluations (2 midpoint steps: 4 a tile) and it advances with each one, not
    # once a tile, so it moves (and has a rate for its ETA) within the first tile.
    assert tiles > 1 and f"{tiles} tiles" in err and f"0/{tiles * 4} " in err and "NFE" in err
    assert len(calls) == tiles * 4


def test_user_mistakes_in_every_command_are_one_line_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    from fmboost.cli import info

    code, _, err = run(capsys, "degrade", tmp_path / "none", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "no such folder" in err
    code, _, err = run(capsys, "generate", "--base", "b", "--model", "m")
    assert code == 2 and err.count("\n") == 1 and "no prompt" in err
    code, _, err = run(capsys, "eval", tmp_path, "--methods", "magic")
    assert code == 2 and err.count("\n") == 1
    (tmp_path / "bad.yaml").write_text("steps: [1,\n")
    for config in ("bad.yaml", "missing.yaml"):
        code, _, err = run(capsys, "train-autoencoder", "--config", tmp_path / config, "--data", tmp_path)
        assert code == 2 and err.count("\n") == 1 and config in err
    monkeypatch.setattr(info, "as_text", lambda d: 1 / 0)  # a bug, not a user's mistake
    with pytest.raises(ZeroDivisionError):
        main(["info"])


def test_device_and_solver_are_one_shared_flag(capsys):
    from fmboost.cli.main import build_parser

    parser = build_parser()
    for command in ("upscale", "eval", "generate", "prepare", "serve"):
        device = next(a for a in parser.commands[command]._actions if "--device" in a.option_strings)
        assert list(device.choices) == ["auto", "cpu", "cuda", "mps"], command
    for command in ("upscale", "eval", "generate"):
        solver = next(a for a in parser.commands[command]._actions if "--solver" in a.option_strings)
        assert solver.default is None and "dopri5" in solver.choices, command


def test_the_readme_first_commands_output_is_ignored_by_git_and_examples_are_not():
    import shutil
    from pathlib import Path

    root = Path(__file__).parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = lambda path: subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0
    assert ignored("astronaut_x2.png") and not ignored("examples/astronaut_x2.png")

"""`fmboost eval` end to end on two tiny photos with a tiny random model: files, rows, skips, user errors."""
import argparse
import csv
import json
import sys

import pytest
from PIL import Image

from fmboost.cli.eval import add_parser
from fmboost.evaluation.evaluate import downscale, evaluate, plan_runs
from tests.conftest import random_photo

FILES = ("results.csv", "results.json", "results.md", "psnr_vs_nfe.png", "ssim_vs_nfe.png",
         "seconds_vs_nfe.png", "grid.png")


@pytest.fixture
def hr_dir(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    random_photo(41, 52, seed=1).save(folder / "a.png")  # odd height: cropped to 40 for ×2
    random_photo(36, 44, seed=2).save(folder / "b.png")
    return folder


def eval_cli(*argv):
    parser = argparse.ArgumentParser(prog="fmboost")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", *map(str, argv)])
    return args.func(args)


def test_eval_end_to_end_writes_all_files(tmp_path, hr_dir, tiny_model_dir, capsys):
    out = tmp_path / "eval"
    code = eval_cli(hr_dir, "--model", tiny_model_dir, "--steps", "1,2", "--out", out, "--device", "cpu",
                    "--metrics", "psnr,ssim")
    assert code == 0
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == ["a", "b"] and results["scale"] == 2 and "CPU" in results["device"]
    rows = {(r["method"], r["steps"]): r for r in results["results"]}
    assert set(rows) == {("bicubic", None), ("lanczos", None), ("cfm", 1), ("cfm", 2), ("x0", None)}
    assert rows[("cfm", 2)]["nfe"] == 2 and rows[("cfm", 1)]["nfe"] == 1 and rows[("x0", None)]["nfe"] == 0
    assert rows[("cfm", 2)]["solver"] == "euler" and rows[("x0", None)]["solver"] is None
    assert all(r["seconds"] > 0 and 0 < r["ssim"] <= 1 and r["lpips"] is None for r in rows.values())
    # An untrained autoencoder decodes noise: bicubic on smooth photos must beat it by far.
    assert rows[("bicubic", None)]["psnr"] > rows[("x0", None)]["psnr"] + 5
    assert rows[("bicubic", None)]["psnr_y"] > 25
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 5
    md = (out / "results.md").read_text()
    assert md.count("\n| ") == 6 and "PSNR-Y" in md and "grid.png" in md
    with Image.open(out / "grid.png") as grid:
        assert grid.width >= 6 * 192  # HR, LR and five runs: two rows of up to six panels
    assert "results.md" in capsys.readouterr().out


def test_missing_metric_weights_are_skipped_with_one_line_each(tmp_path, hr_dir, capsys):
    empty = tmp_path / "hub"
    empty.mkdir()
    code = eval_cli(hr_dir, "--methods", "bicubic", "--metric-weights", empty, "--out", tmp_path / "eval")
    assert code == 0
    out = capsys.readouterr().out
    for metric in ("LPIPS", "FID", "p-FID"):
        lines = [line for line in out.splitlines() if line.startswith(f"skipped {metric}: ")]
        assert len(lines) == 1 and f"weights not found at {empty}" in lines[0]
    # NIQE needs no weights, but two 96×96 blocks: these 40×52 photos are too small for it.
    assert sum(line.startswith("skipped NIQE: needs two 96×96 blocks") for line in out.splitlines()) == 1
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert set(results["skipped"]) == {"lpips", "fid", "pfid", "niqe"}
    (row,) = results["results"]
    assert row["psnr"] > 25 and row["lpips"] is None and row["fid"] is None and row["pfid"] is None
    assert "skipped LPIPS: weights not found" in (tmp_path / "eval" / "results.md").read_text()


def test_given_low_res_inputs_match_the_downscaled_ones(tmp_path, hr_dir):
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    for path in hr_dir.iterdir():
        downscale(Image.open(path).convert("RGB"), 2)[1].save(lr_dir / f"{path.stem}.png")
    kw = dict(methods=["bicubic"], metrics=["psnr", "ssim"])
    own = evaluate(hr_dir, out_dir=tmp_path / "own", **kw)["results"][0]
    given = evaluate(hr_dir, out_dir=tmp_path / "given", lr_dir=lr_dir, **kw)["results"][0]
    assert given["psnr"] == pytest.approx(own["psnr"]) and given["ssim"] == pytest.approx(own["ssim"])


def test_center_crop_scores_the_central_square_of_every_photo(tmp_path, hr_dir):
    kw = dict(methods=["bicubic"], metrics=["psnr"])
    res = evaluate(hr_dir, out_dir=tmp_path / "crop", center_crop=30, **kw)
    assert res["center_crop"] == 30 and res["images"] == ["a", "b"]
    assert "- HR: the central 30×30 of each photo" in (tmp_path / "crop" / "results.md").read_text()
    # The same score as evaluating hand-made central crops.
    cropped = tmp_path / "cropped"
    cropped.mkdir()
    for path in hr_dir.iterdir():
        im = Image.open(path).convert("RGB")
        left, top = (im.width - 30) // 2, (im.height - 30) // 2
        im.crop((left, top, left + 30, top + 30)).save(cropped / path.name)
    by_hand = evaluate(cropped, out_dir=tmp_path / "by_hand", **kw)
    assert res["results"][0]["psnr"] == pytest.approx(by_hand["results"][0]["psnr"])
    assert res["results"][0]["psnr"] != pytest.approx(evaluate(hr_dir, out_dir=tmp_path / "full", **kw)
                                                      ["results"][0]["psnr"])


def test_nfe_counts_every_network_call(tmp_path, hr_dir, tiny_model_dir):
    res = evaluate(hr_dir, [tiny_model_dir], methods=["cfm"], steps=[2], solver="midpoint", max_images=1,
                   metrics=["psnr"], out_dir=tmp_path / "eval")
    (row,) = res["results"]
    assert row["nfe"] == 4 and res["images"] == ["a"]


def test_eval_scores_in_the_precision_it_is_given_and_records_it(tmp_path, hr_dir, tiny_model_dir):
    kw = dict(methods=["cfm"], steps=[1], max_images=1, metrics=["psnr"])
    fp32 = evaluate(hr_dir, [tiny_model_dir], out_dir=tmp_path / "a", dtype="fp32", **kw)
    bf16 = evaluate(hr_dir, [tiny_model_dir], out_dir=tmp_path / "b", dtype="bf16", **kw)
    assert fp32["dtype"] == "float32"
    from fmboost.models.device import cpu_has_native_bf16

    if cpu_has_native_bf16():  # elsewhere bf16 falls back to fp32, as `fmboost upscale --dtype bf16` does
        assert bf16["dtype"] == "bfloat16"
        assert bf16["results"][0]["psnr"] != fp32["results"][0]["psnr"]
    assert bf16["results"][0]["psnr"] == pytest.approx(fp32["results"][0]["psnr"], abs=0.5)


@pytest.mark.parametrize("argv,error,match", [
    (["--methods", "bicubic,magic"], ValueError, "unknown method"),
    (["--methods", "bicubic", "--metrics", "psnr,iq"], ValueError, "unknown metric"),
    (["--steps", "1,two"], ValueError, "integers"),
    (["--steps", "0"], ValueError, "at least 1"),
    (["--solver", "leapfrog"], SystemExit, "^2$"),  # argparse's choices: its usage message and exit 2
    (["--scale", "3"], ValueError, "upscales ×2: --scale 3 is not a power"),  # ×4 is two passes; ×3 is none
    (["--model", "no/such/model"], FileNotFoundError, "no such folder"),
    (["--lr-dir", "no/such/lr"], FileNotFoundError, "no such folder"),
    (["--methods", "bicubic", "--max-images", "0"], ValueError, "at least 1"),
    (["--methods", "bicubic", "--center-crop", "8"], ValueError, "at least 15"),
    (["--methods", "bicubic", "--center-crop", "50"], ValueError, "smaller than --center-crop 50"),
    (["--methods", "bicubic", "--center-crop", "20", "--lr-dir", "."], ValueError, "cannot be combined"),
])
def test_user_mistakes_raise_one_line_errors(tmp_path, hr_dir, tiny_model_dir, argv, error, match):
    if "--model" not in argv:
        argv = [*argv, "--model", str(tiny_model_dir)]
    with pytest.raises(error, match=match) as e:
        eval_cli(hr_dir, "--out", tmp_path / "eval", *argv)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "eval").exists()


def test_missing_hr_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        evaluate(tmp_path / "nothing", methods=["bicubic"])


def test_eval_is_a_subcommand_of_fmboost(tmp_path, hr_dir, capsys):
    from fmboost.cli.main import main

    assert main(["eval", str(hr_dir), "--methods", "bicubic", "--metrics", "psnr", "--out", str(tmp_path / "e")]) == 0
    assert main(["eval", str(hr_dir), "--steps", "1,two", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("fmboost eval: error:") and not (tmp_path / "f").exists()


def test_method_model_runs_a_regression_model_once(tmp_path, tiny_model_dir):
    import shutil

    regression = tmp_path / "regression"
    shutil.copytree(tiny_model_dir, regression)
    config = json.loads((regression / "fmboost.json").read_text())
    (regression / "fmboost.json").write_text(json.dumps({**config, "objective": "regression-l2"}))
    runs = plan_runs([tiny_model_dir, regression], ["model", "bicubic"], [1, 4])
    assert [(r["method"], r["steps"]) for r in runs] == [("bicubic", None), ("cfm", 1), ("cfm", 4),
                                                          ("regression-l2", None)]


def test_replace_section_rewrites_only_its_own_part(tmp_path):
    from fmboost.evaluation.report import replace_section

    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nintro\n")
    replace_section(doc, "a", "first\n")
    replace_section(doc, "b", "other\n")
    replace_section(doc, "a", "second\n")
    text = doc.read_text()
    assert text.startswith("# Results\n\nintro\n") and "first" not in text
    assert text.count("<!-- a:begin -->\nsecond\n<!-- a:end -->") == 1 and "other" in text


def test_raw_results_keep_meta_per_image_values_and_niqe(tmp_path, monkeypatch):
    hr = tmp_path / "big"
    hr.mkdir()
    for i in range(2):  # 196×200: two 96×96 NIQE blocks a side inside the 2-pixel border
        random_photo(196, 200, seed=i).save(hr / f"p{i}.png")
    raw = tmp_path / "results" / "set.json"
    argv = [hr, "--methods", "bicubic,lanczos", "--metrics", "psnr,ssim,niqe", "--out", tmp_path / "e",
            "--results-out", raw, "--tuned-on", "nothing (pixel filters)"]
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/fmboost", "eval", *map(str, argv)])
    assert eval_cli(*argv) == 0
    results = json.loads(raw.read_text())
    assert results == json.loads((tmp_path / "e" / "results.json").read_text())
    meta = results["meta"]
    assert meta["tuned_on"] == "nothing (pixel filters)"
    assert meta["command"].startswith(f"fmboost eval {hr} --methods") and "'nothing (pixel filters)'" in meta["command"]
    assert meta["machine"]["cpu_cores"] >= 1 and meta["machine"]["torch"] and meta["date"].endswith("Z")
    assert meta["git_commit"] is None or len(meta["git_commit"]) == 40
    assert results["hr_niqe"] > 0 and not results["skipped"]
    for row in results["results"]:
        per = row["per_image"]
        assert set(per) == {"psnr", "psnr_y", "ssim", "ssim_y", "niqe"}
        assert all(len(v) == 2 for v in per.values())
        assert row["niqe"] == pytest.approx(sum(per["niqe"]) / 2) and row["psnr"] == pytest.approx(sum(per["psnr"]) / 2)
    assert "NIQE ↓" in (tmp_path / "e" / "results.md").read_text()


def test_a_measurement_is_dirty_for_code_changes_not_for_its_own_outputs(tmp_path):
    import subprocess

    from fmboost.evaluation.provenance import git_state

    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "bsd68.json").write_text("{}\n")
    (tmp_path / "README.md").write_text("# r\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    commit, dirty = git_state(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "results" / "bsd68.json").write_text('{"psnr": 1}\n')  # the run's own first raw file
    (tmp_path / "README.md").write_text("# regenerated\n")
    assert git_state(tmp_path) == (commit, False)
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (commit, True)

"""Issue 25: ×4 of degraded photos. A model folder names the model of its later passes (`next_model`), so
`--model real --scale 4` runs real → default; `fmboost eval --degradation realesrgan` degrades HR itself, seeded, as
`fmboost degrade` does, and scores ×4 of a ×2 model by passes."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fmboost.cli.main import main
from fmboost.data.images import resize_by
from fmboost.data.model_config import ModelConfig
from fmboost.errors import InputError
from fmboost.evaluation.evaluate import evaluate
from fmboost.pipelines.cascade import Cascade, passes_for
from fmboost.pipelines.upscale import FMBoostPipeline
from tests.conftest import random_photo


def model_copy(src, dst, **settings):
    """A copy of a model folder whose fmboost.json says `settings` (steps tell the copies apart)."""
    shutil.copytree(src, dst)
    ModelConfig.read(dst).replace(**settings).write(dst)
    return dst


@pytest.fixture
def chain(tmp_path, tiny_model_dir):
    """first (2 steps) → second (3 steps): the second named by a path relative to the first."""
    second = model_copy(tiny_model_dir, tmp_path / "second", steps=3)
    first = model_copy(tiny_model_dir, tmp_path / "first", steps=2, next_model="../second")
    return first, second


def record_passes(monkeypatch) -> list:
    """(input size, the model's own steps) of every pipeline pass that runs."""
    seen, upscale = [], FMBoostPipeline.upscale
    monkeypatch.setattr(FMBoostPipeline, "upscale",
                        lambda self, im, *a, **kw: seen.append((im.size, self.config.steps)) or upscale(self, im, *a,
                                                                                                       **kw))
    return seen


def test_next_model_is_a_setting_that_round_trips_and_is_checked(tmp_path, tiny_model_dir):
    folder = model_copy(tiny_model_dir, tmp_path / "m", next_model="default")
    assert ModelConfig.read(folder).next_model == "default"
    assert "next_model" not in ModelConfig().to_dict()  # folders without one are written as before
    for bad in (3, "", " "):
        with pytest.raises(InputError, match="next_model"):
            ModelConfig(next_model=bad)


def test_upscale_x4_runs_the_next_model_for_the_second_pass(tmp_path, chain, monkeypatch, capsys):
    first, _ = chain
    seen = record_passes(monkeypatch)
    random_photo(10, 12).save(tmp_path / "p.png")
    assert main(["upscale", str(tmp_path / "p.png"), "--model", str(first), "--scale", "4"]) == 0, capsys.readouterr()
    assert seen == [((12, 10), 2), ((24, 20), 3)]  # each pass at its own model's steps
    with Image.open(tmp_path / "p_x4.png") as out:
        assert out.size == (48, 40)
    seen.clear()  # ×2 is one pass: the next model is never loaded
    loads = []
    monkeypatch.setattr(Cascade, "load", lambda self, where: loads.append(where))
    assert main(["upscale", str(tmp_path / "p.png"), "--model", str(first), "--overwrite"]) == 0
    assert seen == [((12, 10), 2)] and loads == []


def test_a_model_without_next_model_runs_itself_every_pass(tmp_path, tiny_model_dir, monkeypatch):
    seen = record_passes(monkeypatch)
    cascade = Cascade(FMBoostPipeline.from_pretrained(tiny_model_dir), tiny_model_dir)
    out, nfe = cascade.upscale(random_photo(8, 8), passes=3, steps=2)
    assert out.size == (64, 64) and nfe == 6 and [s for s, _ in seen] == [(8, 8), (16, 16), (32, 32)]
    assert cascade.names(3) == [tiny_model_dir.name] * 3


def test_a_pixel_next_model_resizes_the_first_pass(tmp_path, tiny_model_dir):
    folder = model_copy(tiny_model_dir, tmp_path / "m", next_model="bicubic")
    pipe = FMBoostPipeline.from_pretrained(folder)
    im = random_photo(8, 12)
    out, nfe = Cascade(pipe, folder).upscale(im, passes=2, steps=1)
    expected = resize_by(pipe.upscale(im, steps=1)[0], 2, "bicubic")
    assert nfe == 1 and np.array_equal(np.asarray(out), np.asarray(expected))


def test_a_next_model_of_another_factor_is_refused(tmp_path, tiny_model_dir):
    model_copy(tiny_model_dir, tmp_path / "x3", scale=3)
    folder = model_copy(tiny_model_dir, tmp_path / "m", next_model=str(tmp_path / "x3"))
    cascade = Cascade(FMBoostPipeline.from_pretrained(folder), folder)
    with pytest.raises(InputError, match="×3"):
        cascade.upscale(random_photo(8, 8), passes=2, steps=1)


def test_passes_for_accepts_powers_of_the_model_factor_only():
    assert [passes_for(f, 2) for f in (2, 4, 8)] == [1, 2, 3]
    for f in (3, 6, 1):
        with pytest.raises(InputError, match="power"):
            passes_for(f, 2)


@pytest.fixture
def hr_dir(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    random_photo(50, 66, seed=1).save(folder / "a.png")  # cropped to 48×64 for ×4
    random_photo(44, 40, seed=2).save(folder / "b.png")
    return folder


def test_eval_degradation_is_the_one_fmboost_degrade_writes(tmp_path, hr_dir, capsys):
    lr_dir = tmp_path / "lr"
    assert main(["degrade", str(hr_dir), str(lr_dir), "--scale", "4", "--seed", "3", "--png"]) == 0
    kw = dict(scale=4, methods=["bicubic"], metrics=["psnr", "ssim"], seed=3)
    given = evaluate(hr_dir, out_dir=tmp_path / "given", lr_dir=lr_dir, **kw)
    own = evaluate(hr_dir, out_dir=tmp_path / "own", degradation="realesrgan", **kw)
    other_seed = evaluate(hr_dir, out_dir=tmp_path / "seed4", degradation="realesrgan", **{**kw, "seed": 4})
    clean = evaluate(hr_dir, out_dir=tmp_path / "clean", **kw)
    score = lambda r: (r["results"][0]["psnr"], r["results"][0]["ssim"])  # noqa: E731
    assert score(own) == pytest.approx(score(given), abs=1e-9)
    assert score(own) != pytest.approx(score(other_seed)) and score(own) != pytest.approx(score(clean))
    assert own["degradation"] == {"name": "realesrgan", "seed": 3} and clean["degradation"] is None
    # The report says where the low-res inputs came from.
    assert "degraded by the realesrgan model (seed 3" in (tmp_path / "own" / "results.md").read_text()
    assert "PIL bicubic" in (tmp_path / "clean" / "results.md").read_text()


def test_eval_scores_x4_of_a_x2_model_by_its_cascade(tmp_path, hr_dir, chain, capsys):
    first, second = chain
    out = tmp_path / "eval"
    argv = ["eval", str(hr_dir), "--model", str(first), "--scale", "4", "--degradation", "realesrgan", "--seed", "1",
            "--methods", "cfm,bicubic", "--steps", "1,2", "--metrics", "psnr", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    rows = {(r["method"], r["steps"]): r for r in res["results"]}
    assert rows[("cfm", 1)]["nfe"] == 2 and rows[("cfm", 2)]["nfe"] == 4  # --steps per pass, two passes
    assert res["passes"]["first cfm 1"] == ["first", "second"] and res["scale"] == 4
    capsys.readouterr()
    assert main([*argv[:5], "3", *argv[6:]]) == 2
    err = capsys.readouterr().err
    assert "not a power" in err and len(err.strip().splitlines()) == 1


def test_eval_refuses_degradation_with_given_low_res_inputs(tmp_path, hr_dir, capsys):
    assert main(["eval", str(hr_dir), "--methods", "bicubic", "--degradation", "realesrgan", "--lr-dir",
                 str(hr_dir), "--out", str(tmp_path / "e")]) == 2
    assert "--lr-dir" in capsys.readouterr().err


def test_the_embedded_real_model_hands_its_second_pass_to_the_default():
    from fmboost import EMBEDDED_MODELS
    from fmboost.pipelines.cascade import next_location
    from fmboost.training.config import TrainConfig

    real = EMBEDDED_MODELS["real"]
    assert next_location(real, ModelConfig.read(real)) == str(EMBEDDED_MODELS["default"])
    root = EMBEDDED_MODELS["real"].parents[2]
    assert TrainConfig.load(str(root / "recipes" / "real" / "cfm.yaml")).next_model == "default"  # re-made with it


def real4_file(rows, seconds_peer=10.0):
    """A made-up raw file of benchmarks/real4.py: bicubic, fmboost at two step counts, Real-ESRGAN."""
    def r(method, psnr, ssim, niqe, shift, seconds, nfe):
        return {"method": method, "psnr": psnr, "ssim": ssim, "niqe": niqe, "sharpness": 0.9, "colour_shift": shift,
                "seconds": seconds, "nfe": nfe}
    meta = {"command": "python benchmarks/real4.py", "date": "2026-12-03T00:00:00Z", "git_commit": "a" * 40,
            "git_dirty": False, "machine": {"cpu": "CPU", "cpu_cores": 2, "torch_threads": 1}}
    return {"meta": meta, "set": "s", "scale": 4, "images": ["x", "y"], "threads": 1, "model": "real",
            "degradation": {"name": "realesrgan", "seed": 0}, "passes": ["real", "default"],
            "grid_method": "fmboost (--steps 1)", "hr_niqe": 3.5, "peers_skipped": {},
            "results": [r("bicubic", 20.0, 0.40, 9.0, 0.2, 0.01, 0), r(*rows[0]), r(*rows[1]),
                        r("esrgan4", 20.5, 0.45, 6.0, 2.0, seconds_peer, None)]}


def test_the_x4_section_renders_every_number_from_the_raw_files_and_says_each_criterion(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import doc_tables

    assert "No raw results yet" in doc_tables.real4_table(tmp_path)
    (tmp_path / "real4").mkdir()
    good = [("fmboost (--steps 1)", 20.71, 0.4612, 6.37, 0.8, 5.0, 2), ("fmboost (--steps 8)", 20.3, 0.44, 5.9, 0.8,
                                                                        30.0, 16)]
    bad = [("fmboost (--steps 1)", 20.2, 0.4612, 7.0, 1.4, 12.0, 2), good[1]]
    (tmp_path / "real4" / "bsd68.json").write_text(json.dumps(real4_file(good)))
    (tmp_path / "real4" / "set14.json").write_text(json.dumps(real4_file(bad)))
    text = doc_tables.real4_table(tmp_path)
    assert "20.71" in text and "0.4612" in text and "6.37" in text and "real → default" in text
    bsd, set14 = [line for line in text.splitlines() if line.startswith("- ")]
    assert ": no" not in bsd and bsd.count(": yes") == 5
    assert set14.count(": no") == 4 and "SSIM above both: yes" in set14
    assert "colour shift ≤ 1 level: no (bicubic, which only resizes the degraded photo: 0.20)" in set14
    nfe = doc_tables.real4_nfe(tmp_path)
    assert "| BSD68 | 16 | 20.30 |" in nfe and "esrgan4" not in nfe
    assert "real4_grid.png" in doc_tables.real4_grid(tmp_path)


def test_info_says_what_runs_the_later_passes(chain, tiny_model_dir, capsys):
    first, _ = chain
    assert main(["info", str(first)]) == 0
    assert "passes after the first by ../second (its next_model)" in capsys.readouterr().out
    assert main(["info", str(tiny_model_dir)]) == 0
    assert "passes after the first by this model again" in capsys.readouterr().out


def test_the_second_pass_is_chosen_by_psnr_then_niqe_and_other_models_are_compared_with_it():
    """recipes/real/cascade.py's rule (doc_tables.cascade_choice) and its --compare rows, which are never candidates."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import doc_tables

    row = lambda method, psnr, niqe, **kw: {"method": method, "psnr": psnr, "ssim": 0.5, "niqe": niqe, **kw}
    rows = [row("bicubic ×4", 21.0, 9.0), row("real → real", 20.4, 11.0), row("real → default", 20.61, 10.6),
            row("real → bicubic", 20.60, 10.7), row("one ×4 model", 20.9, 12.0, model="runs/x4")]
    choice = doc_tables.cascade_choice(rows)
    assert choice["method"] == "real → default"  # bicubic ×4 and the --compare row are not second passes
    text = doc_tables.compared(rows, choice)
    assert "`one ×4 model` (`--model runs/x4 --scale 4`): +0.29 dB PSNR" in text and "better" in text
    rows[-1]["psnr"] = 20.55
    assert "a tie in PSNR, worse by NIQE" in doc_tables.compared(rows, choice)
    assert doc_tables.compared(rows[:-1], choice) == ""
    rows.append(row("one ×4 model, clean x0", 20.0, 11.0, model="runs/x4", compare_tau=0.0))
    text = doc_tables.compared(rows, choice)
    assert "`one ×4 model, clean x0` (`--model runs/x4 --scale 4 --tau 0`): -0.61 dB" in text


def test_the_frontier_says_how_near_fmboost_comes_to_the_peers_niqe_at_bicubics_psnr(tmp_path):
    """doc_tables.real4_frontier from cascade.py's --taus and --peers-python rows: the lowest NIQE at or above
    bicubic's PSNR, the settings within the bar of Real-ESRGAN's NIQE, and the line along --tau."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import doc_tables

    row = lambda method, psnr, niqe, **kw: {"method": method, "psnr": psnr, "ssim": 0.5, "niqe": niqe,
                                            "colour_shift": 1.0, **kw}
    rows = [row("bicubic ×4", 20.5, 10.7), row("real → default", 20.6, 10.6), row("real → bicubic", 20.6, 10.7),
            row("real at --tau 50", 20.55, 9.0, tau=50.0), row("real at --tau 100", 20.35, 7.0, tau=100.0),
            row("esrgan4", 20.0, 4.3, peer=True)]
    (tmp_path / "real4").mkdir()
    (tmp_path / "real4" / "cascade.json").write_text(json.dumps({"results": rows[:-1], "images": ["a"]}))
    assert "No raw results yet" in doc_tables.real4_frontier(tmp_path)  # no peer row: nothing to say
    (tmp_path / "real4" / "cascade.json").write_text(json.dumps({"results": rows, "images": ["a", "b"]}))
    text = doc_tables.real4_frontier(tmp_path)
    assert "NIQE 4.30" in text and "-0.50 from bicubic" in text
    assert "fmboost's lowest NIQE is `real at --tau 50`: 9.00, +4.70 from Real-ESRGAN's" in text
    assert "NIQE within 0.5 of Real-ESRGAN's (4.80 or less): none of fmboost's settings measured here." in text
    assert "Both halves of the bar (PSNR at or above bicubic's, NIQE within it): no row measured here" in text
    rows.append(row("round 2 at τ 400", 19.9, 4.6, model="runs/t400"))
    (tmp_path / "real4" / "cascade.json").write_text(json.dumps({"results": rows, "images": ["a", "b"]}))
    assert "(4.80 or less): `round 2 at τ 400` (4.60, -0.60 dB from bicubic)." in doc_tables.real4_frontier(tmp_path)
    rows[-1]["psnr"] = 20.6
    (tmp_path / "real4" / "cascade.json").write_text(json.dumps({"results": rows, "images": ["a", "b"]}))
    assert "NIQE within it): `round 2 at τ 400`." in doc_tables.real4_frontier(tmp_path)
    doc_tables.real4_frontier_plot(tmp_path, tmp_path)
    assert Image.open(tmp_path / "real4_frontier.png").size[0] > 100

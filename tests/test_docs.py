"""The docs' generated sections against results/: `experiments/report.py --check` passes on the repository, fails
naming the doc and line when a figure is edited by hand or a raw file changes, and the ablation report averages
seeds. This is how CI runs the check."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import ablations  # noqa: E402
import report  # noqa: E402


def test_docs_match_the_committed_raw_results():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "experiments/report.py", "--check"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr


@pytest.fixture
def copy(tmp_path):
    """The docs and the raw files of the repository (results/ and the embedded real model's training.json and
    fmboost.json), in a folder the test may edit."""
    for path in {p for p, _, _ in report.SECTIONS} | {"fmboost/weights/real/training.json",
                                                      "fmboost/weights/real/fmboost.json"}:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    shutil.copytree(ROOT / "results", tmp_path / "results")
    return tmp_path


def section_lines(text: str, name: str) -> list[tuple[int, str]]:
    lines = text.splitlines()
    begin = lines.index(f"<!-- {name}:begin -->")
    end = lines.index(f"<!-- {name}:end -->")
    return [(i + 1, lines[i]) for i in range(begin + 1, end)]


def edit_a_figure(path: Path, name: str) -> int:
    """Changes one digit inside section `name` of `path`, as a hand edit would; returns its line number."""
    text = path.read_text()
    number, line = next((n, s) for n, s in section_lines(text, name) if s.startswith("|") and any(c.isdigit()
                                                                                                    for c in s))
    i = max(k for k, c in enumerate(line) if c.isdigit())
    edited = line[:i] + str((int(line[i]) + 1) % 10) + line[i + 1:]
    lines = text.splitlines(keepends=True)
    lines[number - 1] = edited + "\n"
    path.write_text("".join(lines))
    return number


def test_a_hand_edited_figure_fails_the_check_and_write_mode_restores_it(copy, capsys):
    original = (copy / "README.md").read_text()
    line = edit_a_figure(copy / "README.md", "presets")  # parameter counts, generated from the code
    assert report.main(["--check", "--root", str(copy)]) == 1
    err = capsys.readouterr().err
    assert f"README.md:{line}: differs from results/" in err
    assert report.main(["--root", str(copy)]) == 0
    assert (copy / "README.md").read_text() == original
    assert report.main(["--check", "--root", str(copy)]) == 0


def test_a_changed_raw_file_fails_the_check_until_the_docs_are_regenerated(copy, capsys):
    raws = sorted((copy / "results").rglob("*.json"))
    if not raws:
        pytest.skip("no raw results committed yet")
    raw = next((p for p in raws if p.name == "ldm_speed_cpu_quick.json"), raws[0])
    data = json.loads(raw.read_text())
    rows = data["components"] if "components" in data else None
    if rows:
        first = next(iter(rows.values()))
        first["seconds"] = first["seconds"] * 3 + 1
    else:
        data["results"][0]["psnr"] += 1.5
    raw.write_text(json.dumps(data))
    assert report.main(["--check", "--root", str(copy)]) == 1
    assert "differs from results/" in capsys.readouterr().err
    assert report.main(["--root", str(copy)]) == 0
    assert report.main(["--check", "--root", str(copy)]) == 0


def test_missing_markers_are_named(copy):
    doc = copy / "docs" / "speed.md"
    doc.write_text(doc.read_text().replace("<!-- speed-cpu:end -->", ""))
    with pytest.raises(SystemExit, match="docs/speed.md: needs exactly one"):
        report.main(["--check", "--root", str(copy)])


# ------------------------------------------------------------------------------------------ raw files named

def add_line(path: Path, line: str) -> int:
    """Appends `line` to a doc; returns its line number."""
    text = path.read_text().rstrip("\n") + "\n"
    path.write_text(text + line + "\n")
    return len(text.splitlines()) + 1


def test_results_readme_may_list_only_raw_files_that_exist_or_say_not_yet_run(copy, capsys):
    listing = copy / "results" / "README.md"
    text = listing.read_text()
    row = "| `bench/nothing_cpu.json` | `python benchmarks/nothing.py` | nowhere |"
    listing.write_text(text.replace("|---|---|---|\n", f"|---|---|---|\n{row}\n"))
    line = listing.read_text().splitlines().index(row) + 1
    assert report.main(["--check", "--root", str(copy)]) == 1
    assert f"results/README.md:{line}: bench/nothing_cpu.json does not exist" in capsys.readouterr().err
    marked = row.replace("` |", "` *not yet run* |", 1)
    listing.write_text(text.replace("|---|---|---|\n", f"|---|---|---|\n{marked}\n"))
    assert report.main(["--check", "--root", str(copy)]) == 0
    (copy / "results" / "bench" / "nothing_cpu.json").write_text("{}")  # the run made: the mark must go
    assert report.main(["--check", "--root", str(copy)]) == 1
    assert "bench/nothing_cpu.json exists: drop the 'not yet run'" in capsys.readouterr().err


def test_a_raw_file_results_readme_does_not_list_fails_the_check(copy, capsys):
    (copy / "results" / "bench" / "extra_cpu.json").write_text("{}")
    assert report.main(["--check", "--root", str(copy)]) == 1
    assert "results/README.md: does not list results/bench/extra_cpu.json" in capsys.readouterr().err


def test_a_doc_may_name_a_missing_raw_file_only_as_still_to_be_made(copy, capsys):
    doc = copy / "docs" / "robustness.md"
    original = doc.read_text()
    line = add_line(doc, "The figures are in `results/bench/later_cpu.json`.")
    assert report.main(["--check", "--root", str(copy)]) == 1
    assert f"docs/robustness.md:{line}: names results/bench/later_cpu.json, which does not exist" in \
        capsys.readouterr().err
    doc.write_text(original)
    add_line(doc, "`python benchmarks/later.py` writes `results/bench/later_cpu.json` (not yet run).")
    assert report.main(["--check", "--root", str(copy)]) == 0


def test_a_doc_may_not_say_measured_of_a_benchmark_whose_raw_file_is_missing(copy, capsys):
    doc = copy / "docs" / "robustness.md"
    line = add_line(doc, "Training throughput was measured with `benchmarks/train_throughput.py`.")
    assert report.main(["--check", "--root", str(copy)]) == 1
    assert f"docs/robustness.md:{line}: says measured, but no raw file of benchmarks/train_throughput.py exists" \
        in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ ablations over seeds

def row(model, method, steps, psnr, ssim=0.6, sharpness=0.2, niqe=6.0):
    return {"model": model, "method": method, "steps": steps, "solver": "euler" if steps else None,
            "nfe": steps or 0, "psnr": psnr, "ssim": ssim, "sharpness": sharpness, "niqe": niqe, "seconds": 1.0}


def synthetic_evals(seed: int) -> dict:
    """One seed's evaluations (cfm_*, tau_*, baselines_*, diffusion50_*, solver_*), with orderings fixed by
    construction: PSU > bilinear > nearest, τ = 0 better than τ = 100, CFM better than naive-fm, diffusion at 50
    steps better than at 4 yet worse than CFM."""
    d = 0.1 * seed  # seeds 0, 1, 2 → PSNR offsets 0, 0.1, 0.2: mean +0.1, sample std 0.1
    cfm = [row("-", "bicubic", None, 28 + d)]
    for model, base in (("cfm_psu", 23), ("cfm_bilinear", 22), ("cfm_nearest", 21)):
        cfm += [row(model, "x0", None, base - 0.5 + d)] + [row(model, "cfm", n, base + d) for n in (1, 4)]
    tau = [row(model, "cfm", 4, base + d) for model, base in (("cfm_tau0", 24), ("cfm_tau200", 22.5),
                                                               ("cfm_tau400", 22.2), ("cfm_tau600", 22))]
    bl = [row("-", "bicubic", None, 28 + d)]
    for model, method, base in (("cfm_psu", "cfm", 23), ("naive_fm", "naive-fm", 22), ("diffusion", "diffusion", 15)):
        bl += [row(model, method, n, base + d) for n in (1, 4)]
    bl += [row("regression_l1", "regression-l1", None, 24 + d, sharpness=0.1),
           row("regression_l2", "regression-l2", None, 24 + d, sharpness=0.1)]
    meta = {"date": "2026-01-01T00:00:00Z", "command": "fmboost eval …", "git_commit": "0" * 40, "git_dirty": False,
            "machine": {"cpu": "Test CPU", "cpu_cores": 2, "torch_threads": 1}, "tuned_on": "nothing"}
    files = {"cfm": cfm, "tau": tau, "baselines": bl, "diffusion50": [row("diffusion", "diffusion", 50, 17 + d)],
             **{f"solver_{v}": [row("cfm_psu", "cfm", n, 23.05 + d)] for v, n in (("midpoint", 2), ("heun", 2),
                                                                              ("rk4", 1))}}
    return {f"{name}_{s}": {"meta": meta, "images": ["a", "b"], "device": "cpu", "center_crop": 224,
                            "results": rows} for s in ("bsd68", "set14") for name, rows in files.items()}


def write_raw(results, name: str, data: dict, seed: int = 0, folder: str = "ablations") -> None:
    """One raw result file, where run_all.sh (or experiments/longer/run.sh) writes it."""
    path = results / folder / f"seed{seed}" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_ablation_report_gives_mean_and_std_over_seeds_and_judges_on_means(tmp_path):
    for seed in range(3):
        for name, data in synthetic_evals(seed).items():
            write_raw(tmp_path, name, data, seed)
    agg = ablations.aggregate(ablations.load_seeds(tmp_path, "cfm_bsd68"))
    psu4 = next(r for r in agg["results"] if r["model"] == "cfm_psu" and r["method"] == "cfm" and r["steps"] == 4)
    assert agg["seeds"] == 3 and psu4["n"] == 3
    assert psu4["psnr"] == pytest.approx(23.1) and psu4["psnr_std"] == pytest.approx(0.1)
    assert psu4["niqe"] == pytest.approx(6.0) and psu4["niqe_std"] == pytest.approx(0.0)
    text = ablations.section(tmp_path)
    assert "mean ± std over 3 seeds" in text and "23.10 ± 0.10 / 0.600 ± 0.000 / 6.00 ± 0.00" in text
    lines = text.splitlines()
    verdict = lambda start, s: next(x for x in lines if x.startswith(start) and f"({s}" in x)
    assert ": held" in verdict("- **PSU > bilinear > nearest**", "bsd68, x0")
    assert ": did not hold" in verdict("- **Noise augmentation helps**", "bsd68")
    assert ": held" in verdict("- **CFM ≥ naive flow matching at equal NFE**", "bsd68, NFE 4")
    assert ": held" in verdict("- **CFM ≥ diffusion at equal NFE**", "set14, NFE 1")  # 23 vs 15 dB
    assert "was at τ = 0" in verdict("- **Noise augmentation helps**", "bsd68")
    assert "within the seeds' spread" not in verdict("- **Noise augmentation helps**", "bsd68")  # 1 dB apart
    close = ablations.spread({"psnr": 23.0, "psnr_std": 0.1}, {"psnr": 23.15, "psnr_std": 0.1})
    assert "within the seeds' spread" in close
    assert ": held" in verdict("- **CFM at NFE 4 ≥ diffusion at 50 steps**", "set14")
    assert ": held" in verdict("- **The diffusion baseline gains from more steps**", "set14")  # 17.1 vs 15.1 dB
    assert "17.10 ± 0.10" in verdict("- **The diffusion baseline gains from more steps**", "set14")
    assert "the central 224×224 of each of the 2 photos of BSD68" in text
    assert "| rk4 | 1 | 23.15 ± 0.10" in text and "| euler | 4 | 23.10 ± 0.10" in text


def test_a_diffusion_baseline_that_did_not_learn_is_not_compared(tmp_path):
    for name, data in synthetic_evals(0).items():
        if name.startswith("diffusion50"):  # 50 steps now worse than 4: the model had not learned enough
            data["results"][0]["psnr"] = 10.0
        write_raw(tmp_path, name, data)
    text = ablations.section(tmp_path)
    assert "at 50 steps** (bsd68, PSNR and SSIM): not measured: the diffusion baseline had not learned" in text
    instead = next(x for x in text.splitlines() if "at equal NFE instead" in x)
    assert "10.00" not in instead  # the 50-step figures are no comparison with CFM: not quoted as one
    assert "- **CFM ≥ diffusion at equal NFE** (bsd68, NFE 4, PSNR and SSIM): held" in text  # still compared
    assert "gains from more steps** (bsd68: 50 steps better than 4 in PSNR or NIQE): did not hold" in text


def test_more_diffusion_steps_that_trade_psnr_for_a_better_niqe_count_as_learned(tmp_path):
    for name, data in synthetic_evals(0).items():
        if name.startswith("diffusion50"):  # 50 steps: lower PSNR than 4 but a better (lower) NIQE
            data["results"][0].update(psnr=10.0, niqe=4.0)
        write_raw(tmp_path, name, data)
    text = ablations.section(tmp_path)
    assert "gains from more steps** (bsd68: 50 steps better than 4 in PSNR or NIQE): held (PSNR 10.00 vs 15.00 " \
           "dB; NIQE 4.00 vs 6.00;" in text
    assert "- **CFM at NFE 4 ≥ diffusion at 50 steps** (bsd68, PSNR and SSIM): held (CFM 23.00" in text


def test_longer_training_is_judged_on_its_own_steps_beside_the_same_seed_at_the_base_budget(tmp_path):
    for name, data in synthetic_evals(0).items():
        write_raw(tmp_path, name, data)
    assert "### Longer training" not in ablations.section(tmp_path)  # not run yet: no subsection

    def write(name, rows):
        data = {**synthetic_evals(0)["baselines_bsd68"], "results": rows}
        write_raw(tmp_path, name, data, folder="ablations_longer")

    for s, psnr50 in (("bsd68", 21.0), ("set14", 19.0)):  # bsd68: 50 steps now beat 4 (20 dB); set14 not
        write(f"diffusion_x3_{s}", [row("diffusion_x3", "diffusion", 4, 20.0),
                                    row("diffusion_x3", "diffusion", 50, psnr50)])
    text = ablations.section(tmp_path)
    assert "### Longer training: 2250 steps instead of 750 (seed 0)" in text
    assert "- **More steps help after 2250 training steps** (BSD68: 50 steps better than 4 in PSNR or NIQE): held " \
           "(PSNR 21.00 vs 20.00 dB" in text
    assert "(Set14: 50 steps better than 4 in PSNR or NIQE): did not hold (PSNR 19.00 vs 20.00 dB" in text
    assert "at equal NFE after" not in text  # the longer CFM run is not evaluated yet
    # the base budget's diffusion (15 dB at NFE 1 and 4, 17 at 50) and CFM (23 dB at 1 and 4) beside it
    assert "| diffusion (750) | 15.00 / 0.600 / 6.00 | 15.00 / 0.600 / 6.00 | 17.00 / 0.600 / 6.00 |" in text
    assert "| diffusion (2250) | – | 20.00 / 0.600 / 6.00 | 21.00 / 0.600 / 6.00 | – | 20.00" in text
    assert "| CFM (750) | 23.00 / 0.600 / 6.00 | 23.00 / 0.600 / 6.00 | – |" in text

    for s in ("bsd68", "set14"):  # CFM trained as long: ahead at NFE 1, behind at NFE 4
        write(f"equal_x3_{s}", [row("cfm_x3", "cfm", 1, 19.5), row("cfm_x3", "cfm", 4, 19.0),
                                row("diffusion_x3", "diffusion", 1, 18.0), row("diffusion_x3", "diffusion", 4, 20.0)])
    text = ablations.section(tmp_path)
    assert "- **CFM ≥ diffusion at equal NFE after 2250 training steps** (BSD68, NFE 1, PSNR and SSIM): held " \
           "(CFM 19.50 / 0.600 / 6.00; diffusion 18.00" in text
    assert "(Set14, NFE 4, PSNR and SSIM): did not hold (CFM 19.00 / 0.600 / 6.00; diffusion 20.00" in text
    assert "| diffusion (2250) | 18.00 / 0.600 / 6.00 | 20.00 / 0.600 / 6.00 | 21.00" in text
    assert "| CFM (2250) | 19.50 / 0.600 / 6.00 | 19.00 / 0.600 / 6.00 | – |" in text


def test_one_seed_shows_no_spread_and_missing_runs_leave_a_note(tmp_path):
    assert "No raw results yet" in ablations.section(tmp_path)
    for name, data in synthetic_evals(0).items():
        write_raw(tmp_path, name, data)
    text = ablations.section(tmp_path)
    assert "one seed (no spread)" in text and "±" not in text


def test_whole_photos_check_names_each_ordering_that_changed_from_the_crops(tmp_path):
    evals = synthetic_evals(0)
    for name, data in evals.items():
        write_raw(tmp_path, name, data)
    assert "### Whole photos" not in ablations.section(tmp_path)  # nothing evaluated on whole photos yet
    for s in ("bsd68", "set14"):
        whole = {**evals[f"baselines_{s}"], "center_crop": None, "images": ["a", "b", "c"]}
        if s == "bsd68":  # on whole photos naive-fm overtakes CFM at NFE 4
            whole["results"] = [{**r, "psnr": 30.0} if r["method"] == "naive-fm" and r["steps"] == 4 else r
                                for r in whole["results"]]
        write_raw(tmp_path, f"baselines_{s}", whole, folder="ablations_whole")
    text = ablations.section(tmp_path)
    assert "### Whole photos (seed 0)" in text and "the first 3 photos of BSD68" in text
    bsd68 = next(x for x in text.splitlines() if x.startswith("- BSD68 (3 whole photos)"))
    set14 = next(x for x in text.splitlines() if x.startswith("- Set14 (3 whole photos)"))
    assert "Did not hold: CFM ≥ naive flow matching at NFE 4." in bsd68
    assert bsd68.endswith("Unlike the crops: CFM ≥ naive flow matching at NFE 4.")
    assert set14.endswith("The same as on the crops.") and "Did not hold: none." in set14
    assert "| naive-fm | 4 | 30.00 / 0.600 / 6.00 |" in text


def eval_file(rows, **extra):
    meta = {"date": "2026-01-01T00:00:00Z", "command": "python recipes/x/evaluate.py", "git_commit": "1" * 40,
            "git_dirty": True, "machine": {"cpu": "Test CPU", "cpu_cores": 2, "torch_threads": 1,
                                           "load_average_1min": 3.5}, "tuned_on": "16 BSD68 photos"}
    return {"meta": meta, "images": ["a", "b", "c"], "results": rows, **extra}


def test_default_and_real_sections_say_what_the_numbers_say(tmp_path):
    from doc_tables import default_model, real_world

    assert "No raw results yet" in default_model(tmp_path) and "No raw results yet" in real_world(tmp_path)
    rows = [row("-", "bicubic", None, 28.0, 0.84, 0.36, 5.0), row("default", "cfm", 4, 23.5, 0.61, 0.3, 7.0),
            row("default", "x0", None, 23.25, 0.60, 0.2, 8.0)]
    (tmp_path / "default_model").mkdir()
    (tmp_path / "default_model" / "bsd68.json").write_text(json.dumps(eval_file(
        rows, reconstruction={"psnr": 26.5, "ssim": 0.79, "niqe": 6.5}, hr_niqe=4.5)))
    text = default_model(tmp_path)
    assert "| BSD68 | `cfm` (Euler) | 4 | 23.50 | 0.6100 | 0.300 | 7.000 | 1 |" in text
    assert "| BSD68 | autoencoder D(E(HR)), the ceiling | – | 26.50 | 0.7900 | – | 6.500 | – |" in text
    assert "+0.25 dB and +0.0100 SSIM against `x0`, -4.50 dB and -0.2300 SSIM against bicubic" in text
    assert "Set14: no raw results yet" in text and "16 BSD68 photos" in text and "with uncommitted changes" in text
    # Degraded inputs: bicubic ahead of `real` in PSNR at NFE 4 must be said, not left out.
    real = [row("-", "bicubic", None, 21.6, 0.47, 0.3, 9.0), row("real", "cfm", 1, 21.7, 0.54, 0.2, 7.0),
            row("real", "cfm", 4, 21.5, 0.53, 0.2, 7.5), row("default", "cfm", 4, 21.4, 0.51, 0.2, 8.0)]
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "bsd68.json").write_text(json.dumps(eval_file(real)))
    lines = real_world(tmp_path).splitlines()
    nfe4 = next(x for x in lines if x.startswith("- BSD68, NFE 4"))
    assert "`real` against bicubic: `real` ahead in SSIM, NIQE; bicubic ahead in PSNR" in nfe4
    assert "against `default`: `real` ahead in PSNR, SSIM, NIQE" in nfe4
    assert "`real` ahead in PSNR, SSIM, NIQE" in next(x for x in lines if x.startswith("- BSD68, NFE 1"))


def test_the_readme_grid_caption_gives_the_crops_shown_with_their_losses(tmp_path):
    from doc_tables import readme_grid

    score = lambda psnr, ssim, sharpness: {"psnr": psnr, "ssim": ssim, "sharpness": sharpness}
    scores = {"a.png": {"bicubic": {"photo": score(22.0, 0.60, 0.1), "crop": score(26.0, 0.73, 0.2)},
                        "fmboost": {"photo": score(23.0, 0.65, 0.3), "crop": score(25.0, 0.66, 0.3)}}}
    (tmp_path / "default_model").mkdir()
    (tmp_path / "default_model" / "readme_grid.json").write_text(json.dumps(
        {**eval_file([]), "settings": {"crop": 96, "zoom": 3}, "scores": scores}))
    text = readme_grid(tmp_path)
    shown, whole = text.split("The whole photos")
    assert "The crops shown" in shown and "a.png: bicubic ahead in PSNR, SSIM (PSNR 25.00 vs 26.00 dB" in shown
    assert "a.png: fmboost ahead in PSNR, SSIM (PSNR 23.00 vs 22.00 dB" in whole
    assert "with uncommitted changes" in whole


def test_a_section_over_several_raw_files_counts_those_with_uncommitted_changes(tmp_path):
    from doc_tables import default_model

    rows = [row("-", "bicubic", None, 28.0), row("default", "cfm", 4, 29.0), row("default", "x0", None, 28.5)]
    (tmp_path / "default_model").mkdir()
    clean = eval_file(rows)
    clean["meta"] = {**clean["meta"], "git_dirty": False}
    (tmp_path / "default_model" / "bsd68.json").write_text(json.dumps(clean))
    assert "uncommitted" not in default_model(tmp_path)
    (tmp_path / "default_model" / "set14.json").write_text(json.dumps(eval_file(rows)))  # dirty
    assert "1 of the 2 raw files were measured with uncommitted changes" in default_model(tmp_path)


def test_the_peers_detail_bullet_names_the_documented_detail_setting(tmp_path):
    """The bullet on detail reports `--tau 200 --steps 1` (the setting the README documents), not whichever fmboost
    row has the lowest NIQE (NFE 2 at τ 200 drifts away from the photo); without that row, the lowest NIQE."""
    import doc_tables

    shutil.copytree(ROOT / "results" / "peers", tmp_path / "peers")
    text = doc_tables.peers(tmp_path)
    assert text.count(f"detail: the detail setting ({doc_tables.DETAIL_METHOD})") == 2
    for name in ("bsd68", "set14"):
        path = tmp_path / "peers" / f"{name}.json"
        data = json.loads(path.read_text())
        data["results"] = [r for r in data["results"] if r["method"] != doc_tables.DETAIL_METHOD]
        path.write_text(json.dumps(data))
    text = doc_tables.peers(tmp_path)
    assert "the detail setting" not in text and text.count("detail: fmboost's lowest NIQE") == 2

"""The ablation section of docs/results.md, from run_all.sh's raw results: results/ablations/seed<S>/<eval>.json.

Each evaluation of each seed is one `fmboost eval --results-out` file. Rows are matched across seeds by
(model, method, steps) and every metric becomes mean ± std (sample std over seeds; the mean alone for one seed).
The paper's orderings are judged on the means, at equal NFE (or a pair of settings fixed in advance), never on
the best of several step counts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from doc_tables import SET_NAMES, SETS, machine, pending, pick, table, uncommitted

SOLVERS = {"midpoint": 2, "heun": 2, "rk4": 1}  # steps to NFE 4; Euler's 4 steps are in the baselines
UPSAMPLING = {"psu": "cfm_psu", "bilinear": "cfm_bilinear", "nearest": "cfm_nearest"}
TAU = {0: "cfm_tau0", 100: "cfm_psu", 200: "cfm_tau200", 400: "cfm_tau400", 600: "cfm_tau600"}
REFERENCE_TAU = 100  # cfm_psu's, the embedded default's: fixed before any result
METRICS = ("psnr", "psnr_y", "ssim", "ssim_y", "sharpness", "niqe", "lpips", "fid", "pfid", "seconds")
KEY = ("model", "method", "steps")


def seed_of(folder: Path) -> int | None:
    """S of a seed<S> folder; None for any other name."""
    digits = folder.name[4:]
    return int(digits) if digits.isdigit() else None


def seed_dirs(results: Path, folder: str = "ablations") -> list[Path]:
    return sorted((results / folder).glob("seed*"), key=lambda p: seed_of(p) or 0)


def metas(results: Path, folder: str = "ablations") -> list[dict]:
    """The meta block of every raw file of `folder` (every seed, every evaluation)."""
    return [json.loads(p.read_text())["meta"] for d in seed_dirs(results, folder) for p in sorted(d.glob("*.json"))]


def seed_numbers(results: Path, folder: str) -> list[int]:
    return [k for k in map(seed_of, seed_dirs(results, folder)) if k is not None]


def seeds_named(seeds: list[int]) -> str:
    return f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"


def experiment_config(name: str) -> dict:
    """One of experiments/' YAML files (the settings the runs were made with), e.g. `configs/base.yaml`."""
    import yaml

    return yaml.safe_load((Path(__file__).parent / name).read_text())


def load_seeds(results: Path, name: str, *extra: str, folder: str = "ablations", seeds=None) -> list[dict]:
    """Evaluation `name` of every seed that has it (of `seeds` only, if given), with the rows of the `extra`
    evaluations of that seed added (one table can draw on runs that needed their own `fmboost eval`, such as
    diffusion at 50 steps)."""
    runs = []
    for d in seed_dirs(results, folder):
        if seeds is not None and seed_of(d) not in seeds:
            continue
        if (d / f"{name}.json").is_file():
            run = json.loads((d / f"{name}.json").read_text())
            for e in extra:
                if (d / f"{e}.json").is_file():
                    run["results"] = run["results"] + json.loads((d / f"{e}.json").read_text())["results"]
            runs.append(run)
    return runs


def aggregate(runs: list[dict]) -> dict | None:
    """One evaluation over seeds: the first run's header, `seeds`, and rows whose metrics are means with a
    `<metric>_std` beside each. A row missing from a seed is averaged over the seeds that have it (`n`)."""
    if not runs:
        return None
    rows = {}
    for run in runs:
        for r in run["results"]:
            rows.setdefault(tuple(r[k] for k in KEY), []).append(r)
    out = []
    for group in rows.values():
        row = {k: group[0][k] for k in (*KEY, "solver", "nfe")}
        row["n"] = len(group)
        for m in METRICS:
            values = [r[m] for r in group if r.get(m) is not None]
            row[m] = float(np.mean(values)) if values else None
            row[f"{m}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out.append(row)
    return {**{k: v for k, v in runs[0].items() if k != "results"}, "seeds": len(runs), "results": out}


def cell(row, metric: str, fmt: str) -> str:
    if row is None or row.get(metric) is None:
        return "–"
    std = row.get(f"{metric}_std")
    return format(row[metric], fmt) + ("" if std is None else f" ± {std:{fmt}}")


def seconds(row) -> str:
    """Two significant digits of the mean, at least two decimals: bicubic takes a millisecond, flows seconds."""
    if row is None or row.get("seconds") is None:
        return "–"
    digits = max(2, 1 - int(np.floor(np.log10(max(row["seconds"], 1e-9)))))
    return cell(row, "seconds", f".{digits}f")


def ps(row) -> str:
    """PSNR / SSIM / NIQE of a row (NIQE when measured)."""
    if row is None:
        return "–"
    text = f"{cell(row, 'psnr', '.2f')} / {cell(row, 'ssim', '.3f')}"
    return text + (f" / {cell(row, 'niqe', '.2f')}" if row.get("niqe") is not None else "")


def upsampling_table(ev) -> str:
    rows = []
    for up, model in UPSAMPLING.items():
        cells = []
        for s in SETS:
            r = ev[s]["results"]
            cells += [ps(pick(r, "x0", model=model)), ps(pick(r, "cfm", 1, model)), ps(pick(r, "cfm", 4, model))]
        rows.append([up, *cells])
    return table(["upsampling", *[f"{s} {c}" for s in SETS for c in ("x0", "NFE 1", "NFE 4")]], rows)


def tau_row(ev, tau, s: str, t: int):
    """CFM at NFE 4 trained (and sampled) at τ = t: cfm_psu's row for the reference τ, the τ runs' otherwise."""
    return pick(ev[s]["results"] if t == REFERENCE_TAU else tau[s]["results"], "cfm", 4, TAU[t])


def noise_table(ev, tau) -> str:
    rows = [[f"τ = {t}" + (" (cfm_psu)" if t == REFERENCE_TAU else ""),
             *[c for s in SETS for r in [tau_row(ev, tau, s, t)] for c in (ps(r), cell(r, "sharpness", ".2f"))]]
            for t in TAU]
    return table(["run", *[f"{s} {c}" for s in SETS for c in ("NFE 4", "sharpness")]], rows)


def baselines_table(bl) -> str:
    lines = []
    for r0 in bl[SETS[0]]["results"]:
        if r0["method"] in ("x0", "lanczos"):
            continue
        cells = []
        for s in SETS:
            r = pick(bl[s]["results"], r0["method"], r0["steps"], r0["model"])
            cells += [ps(r), cell(r, "sharpness", ".2f"), seconds(r)]
        lines.append([r0["method"], r0["steps"] or "–", *cells])
    return table(["method", "steps", *[f"{s} {c}" for s in SETS for c in ("PSNR / SSIM / NIQE", "sharpness",
                                                                          "s / img")]], lines)


def solver_table(bl, sv) -> str:
    rows = [["euler", 4, *[ps(pick(bl[s]["results"], "cfm", 4, "cfm_psu")) for s in SETS]]]
    for solver, steps in SOLVERS.items():
        found = [pick(sv[s][solver]["results"], "cfm", steps, "cfm_psu") for s in SETS]
        rows.append([solver, steps, *map(ps, found)])
    return table(["solver", "steps (NFE 4)", *SETS], rows)


def held(flag: bool) -> str:
    return "held" if flag else "did not hold"


def spread(a, b) -> str:
    """A caveat when two rows' mean PSNRs differ by less than the sum of their seed-to-seed std."""
    if a.get("psnr_std") is None or b.get("psnr_std") is None:
        return ""
    close = abs(a["psnr"] - b["psnr"]) < a["psnr_std"] + b["psnr_std"]
    return "; the PSNR gap is within the seeds' spread" if close else ""


BASELINES = (("naive flow matching", "naive-fm", "naive_fm"), ("diffusion", "diffusion", "diffusion"))


def equal_nfe(b: list[dict], cfm: str = "cfm_psu", others=BASELINES) -> list[tuple[str, bool, dict, dict]]:
    """The orderings one baselines evaluation decides on its own, as (label, held, CFM's row, the other's row):
    CFM (the model `cfm`) ≥ each of `others` (label, method, model) in PSNR and SSIM at NFE 1 and 4; L2
    regression above CFM at NFE 1 in PSNR yet blurrier, where evaluated."""
    out = []
    for label, method, model in others:
        for n in (1, 4):
            other, ours = pick(b, method, n, model), pick(b, "cfm", n, cfm)
            if other and ours:
                ok = ours["psnr"] >= other["psnr"] and ours["ssim"] >= other["ssim"]
                out.append((f"CFM ≥ {label}", ok, ours, other))
    reg, one = pick(b, "regression-l2", model="regression_l2"), pick(b, "cfm", 1, cfm)
    if reg and one:
        out.append(("Regression: high PSNR but blurry",
                    reg["psnr"] >= one["psnr"] and reg["sharpness"] < one["sharpness"], one, reg))
    return out


def whole_photos(results: Path) -> list[str]:
    """The baselines evaluated again on whole photos (results/ablations_whole/seed<S>/baselines_<set>.json): do
    the crops' equal-NFE orderings, judged on the same seeds' crops, come out the same?"""
    whole = {s: aggregate(load_seeds(results, f"baselines_{s}", folder="ablations_whole")) for s in SETS}
    if not all(whole.values()):
        return []
    seeds = seed_numbers(results, "ablations_whole")
    lines = []
    for s in SETS:
        crop = aggregate(load_seeds(results, f"baselines_{s}", seeds=seeds))
        if crop is None:
            continue
        was = {(label, ours["nfe"]): ok for label, ok, ours, _ in equal_nfe(crop["results"])}
        now = [(label, ours["nfe"], ok) for label, ok, ours, _ in equal_nfe(whole[s]["results"])]
        name = lambda label, n: f"{label} at NFE {n}"
        named = lambda want: "; ".join(name(label, n) for label, n, ok in now if ok == want) or "none"
        changed = [name(label, n) for label, n, ok in now if was.get((label, n)) != ok]
        same = "the same as on the crops" if not changed else "unlike the crops: " + "; ".join(changed)
        lines.append(f"- {SET_NAMES[s]} ({len(whole[s]['images'])} whole photos): held: {named(True)}. Did not "
                     f"hold: {named(False)}. {same[0].upper()}{same[1:]}.")
    return [f"### Whole photos ({seeds_named(seeds)})",
            f"The baselines evaluated again on {evaluated_on(whole)}, not their central crops, by "
            f"`WHOLE_SEEDS='{' '.join(map(str, seeds))}' bash experiments/run_all.sh` "
            f"({machine(whole[SETS[0]]['meta'])}; raw results in `results/ablations_whole/`), to check that the "
            f"crops do not decide the orderings; its seconds per image were taken while other jobs shared the "
            f"CPU and compare with nothing.{uncommitted(metas(results, 'ablations_whole'))} Compared with the "
            f"crops of the same seed{'s' * (len(seeds) > 1)}:",
            "\n".join(lines), baselines_table(whole)]


def longer_training(results: Path) -> list[str]:
    """Seed 0's diffusion and CFM runs trained longer (experiments/longer/, results/ablations_longer/): do the
    diffusion baseline's 50 steps now beat its 4, and how do the two compare at equal NFE? Beside them, the same
    seeds' runs at the ablations' budget."""
    longer = {s: aggregate(load_seeds(results, f"diffusion_x3_{s}", folder="ablations_longer")) for s in SETS}
    equal = {s: aggregate(load_seeds(results, f"equal_x3_{s}", folder="ablations_longer")) for s in SETS}
    if not all(longer.values()):
        return []
    steps = experiment_config("longer/diffusion_x3.yaml")["max_steps"]
    base = experiment_config("configs/base.yaml")["max_steps"]
    seeds = seed_numbers(results, "ablations_longer")
    lines, rows = [], {}
    for s in SETS:
        short = aggregate(load_seeds(results, f"baselines_{s}", f"diffusion50_{s}", seeds=seeds))
        if short is None:
            return []
        long_rows = longer[s]["results"] + (equal[s]["results"] if equal[s] else [])
        few, many = (pick(long_rows, "diffusion", n, "diffusion_x3") for n in (4, 50))
        lines.append(f"- **More steps help after {steps} training steps** ({SET_NAMES[s]}: {steps_line(many, few)}.")
        for label, ok, ours, other in equal_nfe(long_rows, "cfm_x3", (("diffusion", "diffusion", "diffusion_x3"),)):
            lines.append(f"- **{label} at equal NFE after {steps} training steps** ({SET_NAMES[s]}, "
                         f"NFE {ours['nfe']}, PSNR and SSIM): {held(ok)} (CFM {ps(ours)}; diffusion {ps(other)}).")
        for label, r, method, model in ((f"diffusion ({base})", short["results"], "diffusion", "diffusion"),
                                        (f"diffusion ({steps})", long_rows, "diffusion", "diffusion_x3"),
                                        (f"CFM ({base})", short["results"], "cfm", "cfm_psu"),
                                        (f"CFM ({steps})", long_rows, "cfm", "cfm_x3")):
            found = [pick(r, method, n, model) for n in NFES]
            rows.setdefault(label, []).extend(ps(x) if x else "–" for x in found)
    return [f"### Longer training: {steps} steps instead of {base} ({seeds_named(seeds)})",
            f"`bash experiments/longer/run.sh` trains the diffusion and CFM runs again for {steps} steps (everything "
            f"else as above) and evaluates them on the same crops ({machine(longer[SETS[0]]['meta'])}; raw results "
            f"in `results/ablations_longer/`): does the diffusion baseline's 50 steps lose to its 4 for want of "
            f"training, and does CFM's lead at equal NFE survive a longer budget?"
            f"{uncommitted(metas(results, 'ablations_longer'))}",
            "\n".join(lines),
            table(["run (training steps)", *[f"{SET_NAMES[s]} NFE {n}" for s in SETS for n in NFES]],
                  [[label, *cells] for label, cells in rows.items()])]


NFES = (1, 4, 50)  # the longer-training table's columns


def verdicts(ev, tau, bl) -> list[str]:
    """One line per ordering of the paper, per set, judged on the means; the numbers that decide it beside."""
    out = []
    for s in SETS:
        r, b = ev[s]["results"], bl[s]["results"]
        for label, method, steps in (("x0, the flow's start", "x0", None), ("CFM NFE 4", "cfm", 4)):
            up = {k: pick(r, method, steps, m) for k, m in UPSAMPLING.items()}
            ok = up["psu"]["psnr"] > up["bilinear"]["psnr"] > up["nearest"]["psnr"]
            out.append(f"- **PSU > bilinear > nearest** ({s}, {label}, PSNR): {held(ok)} "
                       f"({' / '.join(cell(up[k], 'psnr', '.2f') for k in UPSAMPLING)} dB).")
        if tau[s]:
            by_tau = {t: tau_row(ev, tau, s, t) for t in TAU}
            ref, none = by_tau[REFERENCE_TAU], by_tau[0]
            best = max(by_tau, key=lambda t: by_tau[t]["psnr"])
            niqe = f"; NIQE {cell(ref, 'niqe', '.2f')} vs {cell(none, 'niqe', '.2f')}" \
                if none.get("niqe") is not None else ""
            out.append(f"- **Noise augmentation helps** ({s}, τ = {REFERENCE_TAU} vs τ = 0, NFE 4, PSNR): "
                       f"{held(ref['psnr'] > none['psnr'])} ({cell(ref, 'psnr', '.2f')} vs "
                       f"{cell(none, 'psnr', '.2f')} dB{niqe}{spread(ref, none)}); the highest mean PSNR over τ ∈ "
                       f"{{{', '.join(map(str, TAU))}}} was at τ = {best}.")
        cfm, diff = pick(b, "cfm", 4, "cfm_psu"), pick(b, "diffusion", 50, "diffusion")
        d4 = pick(b, "diffusion", 4, "diffusion")
        learned = d4 is None or more_steps_help(diff, d4)
        if learned:
            out.append(f"- **CFM at NFE 4 ≥ diffusion at 50 steps** ({s}, PSNR and SSIM): "
                       f"{held(cfm['psnr'] >= diff['psnr'] and cfm['ssim'] >= diff['ssim'])} "
                       f"(CFM {ps(cfm)}; diffusion {ps(diff)}{spread(cfm, diff)}).")
        else:  # the 50-step figures are no comparison with CFM then: they are quoted where they belong, below
            out.append(f"- **CFM at NFE 4 ≥ diffusion at 50 steps** ({s}, PSNR and SSIM): not measured: the "
                       f"diffusion baseline had not learned enough at this budget for more steps to help (its 50 "
                       f"steps against its 4: below); CFM and diffusion are compared at equal NFE instead (NFE 1 "
                       f"and 4: next lines).")
        for label, ok, ours, other in equal_nfe(b):
            if label.startswith("CFM"):
                out.append(f"- **{label} at equal NFE** ({s}, NFE {ours['nfe']}, PSNR and SSIM): {held(ok)} "
                           f"(CFM {ps(ours)}; {other['method']} {ps(other)}{spread(ours, other)}).")
            else:
                out.append(f"- **{label}** ({s}, L2 vs CFM at NFE 1, one network call each): {held(ok)} "
                           f"(PSNR {cell(other, 'psnr', '.2f')} vs {cell(ours, 'psnr', '.2f')} dB; sharpness "
                           f"{cell(other, 'sharpness', '.2f')} vs {cell(ours, 'sharpness', '.2f')}, 1 = HR).")
        bic = pick(b, "bicubic")
        trained = [x for x in b if x["method"] != "bicubic"] + [x for x in r if x["method"] == "cfm"] + \
            (tau[s]["results"] if tau[s] else [])
        best = max(trained, key=lambda x: x["psnr"])
        if bic and best["psnr"] < bic["psnr"]:
            out.append(f"- **Caveat** ({s}): no run beats bicubic at this budget (best: {best['model']} "
                       f"{cell(best, 'psnr', '.2f')} dB against {cell(bic, 'psnr', '.2f')}): these orderings describe "
                       f"models early in training, not converged ones like the embedded default.")
        if d4:
            out.append(f"- **The diffusion baseline gains from more steps** ({s}: {steps_line(diff, d4)}.")
    return out


def more_steps_help(many: dict, few: dict) -> bool:
    """Whether a diffusion model's many-step samples beat its few-step ones in PSNR or, where measured, in NIQE:
    a well-trained sampler may trade PSNR for detail, an undertrained one leaves noise that both punish."""
    niqe = many.get("niqe") is not None and few.get("niqe") is not None and many["niqe"] < few["niqe"]
    return many["psnr"] > few["psnr"] or niqe


def steps_line(many: dict, few: dict) -> str:
    """'50 steps better than 4 …): held (PSNR …; NIQE …; sharpness …)' for two rows of one diffusion model."""
    niqe = f"; NIQE {cell(many, 'niqe', '.2f')} vs {cell(few, 'niqe', '.2f')}" if many.get("niqe") is not None else ""
    return (f"{many['steps']} steps better than {few['steps']} in PSNR or NIQE): {held(more_steps_help(many, few))} "
            f"(PSNR {cell(many, 'psnr', '.2f')} vs {cell(few, 'psnr', '.2f')} dB{niqe}; sharpness "
            f"{cell(many, 'sharpness', '.2f')} vs {cell(few, 'sharpness', '.2f')}, 1 = HR)")


def load_all(results: Path):
    ev = {s: aggregate(load_seeds(results, f"cfm_{s}")) for s in SETS}
    tau = {s: aggregate(load_seeds(results, f"tau_{s}")) for s in SETS}
    bl = {s: aggregate(load_seeds(results, f"baselines_{s}", f"diffusion50_{s}")) for s in SETS}
    sv = {s: {solver: aggregate(load_seeds(results, f"solver_{solver}_{s}")) for solver in SOLVERS} for s in SETS}
    return ev, tau, bl, sv


def budget() -> str:
    """The shared training settings, read from the configs the runs used."""
    base = experiment_config("configs/base.yaml")
    return (f"`{base['preset']}` preset, {base['max_steps']} steps of batch {base['batch_size']} per run, every "
            f"run on the same crops")


def evaluated_on(ev) -> str:
    crop = ev[SETS[0]].get("center_crop")
    counts = " and ".join(f"{len(ev[s]['images'])} photos of {SET_NAMES[s]}" for s in SETS)
    return f"the central {crop}×{crop} of each of the {counts}" if crop else f"the first {counts} (sorted by name)"


def section(results: Path) -> str:
    ev, tau, bl, sv = load_all(results)
    title = "## Ablations and baselines (the paper's comparisons at CPU scale)"
    if not all(ev.values()) or not all(bl.values()):
        return f"{title}\n\n" + pending("ablations/seed<S>/{cfm,tau,baselines,diffusion50,solver_*}_{bsd68,set14}.json",
                                        "SEEDS='0 1 2' bash experiments/run_all.sh")
    first = ev[SETS[0]]
    meta = first["meta"]
    seeds = f"mean ± std over {first['seeds']} seeds" if first["seeds"] > 1 else "one seed (no spread)"
    parts = [
        title,
        f"Made by `bash experiments/run_all.sh` (the first run's evaluation: {machine(meta)}); raw results in "
        f"`results/ablations/`. Training: {budget()} (`experiments/configs/`). Evaluated on {evaluated_on(ev)}, "
        f"×2 from bicubic downscales; {seeds}; every comparison at equal NFE. Cells are PSNR (dB) / SSIM on RGB, "
        f"2 border pixels shaved, / NIQE (no reference, lower is better). Sharpness is the output's luma gradient "
        f"energy over the photo's (below 1 = blurrier). Settings tuned on: {meta['tuned_on']}."
        f"{uncommitted(metas(results))}",
        "### Which of the paper's orderings held", "\n".join(verdicts(ev, tau, bl)),
        "### Upsampling of the low-res latent (x0 and the condition)", upsampling_table(ev),
    ]
    if all(tau.values()):
        parts += ["### Noise augmentation of x0 (τ of 1000, cosine VP schedule); sampled at the training τ",
                  noise_table(ev, tau)]
    parts += [
        "### Baselines: same U-Net, data and budget",
        "Flows use Euler; diffusion (v-prediction) uses DDIM from the last step of its cosine 1000-step schedule; "
        "regression is one forward pass. "
        "Seconds per image are wall-clock while evaluations shared the CPU: compare them within a column only.",
        baselines_table(bl),
        "![PSNR and NIQE against NFE](ablation_baselines.png)",
    ]
    if all(all(sv[s].values()) for s in SETS):
        parts += ["### ODE solvers on cfm_psu at NFE 4", solver_table(bl, sv)]
    parts += longer_training(results) + whole_photos(results)
    return "\n\n".join(parts)


def plots(results: Path, docs: Path) -> None:
    """The section's PNG (write mode only: --check compares text)."""
    ev, tau, bl, sv = load_all(results)
    if not all(bl.values()):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(rows, key):
        """{method: [(NFE, mean, std)]}; bicubic and the one-call regressions come out as single points."""
        out = {}
        for r in rows:
            if r["method"] not in ("x0", "lanczos") and r.get(key) is not None:
                out.setdefault(r["method"], []).append((max(r["nfe"], 1), r[key], r.get(f"{key}_std") or 0.0))
        return out

    def save(path, panels):
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 2.9))
        for ax, (lines, title, ylabel) in zip(np.atleast_1d(axes), panels):
            flat = iter([("k", ":"), ("dimgray", "--"), ("gray", "-.")])  # one-call methods: horizontal lines
            for label, points in lines.items():
                xs, ys, stds = zip(*sorted(points))
                if len(xs) == 1:
                    color, style = next(flat)
                    ax.axhline(ys[0], color=color, ls=style, lw=1, label=label)
                else:
                    ax.errorbar(xs, ys, yerr=stds, marker="o", ms=3, capsize=2, label=label)
            nfes = sorted({x for points in lines.values() for x, _, _ in points})
            ax.set_xscale("log")
            ax.set_xticks(nfes, [str(n) for n in nfes])
            ax.minorticks_off()
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("NFE (error bars: std over seeds)", fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.grid(alpha=0.3)
        np.atleast_1d(axes)[-1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)

    save(docs / "ablation_baselines.png", [(series(bl[s]["results"], k), s, k.upper()) for k in ("psnr", "niqe")
                                           for s in SETS])

"""The ablation section of docs/results.md: tables, plots and the paper's orderings, from run_all.sh's evaluations.

    python experiments/report.py [--runs runs/experiments] [--out docs/results.md]

Reads RUNS/eval/*/results.json and writes, between `<!-- ablations:begin -->` and `<!-- ablations:end -->`,
one table per question (upsampling, noise augmentation and σ_min, baselines, solvers), small PNG plots next to
the document, and a line per ordering of the paper saying whether it held on each set, with the numbers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from fmboost.evaluation.report import replace_section  # noqa: E402

SETS = ("bsd68", "set14")
SOLVERS = ("euler", "midpoint", "heun", "rk4", "dopri5")
UPSAMPLING = {"psu": "cfm_psu", "bilinear": "cfm_bilinear", "nearest": "cfm_nearest"}
TAU = {0: "cfm_tau0", 200: "cfm_tau200", 400: "cfm_psu", 600: "cfm_tau600"}
BASELINES = ("cfm_psu", "naive_fm", "diffusion", "regression_l1", "regression_l2")


def load(runs: Path, name: str) -> dict | None:
    path = runs / "eval" / name / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def pick(rows, model, method=None, steps=None):
    """The one row of `model` (and method, steps); None when that run is missing."""
    found = [r for r in rows if r["model"] == model and (method is None or r["method"] == method)
             and (steps is None or r["steps"] == steps)]
    return found[0] if found else None


def ps(row) -> str:
    return "–" if row is None else f"{row['psnr']:.2f} / {row['ssim']:.3f}"


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def upsampling_table(ev) -> str:
    rows = []
    for up, model in UPSAMPLING.items():
        cells = []
        for s in SETS:
            r = ev[s]["results"]
            cells += [ps(pick(r, model, "x0")), ps(pick(r, model, "cfm", 1)), ps(pick(r, model, "cfm", 4))]
        rows.append([up, *cells])
    return table(["upsampling", *[f"{s} {c}" for s in SETS for c in ("x0", "NFE 1", "NFE 4")]], rows)


def noise_table(ev) -> str:
    runs = [(f"τ = {t}", m) for t, m in TAU.items()] + [("τ = 400, σ_min = 0.01", "cfm_sigma1e-2")]
    rows = [[label, *[ps(pick(ev[s]["results"], m, "cfm", n)) for s in SETS for n in (1, 4)]] for label, m in runs]
    return table(["run", *[f"{s} NFE {n}" for s in SETS for n in (1, 4)]], rows)


def baseline_rows(rows):
    for r in rows:
        if r["method"] in ("x0", "lanczos"):
            continue
        yield r


def baselines_table(ev) -> str:
    lines = []
    keys = [(r["model"], r["method"], r["steps"]) for r in baseline_rows(ev[SETS[0]]["results"])]
    for model, method, steps in keys:
        cells = []
        for s in SETS:
            r = pick(ev[s]["results"], model, method, steps)
            cells += ["–"] * 3 if r is None else [ps(r), f"{r['sharpness']:.2f}", f"{r['seconds']:.2f}"]
        lines.append([method, steps or "–", *cells])
    return table(["method", "steps", *[f"{s} {c}" for s in SETS for c in ("PSNR / SSIM", "sharpness", "s / img")]],
                 lines)


def solver_table(sv) -> str:
    rows = []
    for solver in SOLVERS:
        if not all(sv[s].get(solver) for s in SETS):
            continue
        for r0 in sv[SETS[0]][solver]["results"]:
            cells = [ps(pick(sv[s][solver]["results"], r0["model"], "cfm", r0["steps"])) for s in SETS]
            rows.append([solver, r0["steps"], r0["nfe"], *cells])
    return table(["solver", "steps", "NFE", *SETS], rows)


def plot_lines(ax, series: dict, title: str, ylabel: str) -> None:
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, points) in enumerate(series.items()):
        xs, ys = zip(*sorted(points))
        color = colors[i % len(colors)]
        if len(xs) == 1:  # single-pass methods: a dashed level across the plot
            ax.axhline(ys[0], ls="--", lw=1, label=label, color=color)
        else:
            ax.plot(xs, ys, marker="o", ms=3, label=label, color=color)
    if len(series) > 2:  # one far-off line (diffusion at 1 step) would flatten the rest: the table has it
        levels = sorted(y for points in series.values() for _, y in points)
        middle = levels[len(levels) // 2]
        spread = max(levels) - middle
        shown = [y for y in levels if y >= middle - 3 * spread]
        ax.set_ylim(bottom=min(shown) - 0.1 * (max(levels) - min(shown)))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({x for points in series.values() for x, _ in points}))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("NFE", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def save_plot(path: Path, panels) -> None:
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 2.9))
    for ax, (series, title, ylabel) in zip(axes, panels):
        plot_lines(ax, series, title, ylabel)
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def baseline_series(rows, key: str) -> dict:
    series = {}
    for r in baseline_rows(rows):
        if r["method"] == "bicubic":  # ~5 dB above every latent method here: it would flatten the lines
            continue
        series.setdefault(r["method"], []).append((max(r["nfe"], 1), r[key]))
    return series


def small_grid(src: Path, dst: Path, width: int = 588) -> None:
    """eval's grid at half size and 128 colours: about 200 KB, small enough to commit."""
    from PIL import Image

    im = Image.open(src).convert("RGB")
    im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)


def verdicts(ev, bl) -> list[str]:
    """One line per ordering of the paper, per set: held or not, with the numbers that decide it."""
    out = []
    for s in SETS:
        r, b = ev[s]["results"], bl[s]["results"]
        for label, method, steps in (("x0, the flow's start", "x0", None), ("CFM NFE 4", "cfm", 4)):
            up = {k: pick(r, m, method, steps) for k, m in UPSAMPLING.items()}
            held = up["psu"]["psnr"] > up["bilinear"]["psnr"] > up["nearest"]["psnr"]
            out.append(f"- **PSU > bilinear > nearest** ({s}, {label}, PSNR): {'held' if held else 'did not hold'} "
                       f"({up['psu']['psnr']:.2f} / {up['bilinear']['psnr']:.2f} / {up['nearest']['psnr']:.2f} dB).")
        tau = {t: pick(r, m, "cfm", 4) for t, m in TAU.items()}
        best = max(tau, key=lambda t: tau[t]["psnr"])
        held = tau[400]["psnr"] > tau[0]["psnr"]
        out.append(f"- **Noise augmentation helps** ({s}, τ = 400 vs τ = 0, NFE 4): "
                   f"{'held' if held else 'did not hold'}"
                   f" ({tau[400]['psnr']:.2f} vs {tau[0]['psnr']:.2f} dB, SSIM {tau[400]['ssim']:.3f} vs "
                   f"{tau[0]['ssim']:.3f}; sharpness {tau[400]['sharpness']:.2f} vs {tau[0]['sharpness']:.2f}); "
                   f"best τ by PSNR here: {best}.")
        cfm = max((pick(b, "cfm_psu", "cfm", n) for n in (1, 4, 8)), key=lambda x: x["psnr"])
        diff = pick(b, "diffusion", "diffusion", 50)
        held = cfm["psnr"] >= diff["psnr"] and cfm["ssim"] >= diff["ssim"]
        out.append(f"- **CFM at NFE ≤ 10 ≥ diffusion at 50 steps** ({s}): {'held' if held else 'did not hold'} "
                   f"(CFM NFE {cfm['nfe']}: {ps(cfm)}; diffusion 50: {ps(diff)}).")
        for n in (1, 4):
            naive, ours = pick(b, "naive_fm", "naive-fm", n), pick(b, "cfm_psu", "cfm", n)
            held = ours["psnr"] >= naive["psnr"] and ours["ssim"] >= naive["ssim"]
            out.append(f"- **CFM ≥ naive flow matching at few steps** ({s}, NFE {n}): "
                       f"{'held' if held else 'did not hold'} (CFM {ps(ours)}; naive-fm {ps(naive)}).")
        reg = pick(b, "regression_l2", "regression-l2")
        held = reg["psnr"] >= cfm["psnr"] and reg["sharpness"] < cfm["sharpness"]
        out.append(f"- **Regression: high PSNR but blurry** ({s}, L2 vs CFM NFE {cfm['nfe']}): "
                   f"{'held' if held else 'did not hold'} (PSNR {reg['psnr']:.2f} vs {cfm['psnr']:.2f} dB; "
                   f"sharpness {reg['sharpness']:.2f} vs {cfm['sharpness']:.2f}, 1 = HR).")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/experiments", help="run_all.sh's folder")
    p.add_argument("--out", default="docs/results.md")
    args = p.parse_args()
    runs, docs = Path(args.runs), Path(args.out).parent
    ev = {s: load(runs, f"cfm_{s}") for s in SETS}
    bl = {s: load(runs, f"baselines_{s}") for s in SETS}
    sv = {s: {solver: load(runs, f"solver_{solver}_{s}") for solver in SOLVERS} for s in SETS}
    missing = [f"cfm_{s}" for s in SETS if not ev[s]] + [f"baselines_{s}" for s in SETS if not bl[s]]
    if missing:
        raise SystemExit(f"{runs}/eval lacks {', '.join(missing)}: run experiments/run_all.sh first")
    base = yaml.safe_load(Path("experiments/configs/base.yaml").read_text())

    save_plot(docs / "ablation_baselines.png",
              [(baseline_series(bl[s]["results"], "psnr"), s, "PSNR (dB)") for s in SETS]
              + [(baseline_series(bl[s]["results"], "ssim"), s, "SSIM") for s in SETS])
    solver_panels = [({solver: [(x["nfe"], x["psnr"]) for x in sv[s][solver]["results"]]
                       for solver in SOLVERS if sv[s][solver]}, s, "PSNR (dB)") for s in SETS]
    save_plot(docs / "ablation_solvers.png", solver_panels)
    small_grid(runs / "eval" / f"baselines_{SETS[0]}" / "grid.png", docs / "ablation_grid.png")

    first = ev[SETS[0]]
    text = "\n\n".join([
        "## Ablations and baselines (the paper's comparisons at CPU scale)",
        f"Made by `bash experiments/run_all.sh` and `python experiments/report.py`. Every run: the `{base['preset']}` "
        f"preset, {base['max_steps']} steps of batch {base['batch_size']} (lr {base['lr']}, EMA {base['ema_decay']}) "
        f"on the same 7,680 crops of 128 px encoded by the default autoencoder; two runs side by side on a 2-core "
        f"CPU, one thread each, about 12 minutes per run. Evaluated on the first {len(first['images'])} photos of "
        f"BSD68 and of Set14 (sorted by name), ×2 from bicubic downscales, on {first['device']}; PSNR (dB) / SSIM "
        f"on RGB, 2 border pixels shaved. Sharpness is the output's luma gradient energy over the reference's "
        f"(1 = as detailed as the photo, below 1 = blurrier). LPIPS, FID and p-FID were skipped: their weights "
        f"cannot be loaded offline here. These are small models trained for minutes; the numbers order the "
        f"methods at this budget and say nothing about the paper's scale.",
        "### Which of the paper's orderings held", "\n".join(verdicts(ev, bl)),
        "### Upsampling of the low-res latent (x0 and the condition)", upsampling_table(ev),
        "### Noise augmentation of x0 (τ of 1000, cosine VP schedule) and σ_min; sampled at the training τ",
        noise_table(ev),
        "### Baselines: same U-Net, data and budget",
        "Flows use Euler; diffusion uses DDIM on its cosine 1000-step schedule; regression is one forward pass. "
        "Seconds per image were measured while two or three evaluations shared the 2 cores: compare them within "
        "a column, not with other tables (`benchmarks/methods.py` times the methods alone).",
        baselines_table(bl),
        "![PSNR and SSIM against NFE](ablation_baselines.png) Bicubic (about 5 dB above) and diffusion at this "
        "budget (far below) are off the axes; the table has them.\n\n"
        f"![Every baseline on the first {SETS[0]} photo, with a zoomed crop](ablation_grid.png)",
        f"### ODE solvers on the CFM model (τ = 400), first {len(sv[SETS[0]]['euler']['images'])} photos of each set",
        solver_table(sv),
        "![PSNR against NFE per solver](ablation_solvers.png)",
    ]) + "\n"
    replace_section(Path(args.out), "ablations", text)
    print(text)


if __name__ == "__main__":
    main()

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

from doc_tables import SET_NAMES, SETS, machine, pending, pick, table

SOLVERS = ("euler", "midpoint", "heun", "rk4", "dopri5")
UPSAMPLING = {"psu": "cfm_psu", "bilinear": "cfm_bilinear", "nearest": "cfm_nearest"}
TAU = {0: "cfm_tau0", 200: "cfm_tau200", 400: "cfm_psu", 600: "cfm_tau600"}
METRICS = ("psnr", "psnr_y", "ssim", "ssim_y", "sharpness", "niqe", "lpips", "fid", "pfid", "seconds")
KEY = ("model", "method", "steps")


def seed_dirs(results: Path) -> list[Path]:
    return sorted((results / "ablations").glob("seed*"), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else 0)


def load_seeds(results: Path, name: str) -> list[dict]:
    return [json.loads((d / f"{name}.json").read_text()) for d in seed_dirs(results) if (d / f"{name}.json").is_file()]


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


def noise_table(ev) -> str:
    runs = [(f"τ = {t}", m) for t, m in TAU.items()] + [("τ = 400, σ_min = 0.01", "cfm_sigma1e-2")]
    rows = [[label, *[ps(pick(ev[s]["results"], "cfm", n, m)) for s in SETS for n in (1, 4)]] for label, m in runs]
    return table(["run", *[f"{s} NFE {n}" for s in SETS for n in (1, 4)]], rows)


def baselines_table(bl) -> str:
    lines = []
    for r0 in bl[SETS[0]]["results"]:
        if r0["method"] in ("x0", "lanczos"):
            continue
        cells = []
        for s in SETS:
            r = pick(bl[s]["results"], r0["method"], r0["steps"], r0["model"])
            cells += [ps(r), cell(r, "sharpness", ".2f"), cell(r, "seconds", ".2f")]
        lines.append([r0["method"], r0["steps"] or "–", *cells])
    return table(["method", "steps", *[f"{s} {c}" for s in SETS for c in ("PSNR / SSIM / NIQE", "sharpness",
                                                                          "s / img")]], lines)


def solver_table(sv) -> str:
    rows = []
    for solver in SOLVERS:
        if not all(sv[s].get(solver) for s in SETS):
            continue
        for r0 in sv[SETS[0]][solver]["results"]:
            cells = [ps(pick(sv[s][solver]["results"], "cfm", r0["steps"], r0["model"])) for s in SETS]
            rows.append([solver, r0["steps"], r0["nfe"], *cells])
    return table(["solver", "steps", "NFE", *SETS], rows)


def held(flag: bool) -> str:
    return "held" if flag else "did not hold"


def verdicts(ev, bl) -> list[str]:
    """One line per ordering of the paper, per set, judged on the means; the numbers that decide it beside."""
    out = []
    for s in SETS:
        r, b = ev[s]["results"], bl[s]["results"]
        for label, method, steps in (("x0, the flow's start", "x0", None), ("CFM NFE 4", "cfm", 4)):
            up = {k: pick(r, method, steps, m) for k, m in UPSAMPLING.items()}
            ok = up["psu"]["psnr"] > up["bilinear"]["psnr"] > up["nearest"]["psnr"]
            out.append(f"- **PSU > bilinear > nearest** ({s}, {label}, PSNR): {held(ok)} "
                       f"({' / '.join(cell(up[k], 'psnr', '.2f') for k in UPSAMPLING)} dB).")
        tau = {t: pick(r, "cfm", 4, m) for t, m in TAU.items()}
        ok = tau[400]["psnr"] > tau[0]["psnr"]
        niqe = f"; NIQE {cell(tau[400], 'niqe', '.2f')} vs {cell(tau[0], 'niqe', '.2f')}" \
            if tau[0].get("niqe") is not None else ""
        out.append(f"- **Noise augmentation helps** ({s}, τ = 400 vs τ = 0, NFE 4, PSNR): {held(ok)} "
                   f"({cell(tau[400], 'psnr', '.2f')} vs {cell(tau[0], 'psnr', '.2f')} dB{niqe}).")
        cfm, diff = pick(b, "cfm", 4, "cfm_psu"), pick(b, "diffusion", 50, "diffusion")
        out.append(f"- **CFM at NFE 4 ≥ diffusion at 50 steps** ({s}, PSNR and SSIM): "
                   f"{held(cfm['psnr'] >= diff['psnr'] and cfm['ssim'] >= diff['ssim'])} "
                   f"(CFM {ps(cfm)}; diffusion {ps(diff)}).")
        for n in (1, 4, 8):
            naive, ours = pick(b, "naive-fm", n, "naive_fm"), pick(b, "cfm", n, "cfm_psu")
            if naive and ours:
                out.append(f"- **CFM ≥ naive flow matching at equal NFE** ({s}, NFE {n}, PSNR and SSIM): "
                           f"{held(ours['psnr'] >= naive['psnr'] and ours['ssim'] >= naive['ssim'])} "
                           f"(CFM {ps(ours)}; naive-fm {ps(naive)}).")
        reg, one = pick(b, "regression-l2", model="regression_l2"), pick(b, "cfm", 1, "cfm_psu")
        out.append(f"- **Regression: high PSNR but blurry** ({s}, L2 vs CFM at NFE 1, one network call each): "
                   f"{held(reg['psnr'] >= one['psnr'] and reg['sharpness'] < one['sharpness'])} "
                   f"(PSNR {cell(reg, 'psnr', '.2f')} vs {cell(one, 'psnr', '.2f')} dB; sharpness "
                   f"{cell(reg, 'sharpness', '.2f')} vs {cell(one, 'sharpness', '.2f')}, 1 = HR).")
        d4 = pick(b, "diffusion", 4, "diffusion")
        if d4:
            out.append(f"- **The diffusion baseline learned to denoise** ({s}: 50 steps better than 4 in PSNR): "
                       f"{held(diff['psnr'] > d4['psnr'])} ({cell(diff, 'psnr', '.2f')} vs "
                       f"{cell(d4, 'psnr', '.2f')} dB).")
    return out


def load_all(results: Path):
    ev = {s: aggregate(load_seeds(results, f"cfm_{s}")) for s in SETS}
    bl = {s: aggregate(load_seeds(results, f"baselines_{s}")) for s in SETS}
    sv = {s: {solver: aggregate(load_seeds(results, f"solver_{solver}_{s}")) for solver in SOLVERS} for s in SETS}
    return ev, bl, sv


def section(results: Path) -> str:
    ev, bl, sv = load_all(results)
    title = "## Ablations and baselines (the paper's comparisons at CPU scale)"
    if not all(ev.values()) or not all(bl.values()):
        return f"{title}\n\n" + pending("ablations/seed<S>/{cfm,baselines,solver_*}_{bsd68,set14}.json",
                                        "SEEDS='0 1 2' bash experiments/run_all.sh")
    first = ev[SETS[0]]
    meta = first["meta"]
    counts = " and ".join(f"{len(ev[s]['images'])} photos of {SET_NAMES[s]}" for s in SETS)
    seeds = f"mean ± std over {first['seeds']} seeds" if first["seeds"] > 1 else "one seed (no spread)"
    parts = [
        title,
        f"Made by `bash experiments/run_all.sh` (the first run's evaluation: {machine(meta)}); raw results in "
        f"`results/ablations/`. Evaluated on the first {counts} (sorted by name), ×2 from bicubic downscales; "
        f"{seeds}. Cells are PSNR (dB) / SSIM on RGB, 2 border pixels shaved, / NIQE (no reference, lower is "
        f"better). Sharpness is the output's luma gradient energy over the photo's (below 1 = blurrier). "
        f"Settings tuned on: {meta['tuned_on']}.",
        "### Which of the paper's orderings held", "\n".join(verdicts(ev, bl)),
        "### Upsampling of the low-res latent (x0 and the condition)", upsampling_table(ev),
        "### Noise augmentation of x0 (τ of 1000, cosine VP schedule) and σ_min; sampled at the training τ",
        noise_table(ev),
        "### Baselines: same U-Net, data and budget",
        "Flows use Euler; diffusion uses DDIM on its cosine 1000-step schedule; regression is one forward pass. "
        "Seconds per image are wall-clock while evaluations shared the CPU: compare them within a column only.",
        baselines_table(bl),
        "![PSNR and SSIM against NFE](ablation_baselines.png)",
    ]
    if all(sv[s].get("euler") for s in SETS):
        parts += [f"### ODE solvers on the CFM model (τ = 400), first {len(sv[SETS[0]]['euler']['images'])} "
                  f"photos of each set", solver_table(sv), "![PSNR against NFE per solver](ablation_solvers.png)"]
    return "\n\n".join(parts)


def plots(results: Path, docs: Path) -> None:
    """The section's two PNGs (write mode only: --check compares text)."""
    ev, bl, sv = load_all(results)
    if not all(bl.values()):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(rows, key):
        out = {}
        for r in rows:
            if r["method"] not in ("x0", "lanczos", "bicubic") and r.get(key) is not None:
                out.setdefault(r["method"], []).append((max(r["nfe"], 1), r[key]))
        return out

    def save(path, panels):
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 2.9))
        for ax, (lines, title, ylabel) in zip(np.atleast_1d(axes), panels):
            for label, points in lines.items():
                xs, ys = zip(*sorted(points))
                if len(xs) == 1:
                    ax.axhline(ys[0], ls="--", lw=1, label=label)
                else:
                    ax.plot(xs, ys, marker="o", ms=3, label=label)
            ax.set_xscale("log", base=2)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("NFE", fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.grid(alpha=0.3)
        np.atleast_1d(axes)[-1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)

    save(docs / "ablation_baselines.png", [(series(bl[s]["results"], k), s, k.upper()) for k in ("psnr", "niqe")
                                           for s in SETS])
    if all(sv[s].get("euler") for s in SETS):
        save(docs / "ablation_solvers.png", [({v: [(x["nfe"], x["psnr"]) for x in sv[s][v]["results"]]
                                               for v in SOLVERS if sv[s][v]}, s, "PSNR (dB)") for s in SETS])

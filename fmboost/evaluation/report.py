"""What `fmboost eval` writes: results.csv, results.json, results.md, plots against NFE and an image grid."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fmboost.evaluation.metrics import METRIC_NAMES, patch_boxes

COLUMNS = ("model", "method", "steps", "solver", "nfe", "psnr", "psnr_y", "ssim", "ssim_y", "sharpness", "niqe",
           "lpips", "fid", "pfid", "seconds")
# Markdown header and number format of each measured column.
FORMATS = {"psnr": ("PSNR", ".2f"), "psnr_y": ("PSNR-Y", ".2f"), "ssim": ("SSIM", ".4f"),
           "ssim_y": ("SSIM-Y", ".4f"), "sharpness": ("sharpness (1 = HR)", ".3f"), "niqe": ("NIQE ↓", ".3f"),
           "lpips": ("LPIPS ↓", ".4f"), "fid": ("FID ↓", ".2f"), "pfid": ("p-FID ↓", ".2f"),
           "seconds": ("s / image", ".3g")}
PLOTS = {"psnr": "PSNR (dB, RGB)", "ssim": "SSIM (RGB)", "niqe": "NIQE (lower is better)", "lpips": "LPIPS",
         "pfid": "p-FID", "seconds": "seconds per image"}


def write_report(results: dict, pair: dict, grid: dict, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = results["results"]
    write_csv(rows, out / "results.csv")
    (out / "results.json").write_text(json.dumps(finite(results), indent=2) + "\n")
    plots = [name for name in PLOTS if any(r[name] is not None for r in rows)]
    for name in plots:
        plot_vs_nfe(rows, name, PLOTS[name], out / f"{name}_vs_nfe.png", results["device"])
    save_grid(pair, grid, results["scale"], out / "grid.png")
    (out / "results.md").write_text(markdown(results, plots))
    return out


def finite(x):
    """JSON has no inf or NaN (a PSNR of identical images is inf): those become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if r[k] is None else r[k]) for k in COLUMNS} for r in rows)


def cell(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def low_res_source(results: dict) -> str:
    """Where the low-res inputs came from: a folder given, a seeded degradation, or the plain downscale."""
    if results.get("lr_dir"):
        return results["lr_dir"]
    made = results.get("degradation")
    if made:
        return f"the HR crop degraded by the {made['name']} model (seed {made['seed']}: `fmboost degrade`'s images)"
    return "PIL bicubic (antialiased) downscale of the HR crop"


def markdown(results: dict, plots: list[str]) -> str:
    rows = results["results"]
    shown = [k for k in FORMATS if any(r[k] is not None for r in rows)]
    lines = [f"# fmboost eval: ×{results['scale']} on {len(results['images'])} image(s) of {results['hr_dir']}", "",
             f"- device: {results['device']} (seconds per image, after one warm-up call)",
             f"- LR: {low_res_source(results)}",
             f"- PSNR / SSIM on RGB and on Y (BT.601 luma), {results['crop_border']} border pixels shaved; "
             f"p-FID on {results['patches_per_image']} random {results['patch_size']}² patches per image"]
    if results.get("center_crop"):
        lines.insert(3, f"- HR: the central {results['center_crop']}×{results['center_crop']} of each photo")
    if results.get("hr_niqe") is not None:
        lines.append(f"- NIQE (no reference, lower is better) of the HR photos themselves: {results['hr_niqe']:.3f}")
    lines += [f"- skipped {METRIC_NAMES[k]}: {why}" for k, why in results["skipped"].items()]
    lines += ["", "| model | method | steps | NFE | " + " | ".join(FORMATS[k][0] for k in shown) + " |",
              "|" + "---|" * (4 + len(shown))]
    for r in rows:
        nfe = format(r["nfe"], "g")
        lines.append(f"| {r['model']} | {r['method']} | {r['steps'] or '–'} | {nfe} | "
                     + " | ".join(cell(r[k], FORMATS[k][1]) for k in shown) + " |")
    lines += [""] + [f"![{name} vs NFE]({name}_vs_nfe.png)" for name in plots] + ["", "![grid](grid.png)", ""]
    return "\n".join(lines)


def plot_vs_nfe(rows: list[dict], key: str, label: str, path: Path, device: str) -> None:
    """One line per (model, method) over its step counts; single-pass methods as dashed horizontal lines,
    since their NFE is 0 or 1 and a point would hide at the left edge."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here, nor on a server
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    series = {}
    for r in rows:
        if r[key] is not None:
            series.setdefault((r["model"], r["method"]), []).append(r)
    for i, ((model, method), rs) in enumerate(series.items()):
        name = method if model == "-" else f"{model} {method}"
        if rs[0]["steps"] is None:
            ax.axhline(rs[0][key], ls="--", lw=1, color=f"C{i % 10}", label=name)
        else:
            rs = sorted(rs, key=lambda r: r["nfe"])
            ax.plot([r["nfe"] for r in rs], [r[key] for r in rs], "o-", color=f"C{i % 10}", label=name)
    nfes = sorted({r["nfe"] for rs in series.values() for r in rs if r["steps"] is not None})
    if nfes:
        ax.set_xscale("log", base=2)  # step counts double: 1, 2, 4, 8, ...
        ax.set_xticks(nfes, [format(n, "g") for n in nfes])
        ax.minorticks_off()
    ax.set_xlabel("NFE (network evaluations per image)")
    ax.set_ylabel(label)
    ax.set_title(f"{label} vs NFE ({device})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def detail_box(hr: Image.Image, size: int) -> tuple[int, int]:
    """The grid patch of HR with the most variance: a flat sky would show no difference between methods."""
    gray = np.asarray(hr.convert("L"), dtype=np.float64)
    boxes = patch_boxes(gray.shape[0], gray.shape[1], size, "grid")
    return max(boxes, key=lambda b: gray[b[0]:b[0] + size, b[1]:b[1] + size].var())


def panel(image: Image.Image, title: str, box: tuple[int, int, int], width: int) -> Image.Image:
    """Title, the whole image with the crop outlined, and the crop enlarged with nearest neighbours."""
    top, left, size = box
    height = round(image.height * width / image.width)
    whole = image.resize((width, height), Image.BICUBIC)
    f = width / image.width
    box_on_thumb = [left * f, top * f, (left + size) * f - 1, (top + size) * f - 1]
    ImageDraw.Draw(whole).rectangle(box_on_thumb, outline=(255, 0, 0))
    zoom = image.crop((left, top, left + size, top + size)).resize((width, width), Image.NEAREST)
    out = Image.new("RGB", (width, 16 + height + width), "white")
    ImageDraw.Draw(out).text((3, 2), title[: width // 6], fill="black", font=ImageFont.load_default(size=12))
    out.paste(whole, (0, 16))
    out.paste(zoom, (0, 16 + height))
    return out


def save_grid(pair: dict, outputs: dict, scale: int, path: Path, width: int = 192, per_row: int = 6) -> None:
    """HR, LR (nearest ×scale) and every run's result on the first image, side by side with zoomed crops."""
    hr = pair["hr"]
    size = max(8, min(hr.size) // 4)
    box = (*detail_box(hr, size), size)
    images = {"HR": hr, f"LR (nearest x{scale})": pair["lr"].resize(hr.size, Image.NEAREST), **outputs}
    panels = [panel(im, title, box, width) for title, im in images.items()]
    cols = min(per_row, len(panels))
    rows = math.ceil(len(panels) / cols)
    h = panels[0].height
    sheet = Image.new("RGB", (cols * (width + 4), rows * (h + 4)), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, ((i % cols) * (width + 4), (i // cols) * (h + 4)))
    sheet.save(path)


def replace_section(path, name: str, text: str) -> None:
    """Rewrites only the part of a shared document between `<!-- name:begin -->` and `<!-- name:end -->`
    (appended the first time), so several scripts can each own a section of one file."""
    path, begin, end = Path(path), f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = path.read_text() if path.exists() else "# Results\n"
    section = f"{begin}\n{text}{end}"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin)] + section + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(doc)

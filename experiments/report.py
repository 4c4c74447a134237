"""Every generated section of README.md and docs/*.md, from the committed raw results in results/.

    python experiments/report.py            # rewrite the sections (and the ablation plots) from results/
    python experiments/report.py --check    # regenerate in memory; exit 1 naming each doc and line that differs

A generated section sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->`; everything outside the markers
is prose and stays as written. SECTIONS below says which renderer fills which section. A renderer whose raw file
is not in results/ yet writes a one-line note naming the command that makes it, never a number. `--check` runs in
CI (tests/test_docs.py): a figure edited by hand inside a section, or a raw file changed without regenerating,
fails it. It compares text only: the PNG plots are rewritten by the write mode and not checked.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ablations  # noqa: E402
import doc_tables  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# (document, section name, renderer(results folder) -> markdown)
SECTIONS = [
    ("README.md", "readme-grid", doc_tables.readme_grid),
    ("README.md", "presets", doc_tables.presets),
    ("README.md", "speed-line", doc_tables.speed_line),
    ("README.md", "default-model", doc_tables.default_model),
    ("README.md", "real-model", doc_tables.real_model),
    ("docs/default_model.md", "default-model", doc_tables.default_model),
    ("docs/default_model.md", "default-speed", doc_tables.default_speed),
    ("docs/default_model.md", "autoencoder-progress", doc_tables.autoencoder_progress),
    ("docs/default_model.md", "autoencoder-color", doc_tables.autoencoder_color),
    ("docs/default_model.md", "tuning", doc_tables.tuning),
    ("docs/results.md", "real", doc_tables.real_world),
    ("docs/results.md", "ablations", ablations.section),
    ("docs/speed.md", "speed-cpu", doc_tables.speed),
    ("docs/speed.md", "speed-cpu-quick", doc_tables.speed_quick),
    ("docs/speed.md", "speed-families-cpu", doc_tables.speed_families),
    ("docs/training_at_scale.md", "throughput-cpu", doc_tables.throughput),
    ("docs/robustness.md", "serve-load", doc_tables.serve_load),
    ("docs/robustness.md", "serve-hardening", doc_tables.serve_hardening),
]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def fill(doc: str, name: str, text: str, path: str) -> str:
    """`doc` with the section `name` replaced by `text`; the markers must already be there, each once."""
    begin, end = markers(name)
    if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
        raise SystemExit(f"{path}: needs exactly one {begin} … {end} pair")
    head, rest = doc.split(begin)
    return f"{head}{begin}\n{text.strip()}\n{end}{rest.split(end, 1)[1]}"


def render(root: Path) -> dict[str, tuple[str, str]]:
    """{document: (text on disk, text regenerated from root/results)}."""
    docs = {}
    for path, name, renderer in SECTIONS:
        current = docs[path][1] if path in docs else (root / path).read_text()
        new = fill(current, name, renderer(root / "results"), path)
        docs[path] = (docs[path][0] if path in docs else current, new)
    return docs


def first_difference(old: str, new: str) -> tuple[int, str, str]:
    a, b = old.splitlines(), new.splitlines()
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i + 1, x, y
    n = min(len(a), len(b))
    return n + 1, a[n] if n < len(a) else "(end of file)", b[n] if n < len(b) else "(end of file)"


def check(root: Path) -> int:
    stale = 0
    for path, (old, new) in render(root).items():
        if old != new:
            line, has, wants = first_difference(old, new)
            print(f"{path}:{line}: differs from results/ (regenerate with python experiments/report.py)\n"
                  f"  doc:       {has}\n  generated: {wants}", file=sys.stderr)
            stale += 1
    if not stale:
        print(f"{len(SECTIONS)} generated sections match results/")
    return 1 if stale else 0


def write(root: Path) -> int:
    for path, (old, new) in render(root).items():
        if old != new:
            tmp = root / f"{path}.tmp"
            tmp.write_text(new)
            tmp.replace(root / path)  # atomic: a doc is never left half-written
            print(f"updated {path}")
    ablations.plots(root / "results", root / "docs")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a doc differs from results/")
    p.add_argument("--root", type=Path, default=ROOT, help="repository root holding the docs and results/")
    args = p.parse_args(argv)
    return check(args.root) if args.check else write(args.root)


if __name__ == "__main__":
    sys.exit(main())

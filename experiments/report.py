"""Every generated section of README.md and docs/*.md, from the committed raw results in results/.

    python experiments/report.py            # rewrite the sections (and the ablation plots) from results/
    python experiments/report.py --check    # regenerate in memory; exit 1 naming each doc and line that differs

A generated section sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->`; everything outside the markers
is prose and stays as written. SECTIONS below says which renderer fills which section. A renderer whose raw file
is not in results/ yet writes a one-line note naming the command that makes it, never a number. `--check` runs in
CI (tests/test_docs.py): a figure edited by hand inside a section, or a raw file changed without regenerating,
fails it. It compares text only: the PNG plots are rewritten by the write mode and not checked. `--check` also
holds the docs to the raw files they name (raw_file_problems): results/README.md must list every raw file and
only files that exist (or are marked *not yet run*), and no doc may name a missing raw file without saying it is
still to be made, or say "measured" of a script none of whose raw files exist.
"""
from __future__ import annotations

import argparse
import itertools
import re
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
    ("README.md", "throughput-line", doc_tables.throughput_line),
    ("README.md", "default-model", doc_tables.default_model),
    ("README.md", "real-model", doc_tables.real_model),
    ("docs/default_model.md", "default-model", doc_tables.default_model),
    ("docs/default_model.md", "default-speed", doc_tables.default_speed),
    ("docs/default_model.md", "autoencoder-progress", doc_tables.autoencoder_progress),
    ("docs/default_model.md", "autoencoder-color", doc_tables.autoencoder_color),
    ("docs/default_model.md", "tuning", doc_tables.tuning),
    ("docs/default_model.md", "design-runs", doc_tables.design_runs),
    ("docs/default_model.md", "gpu-lease", doc_tables.gpu_lease),
    ("docs/default_model.md", "flow-cost", doc_tables.flow_cost),
    ("docs/default_model.md", "design-patch", doc_tables.design_patch),
    ("docs/default_model.md", "decoder-finetune", doc_tables.decoder_finetune),
    ("docs/default_model.md", "decoder-luma", doc_tables.decoder_luma),
    ("docs/default_model.md", "one-step", doc_tables.one_step),
    ("docs/default_model.md", "precision", doc_tables.precision),
    ("docs/default_model.md", "peers", doc_tables.peers),
    ("docs/default_model.md", "contention", doc_tables.contention),
    ("docs/default_model.md", "contention-own", doc_tables.contention_own),
    ("docs/default_model.md", "large-photo", doc_tables.large_photo),
    ("docs/results.md", "real", doc_tables.real_world),
    ("docs/results.md", "ablations", ablations.section),
    ("docs/real_world_x4.md", "real4-table", doc_tables.real4_table),
    ("docs/real_world_x4.md", "real4-paper", doc_tables.real4_paper),
    ("docs/real_world_x4.md", "real4-grid", doc_tables.real4_grid),
    ("docs/real_world_x4.md", "real4-nfe", doc_tables.real4_nfe),
    ("docs/real_world_x4.md", "real4-cascade", doc_tables.real4_cascade),
    ("docs/real_world_x4.md", "real4-frontier", doc_tables.real4_frontier),
    ("docs/speed.md", "speed-cpu", doc_tables.speed),
    ("docs/speed.md", "speed-cpu-quick", doc_tables.speed_quick),
    ("docs/speed.md", "speed-families-cpu", doc_tables.speed_families),
    ("docs/training_at_scale.md", "throughput-cpu", doc_tables.throughput),
    ("docs/robustness.md", "serve-load", doc_tables.serve_load),
    ("docs/robustness.md", "serve-hardening", doc_tables.serve_hardening),
    ("docs/video.md", "video-flicker", doc_tables.video_flicker),
    ("docs/video.md", "video-heldback", doc_tables.video_heldback),
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


# ------------------------------------------------------------------------------------------ raw files named

NOT_YET = "not yet run"  # results/README.md's mark on a file whose run has not been made
# Words with which a doc line says that a path it names is where a run *will* write, not a measurement.
PENDING = ("no raw results yet", NOT_YET, "still to be", "to be regenerated", "→", "writes")
SCRIPT = re.compile(r"(?:benchmarks|recipes|experiments)/[\w/]+\.(?:py|sh)")
RAW_PATH = re.compile(r"results/[\w./{},<>*-]+\.json")


def expand(pattern: str) -> list[str]:
    """`a/{b,c}_<S>.json` → glob patterns `a/b_*.json`, `a/c_*.json`; a placeholder in capitals (`NAME.json`)
    stands for any name too."""
    pattern = re.sub(r"<[^>]+>|\b[A-Z]{2,}\b", "*", pattern)
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def exists(results: Path, pattern: str) -> bool:
    return all(any(results.glob(p)) if "*" in p else (results / p).is_file() for p in expand(pattern))


def listing(root: Path) -> list[tuple[int, list[str], bool, list[str]]]:
    """results/README.md's table: (line, file patterns relative to results/, marked not yet run, scripts)."""
    rows = []
    for n, line in enumerate((root / "results" / "README.md").read_text().splitlines(), 1):
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) >= 3:
            rows.append((n, re.findall(r"`([^`]+)`", cells[0]), NOT_YET in cells[0].lower(),
                         SCRIPT.findall(cells[1])))
    return rows


def raw_file_problems(root: Path) -> list[str]:
    """What the docs say of raw files that is not so: results/README.md lists a file that is not there (unless
    marked not yet run), marks one not yet run that is there, or leaves a raw file out; a doc names a raw file that
    does not exist without saying it is still to be made, or says 'measured' of a script whose raw files do not
    exist."""
    results, problems = root / "results", []
    rows = listing(root)
    for n, patterns, not_yet, _ in rows:
        for pattern in patterns:
            if exists(results, pattern) == not_yet:
                problems.append(f"results/README.md:{n}: {pattern} " + ("exists: drop the 'not yet run'" if not_yet
                                else "does not exist (mark it 'not yet run' if its run is still to be made)"))
    listed = [g for _, patterns, _, _ in rows for p in patterns for g in expand(p)]
    for path in sorted(results.rglob("*.json")):
        rel = path.relative_to(results)
        if not any(rel.match(g) for g in listed):
            problems.append(f"results/README.md: does not list results/{rel}")
    made = {}  # script → whether any raw file it writes exists
    for _, patterns, not_yet, scripts in rows:
        for script in scripts:
            made[script] = made.get(script, False) or (not not_yet and all(exists(results, p) for p in patterns))
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for doc in docs:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            where, pending = f"{doc.relative_to(root)}:{n}", any(w in line.lower() for w in PENDING)
            for path in RAW_PATH.findall(line):
                if not pending and not exists(results, path.removeprefix("results/")):
                    problems.append(f"{where}: names {path}, which does not exist, without saying it is still "
                                    f"to be made")
            if re.search(r"\bmeasured\b", line, re.IGNORECASE):
                for script in SCRIPT.findall(line):
                    if not made.get(script, True):
                        problems.append(f"{where}: says measured, but no raw file of {script} exists")
    return problems


def check(root: Path) -> int:
    stale = 0
    for problem in raw_file_problems(root):
        print(problem, file=sys.stderr)
        stale += 1
    for path, (old, new) in render(root).items():
        if old != new:
            line, has, wants = first_difference(old, new)
            print(f"{path}:{line}: differs from results/ (regenerate with python experiments/report.py)\n"
                  f"  doc:       {has}\n  generated: {wants}", file=sys.stderr)
            stale += 1
    if not stale:
        print(f"{len(SECTIONS)} generated sections match results/, and every raw file named exists")
    return 1 if stale else 0


def write(root: Path) -> int:
    for path, (old, new) in render(root).items():
        if old != new:
            tmp = root / f"{path}.tmp"
            tmp.write_text(new)
            tmp.replace(root / path)  # atomic: a doc is never left half-written
            print(f"updated {path}")
    ablations.plots(root / "results", root / "docs")
    doc_tables.peers_plot(root / "results", root / "docs")
    doc_tables.real4_frontier_plot(root / "results", root / "docs")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a doc differs from results/")
    p.add_argument("--root", type=Path, default=ROOT, help="repository root holding the docs and results/")
    args = p.parse_args(argv)
    return check(args.root) if args.check else write(args.root)


if __name__ == "__main__":
    sys.exit(main())

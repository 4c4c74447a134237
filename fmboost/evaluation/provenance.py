"""Where a measurement came from: the `meta` block of every raw-results file under `results/`.

A figure in the docs is only as good as what can be said about it: the machine (CPU model and cores, or the
GPU), the date, the exact command, the code (git commit, and whether the tree had uncommitted changes) and what
the measured settings were tuned on. `results/README.md` describes the files; `experiments/report.py` renders
the docs' tables from them.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from fmboost.data.files import write_atomic
from fmboost.models.device import cpu_has_native_bf16

SCHEMA = 1  # bump when the layout of a raw-results file changes


def cpu_model() -> str:
    try:  # Linux names the model here; platform.processor() is often empty
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict:
    """The hardware and software a timing depends on."""
    info = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "os": platform.platform(terse=True), "python": platform.python_version(), "torch": torch.__version__,
            # what torch's CPU kernels use, and whether bf16 is computed or emulated: `--dtype auto` follows it
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16_native": cpu_has_native_bf16()}
    if hasattr(os, "getloadavg"):  # other jobs on the machine: wall-clock timings rise with this
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# What a measurement writes, never what it measures: a benchmark that writes two raw files (BSD68, then Set14) would
# otherwise call its own second one "with uncommitted changes".
OUTPUTS = ("results", "docs", "README.md")


def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding this package: dirty when a tracked file other than the results
    and the docs generated from them differs from the commit; (None, None) outside git."""
    root = root or Path(__file__).resolve().parents[2]
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,
                                        timeout=10, check=True).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", ".",
                         *(f":(exclude){p}" for p in OUTPUTS)))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would type it again: `fmboost eval …` or `python benchmarks/x.py …`."""
    argv = list(sys.argv if argv is None else argv)
    head = Path(argv[0])
    if head.suffix == ".py":
        try:
            shown = head.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            shown = head
        head_text = f"python {shown}"
    else:
        head_text = "fmboost" if head.name in ("fmboost", "main.py", "__main__.py") else head.name
    return " ".join([head_text, *map(shlex.quote, argv[1:])])


def run_meta(device: str = "cpu", tuned_on: str | None = None, command: str | None = None, **extra) -> dict:
    commit, dirty = git_state()
    meta = {"schema": SCHEMA, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command or command_line(), "git_commit": commit, "git_dirty": dirty,
            "machine": machine(device), "tuned_on": tuned_on or "not recorded"}
    return {**meta, **extra}


def write_json(path, data: dict) -> Path:
    """Atomically (temporary file, then rename): an interrupted run never leaves half a results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n"))
    return path

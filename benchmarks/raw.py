"""Shared by the benchmarks that write raw JSON (no torch here): where and when a figure was measured, and the file."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def meta(**extra) -> dict:
    """The machine, its load, the date, the command and the commit a run was measured at."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return dict(machine=platform.platform(), processor=platform.processor() or platform.machine(),
                cpus=os.cpu_count(), load_average_at_end=load, python=sys.version.split()[0],
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                command=" ".join([Path(sys.executable).name, *sys.argv]), commit=commit or "unknown", **extra)


def write_raw(path: str | os.PathLike, result: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"raw figures: {path}")

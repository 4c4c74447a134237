"""Writing files the safe way, and naming them: the one place outputs are renamed into place."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path


def write_atomic(path: str | os.PathLike, write, tmp: str | os.PathLike | None = None) -> Path:
    """Calls `write(TMP)` for a temporary file or folder beside `path`, then renames it into place, so an
    interrupted run never leaves half of it under the final name. TMP is per process (two ranks may write one
    manifest at once) unless `tmp` names it; it is removed if `write` fails."""
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    remove(tmp)  # what a crash left
    try:
        write(tmp)
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)  # os.replace cannot put a folder over a non-empty one
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise
    return path


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def slug(text: str, n: int = 40) -> str:
    """A file-name-safe stem from free text (a prompt)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:n] or "image"

"""Writing files the safe way, and naming them: the one place outputs are renamed into place; their digests."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

# A diffusers folder's weights file (a network's, an autoencoder's): the file the digests in training.json are of.
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256, read in 16 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: str | os.PathLike, write, tmp: str | os.PathLike | None = None) -> Path:
    """Calls `write(TMP)` for a temporary file or folder beside `path`, then renames it into place, so an
    interrupted run never leaves half of it under the final name. TMP is per process (two ranks may write one
    manifest at once) unless `tmp` names it; it is removed if `write` fails. A folder replaces the one there by
    way of PATH.old (os.replace cannot put a folder over a non-empty one): a run killed between the two renames
    leaves the previous folder complete as PATH.old, which `recover_old` puts back."""
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    remove(tmp)  # what a crash left
    try:
        write(tmp)
        normal_modes(tmp)
        old, swap = path.with_name(path.name + ".old"), path.is_dir() and tmp.is_dir()
        if swap:
            remove(old)
            path.rename(old)
        os.replace(tmp, path)
        if swap:
            remove(old)
    except BaseException:
        remove(tmp)
        raise
    return path


def recover_old(path: str | os.PathLike) -> None:
    """Puts PATH.old back when PATH is missing: what `write_atomic` leaves when a run dies between its renames."""
    path = Path(path)
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.is_dir():
        old.rename(path)


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_modes(path: str | os.PathLike) -> None:
    """Gives a written file (or a folder and all it holds) the modes a plain `open()` or `mkdir` would: 0666 and
    0777 less the umask. Temporary files (tempfile, safetensors' writer) are owner-only (0600), which would leave
    shared weights, shards and model folders unreadable to the group that reads the images beside them."""
    path, mask = Path(path), umask()
    if path.is_dir():
        for folder, dirs, files in os.walk(path):
            os.chmod(folder, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o666 & ~mask)
    elif path.exists():
        os.chmod(path, 0o666 & ~mask)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def slug(text: str, n: int = 40) -> str:
    """A file-name-safe stem from free text (a prompt)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:n] or "image"

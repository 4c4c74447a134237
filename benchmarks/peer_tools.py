"""Where the peers (SRMD, Real-ESRGAN, Real-CUGAN: ../shared/tools/peers, instruments, not dependencies) are found."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOL = Path("shared") / "tools" / "peers" / "upscale.py"
# ../shared beside the checkout, or beside a folder above it (a git worktree elsewhere)
PEER_SCRIPT = next((d / TOOL for d in ROOT.parents if (d / TOOL).exists()), ROOT.parent / TOOL)
DEFAULT_PY = Path("/tmp/fmboost-peers-venv/bin/python")  # what ../shared/tools/peers/setup.sh makes


def installed(py: str | Path) -> bool:
    """The peers' Python and their script are both there."""
    return Path(py).exists() and PEER_SCRIPT.exists()

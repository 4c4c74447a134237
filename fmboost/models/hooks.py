"""Counting a network's forward passes from outside it: the NFE of eval and the progress bar of serve."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def on_forward(callback, *modules):
    """Calls `callback()` after every forward pass of each module (None entries are skipped) inside the block."""
    hooks = [m.register_forward_hook(lambda *_: callback()) for m in modules if m is not None]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()

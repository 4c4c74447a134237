"""Swapping an autoencoder's submodules for equivalent faster ones, in place (subpixel.py, lean_resnet.py)."""
from __future__ import annotations

from typing import Callable

from torch import nn


def swap_modules(root: nn.Module, replaceable: Callable[[nn.Module], bool],
                 replacement: Callable[[nn.Module], nn.Module]) -> int:
    """Replaces every submodule of `root` that is `replaceable` by `replacement(it)`, under the same name; returns
    how many. The list is made first, so a replacement is never visited again."""
    swaps = [(parent, name, child) for parent in root.modules() for name, child in parent.named_children()
             if replaceable(child)]
    for parent, name, child in swaps:
        setattr(parent, name, replacement(child))
    return len(swaps)

"""The paper's own code (CompVis/fm-boosting, kept unchanged in ../shared/reference) loaded beside fmboost, for the
parity tests. Its package is also called `fmboost` and its U-Net imports its layers as top-level `model`,
`layers`, `residual`…, so it is imported with our fmboost taken out of sys.modules, its modules are then kept
aside, and ours put back: `Reference.active()` swaps them in again only around calls that import by name
(its instantiate_from_config). Its trainer needs pytorch_lightning and wandb, which only log: minimal stand-ins
take their place (a LightningModule that is an nn.Module whose log and save_hyperparameters do nothing).
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def reference_root() -> Path | None:
    """../shared/reference/fm-boosting from the repository root (or from a folder above it: a worktree)."""
    for parent in ROOT.parents:
        candidate = parent / "shared" / "reference" / "fm-boosting"
        if (candidate / "fmboost" / "flow.py").is_file():
            return candidate
    return None


def lightning_stubs() -> dict:
    pl = types.ModuleType("pytorch_lightning")

    class LightningModule(torch.nn.Module):
        def save_hyperparameters(self, *args, **kwargs):
            pass

        def log(self, *args, **kwargs):
            pass

    pl.LightningModule = LightningModule
    loggers = types.ModuleType("pytorch_lightning.loggers")
    loggers.WandbLogger = type("WandbLogger", (), {})
    pl.loggers = loggers
    return {"pytorch_lightning": pl, "pytorch_lightning.loggers": loggers, "wandb": types.ModuleType("wandb")}


def ours() -> dict:
    return {k: v for k, v in sys.modules.items() if k == "fmboost" or k.startswith("fmboost.")}


class Reference:
    def __init__(self, root: Path):
        self.root = root
        saved, path = ours(), list(sys.path)
        stubs = {k: v for k, v in lightning_stubs().items() if k not in sys.modules}
        for k in saved:
            del sys.modules[k]
        before = set(sys.modules)
        sys.modules.update(stubs)
        sys.path.insert(0, str(root))
        try:
            self.flow = importlib.import_module("fmboost.flow")
            self.diffusion = importlib.import_module("fmboost.diffusion")
            self.unet = importlib.import_module("fmboost.models.unet.model")  # puts its folders on sys.path
            self.t_emb = importlib.import_module("layers.t_emb")
            self.kl = importlib.import_module("fmboost.kl_autoencoder")
            self.trainer = importlib.import_module("fmboost.trainer")
        finally:
            self.modules = {k: sys.modules.pop(k) for k in set(sys.modules) - before
                            if k in stubs or self.is_reference(sys.modules[k])}
            sys.modules.update(saved)
            sys.path[:] = path

    def is_reference(self, module) -> bool:
        file = getattr(module, "__file__", None)
        return file is not None and Path(file).resolve().is_relative_to(self.root)

    @contextlib.contextmanager
    def active(self):
        """The reference's modules under their own names (for code that imports by name), ours put back after."""
        saved = ours()
        for k in saved:
            del sys.modules[k]
        sys.modules.update(self.modules)
        before = set(sys.modules)
        try:
            yield
        finally:
            self.modules.update({k: sys.modules[k] for k in set(sys.modules) - before
                                 if self.is_reference(sys.modules[k])})
            for k in self.modules:
                sys.modules.pop(k, None)
            sys.modules.update(saved)

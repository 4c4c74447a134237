"""The flow networks a model folder's cfm/ may hold, picked by the `_class_name` of its config.json."""
from __future__ import annotations

import json
import os
from pathlib import Path

from fmboost.models.efficient_unet import EfficientUNet
from fmboost.models.resnet import CFMResNet
from fmboost.models.unet import CFMUNet

# fmboost's own U-Net and residual network, and the paper's code's (models converted by `fmboost convert-compvis`).
NETWORKS = {cls.__name__: cls for cls in (CFMUNet, CFMResNet, EfficientUNet)}


def network_name(folder: str | os.PathLike) -> str:
    """The class that saved the network in `folder`; CFMUNet if its config says none."""
    config = Path(folder) / "config.json"
    return json.loads(config.read_text()).get("_class_name", "CFMUNet") if config.is_file() else "CFMUNet"


def load_network(folder: str | os.PathLike):
    """The network saved in `folder` (save_pretrained), as the class that saved it."""
    name = network_name(folder)
    if name not in NETWORKS:
        raise ValueError(f"{folder}: a {name} network, which fmboost does not know; it runs "
                         f"{', '.join(NETWORKS)}")
    return NETWORKS[name].from_pretrained(folder)

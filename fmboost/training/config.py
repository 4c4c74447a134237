"""Training settings as plain data: defaults here, a YAML/JSON file over them, command-line flags over that."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fmboost.errors import InputError, MissingError


@dataclass
class TrainConfig:
    data: str | None = None            # folder written by `fmboost prepare`
    out: str = "runs/cfm"
    preset: str = "tiny"               # tiny | faces | general
    model: dict = field(default_factory=dict)  # overrides of the preset's U-Net settings
    init: str | None = None            # fine-tune: start from this model folder's CFM weights (its architecture wins)
    objective: str = "cfm"             # cfm | naive-fm | diffusion | regression-l1 | regression-l2
    sigma_min: float = 0.0
    tau: float = 400                   # noise-augmentation step of x0 (of 1000); 0 turns it off
    pixel_weight: float = 0.0          # cfm: + λ·L1 of the decoded one-step estimate against the decoded target
    sample_tau: float | None = None    # τ the exported model samples with (default: tau)
    sample_steps: int | None = None    # the exported model's ODE steps when the user gives none (default: 4)
    color_fix: str = "none"            # none | wavelet | adain | luma: the exported model's default colour correction
    back_projection: int = 0           # the exported model's back-projections onto the input (pipelines/consistency.py)
    next_model: str | None = None      # the exported model's next_model: what runs its later passes (×4 of ×2)
    batch_size: int = 16               # the GLOBAL batch of one optimiser step: processes × grad_accum × per process
    grad_accum: int = 1                # micro-batches per step and process (their gradients are averaged)
    lr: float = 2e-4
    lr_scaling: str = "none"           # none | linear | sqrt: lr × (batch_size / reference_batch) or its square root
    reference_batch: int = 16          # the global batch `lr` was tuned for
    weight_decay: float = 0.0
    warmup_steps: int = 500
    lr_decay: str = "none"             # none | cosine (to 0 at max_steps, after the warm-up)
    max_steps: int = 10000
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    bf16: bool = False                 # bf16 autocast (CPU or GPU)
    channels_last: bool = False        # NHWC layout for the convolutions (often faster with bf16 on GPUs)
    compile: bool = False              # torch.compile (through accelerate's dynamo plugin)
    fused_adamw: bool = True           # one fused AdamW kernel, on CUDA
    distributed: str = "ddp"           # ddp | fsdp (FSDP2 through accelerate, several GPUs: shards weights and state)
    data_cache_mb: float = 1024        # shards summing to less stay in memory once read; larger sets are streamed
    seed: int = 0
    log_every: int = 50
    sample_every: int = 1000           # 0 turns sample grids off
    checkpoint_every: int = 500
    keep_checkpoints: int = 2          # the newest complete ones under OUT/checkpoints/step_NNNNNNN
    max_minutes: float | None = None   # stop cleanly (and resumably) after this long

    @classmethod
    def load(cls, path: str | None = None, **overrides) -> "TrainConfig":
        values = read_settings(path) if path else {}
        values.pop("effective", None)  # what a run worked out (OUT/config.json), not a setting
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise InputError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_settings(path) -> dict:
    """A YAML/JSON file of settings; `base: other.yaml` (relative to the file) is read first and overridden."""
    if not Path(path).is_file():
        raise MissingError(f"{path}: no such settings file")
    text = Path(path).read_text()
    try:
        values = (json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)) or {}
    except (ValueError, yaml.YAMLError) as e:  # a user's typo: one line that names the file
        raise InputError(f"{path}: not valid {'JSON' if str(path).endswith('.json') else 'YAML'} "
                         f"({str(e).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a mapping of settings")
    base = values.pop("base", None)
    return {**read_settings(Path(path).parent / base), **values} if base else values

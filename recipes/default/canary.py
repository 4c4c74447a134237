"""The canary figures of the embedded default model: what tests/test_canary.py compares the model against, so that
a fresh clone (without ../shared/data) notices a broken model or sampler.

    python recipes/default/canary.py        # writes results/default_model/canary.json

**Rerun it, and commit the file it writes, whenever the embedded weights (fmboost/weights/default) change**: the
test reads every figure and tolerance it compares from that file, and fails until the file matches the weights.
Run it on a committed tree (`git_dirty: false` in its meta): the figures then belong to a commit.

Three 96 px crops of `examples/astronaut.png` (shipped with the repository) are downscaled ×2 with PIL's bicubic
and upscaled back by the model, and each gets FIGURES:

- `psnr_cfm`, `psnr_x0`: PSNR (dB, RGB, 2 border pixels shaved, on the float output before 8-bit rounding) of the
  whole upscale at NFE 4 (Euler, the model's colour fix) and of the decoded x0, against the original crop;
- `v0_abs`: the mean |x1 − x0| of one Euler step, i.e. |v(x0, t = 0)|; `d4_abs`: the mean |x1 − x0| at NFE 4;
  `x1_std`: the standard deviation of the latent x1 at NFE 4.

The default model nearly ignores t (feeding it 1 − t costs hundredths of a dB), so the figures are kept
to full precision. The tolerance of each figure comes from its measured spread: the largest difference, over the
crops, between the figures as first computed and the same figures recomputed under 2 torch threads, with oneDNN
(mkldnn) convolutions switched off, and with the low-res input perturbed by relative noise of 1e-6 (as a CPU that
rounds differently would) — each a different order of floating-point operations — times SAFETY. The file also
records how far each figure moves (`sabotages`, per crop) under the four sabotages the test exists to catch
(random weights, weights × 0.5, the network fed 1 − t, x_t read as the condition and the condition as x_t); the
script refuses to write a file in which some sabotage moves no figure of some crop by more than twice its
tolerance.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import math
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from fmboost import DEFAULT_MODEL
from fmboost.data.images import load_image, resize, to_tensor
from fmboost.evaluation.provenance import run_meta, write_json
from fmboost.pipelines.upscale import FMBoostPipeline

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "examples/astronaut.png"
BOXES = [(64, 16, 160, 112), (128, 128, 224, 224), (16, 150, 112, 246)]  # left, top, right, bottom; 96 px each
STEPS = 4
FIGURES = ("psnr_cfm", "psnr_x0", "v0_abs", "d4_abs", "x1_std")
SAFETY = 1000  # the spread measured on one CPU understates another's; the sabotages move figures far more
RAW = ROOT / "results" / "default_model" / "canary.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_sha256(model: Path) -> dict:
    """The checksums of a model folder's weight files: the test names them when the figures no longer match."""
    return {str(p.relative_to(model)): sha256(p) for p in sorted(model.rglob("*.safetensors"))}


def psnr(out: torch.Tensor, ref: torch.Tensor, shave: int = 2) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2), in float64, before any 8-bit rounding."""
    a, b = (x[..., shave:-shave, shave:-shave].double() for x in (out, ref))
    return 10 * math.log10(4 / (a - b).square().mean().item())


def crops(root: Path = ROOT, boxes=BOXES, perturb: torch.Generator | None = None):
    """(low-res input, high-res reference) tensors of each crop; `perturb`: relative input noise of 1e-6."""
    source = load_image(root / SOURCE)
    for box in boxes:
        hr = source.crop(tuple(box))
        x = to_tensor(resize(hr, (hr.width // 2, hr.height // 2)))[None]
        if perturb is not None:
            x = x * (1 + 1e-6 * torch.randn(x.shape, generator=perturb))
        yield x, to_tensor(hr)[None]


@torch.no_grad()
def figures(pipe: FMBoostPipeline, x: torch.Tensor, hr: torch.Tensor, steps: int = STEPS) -> dict:
    """FIGURES of one crop, through the pipeline's own conditioning, sampler (Euler) and decoder."""
    out, _ = pipe.upscale_tensor(x, "cfm", steps)
    start, _ = pipe.upscale_tensor(x, "x0")
    x0 = pipe.condition(x)
    x1_one, _ = pipe.flow(x0, 1)
    x1, _ = pipe.flow(x0, steps)
    return {"psnr_cfm": psnr(out, hr), "psnr_x0": psnr(start, hr), "v0_abs": (x1_one - x0).abs().mean().item(),
            "d4_abs": (x1 - x0).abs().mean().item(), "x1_std": x1.std().item()}


def all_figures(pipe, **kw) -> list[dict]:
    return [figures(pipe, x, hr) for x, hr in crops(**kw)]


@contextmanager
def setting(threads: int | None = None, mkldnn: bool | None = None):
    before = torch.get_num_threads(), torch.backends.mkldnn.enabled
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if mkldnn is not None:
            torch.backends.mkldnn.enabled = mkldnn
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.backends.mkldnn.enabled = before[1]


def largest_difference(a: list[dict], b: list[dict]) -> dict:
    return {f: max(abs(x[f] - y[f]) for x, y in zip(a, b)) for f in FIGURES}


class Sabotaged(torch.nn.Module):
    """The network with its inputs rearranged as a broken sampler would feed them."""

    def __init__(self, net, how):
        super().__init__()
        self.net, self.how = net, how

    @property
    def size_multiple(self) -> int:
        return self.net.size_multiple

    def forward(self, x_t, t, x_cond):
        return self.net(*self.how(x_t, torch.as_tensor(t), x_cond))


def sabotages(model: torch.nn.Module) -> dict:
    """{name: a broken copy of the network}: the four breakages tests/test_canary.py must notice."""
    scaled = copy.deepcopy(model)
    scaled.load_state_dict({k: v * 0.5 for k, v in model.state_dict().items()})
    torch.manual_seed(0)
    # type(model): the default's network is whichever the preset built (U-Net or the `sr` residual network)
    return {"random weights": type(model)(**model.config).eval(), "weights x 0.5": scaled,
            "fed 1 - t": Sabotaged(model, lambda x, t, c: (x, 1 - t, c)),
            "x_t read as the condition": Sabotaged(model, lambda x, t, c: (x, t, x)),
            "the condition read as x_t": Sabotaged(model, lambda x, t, c: (c, t, c))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=RAW)
    args = p.parse_args(argv)
    model_dir = Path(DEFAULT_MODEL)
    pipe = FMBoostPipeline.from_pretrained(model_dir)
    with setting(threads=1, mkldnn=True):
        reference = all_figures(pipe)
        again = all_figures(pipe)
    if again != reference:
        print("warning: two runs under the same settings differ", file=sys.stderr)
    variants = {}
    with setting(threads=2):
        variants["2 torch threads"] = all_figures(pipe)
    with setting(threads=1, mkldnn=False):
        variants["oneDNN convolutions off"] = all_figures(pipe)
    with setting(threads=1):
        variants["input x (1 + 1e-6 noise)"] = all_figures(pipe, perturb=torch.Generator().manual_seed(0))
    variants["the same settings again"] = again
    spread = {name: largest_difference(rows, reference) for name, rows in variants.items()}
    largest = {f: max(s[f] for s in spread.values()) for f in FIGURES}
    # A figure whose spread was 0 (or below float32's resolution) on this CPU still gets a tolerance: float32's
    # relative precision of its value.
    floor = {f: 2 ** -23 * max(abs(r[f]) for r in reference) for f in FIGURES}
    tolerance = {f: SAFETY * max(largest[f], floor[f]) for f in FIGURES}
    moved = {}
    original = pipe.model
    with setting(threads=1):
        for name, net in sabotages(original).items():
            pipe.model = net
            rows = all_figures(pipe)
            moved[name] = [{f: abs(r[f] - ref[f]) for f in FIGURES} for r, ref in zip(rows, reference)]
    pipe.model = original
    most = {name: [max(m[f] / tolerance[f] for f in FIGURES) for m in per_crop] for name, per_crop in moved.items()}
    unnoticed = [f"{name}, crop {i}" for name, per_crop in most.items() for i, m in enumerate(per_crop) if m < 2]
    if unnoticed:
        print(f"refusing to write {args.out}: these sabotages move no figure by twice its tolerance: "
              f"{'; '.join(unnoticed)}", file=sys.stderr)
        return 1
    write_json(args.out, {
        "meta": run_meta(tuned_on="nothing: fixed crops of the shipped example, chosen before any output was seen"),
        "settings": {"model": "default", "weights_sha256": weights_sha256(model_dir), "source": SOURCE,
                     "source_sha256": sha256(ROOT / SOURCE), "boxes": BOXES, "scale": pipe.config["scale"],
                     "downscale": "PIL bicubic", "steps": STEPS, "solver": "euler", "safety": SAFETY},
        "crops": [{"box": list(box), **r} for box, r in zip(BOXES, reference)],
        "spread": spread, "tolerance": tolerance,
        "sabotages": moved})
    print(f"wrote {args.out}")
    for name, per_crop in most.items():
        print(f"{name}: on every crop some figure moves by at least {min(per_crop):.0f} tolerances")
    return 0


if __name__ == "__main__":
    sys.exit(main())

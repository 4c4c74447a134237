"""fmboost: boost latent diffusion models to high resolution with coupling flow matching (CFM)."""
from pathlib import Path

__version__ = "0.1.0"

# Models shipped inside the package, selectable by name (`--model real`). Both are ×2 on one small
# AutoencoderKL: `default` trained on clean bicubic downsamples (recipes/default), `real` fine-tuned from it on
# Real-ESRGAN degradations (recipes/real).
EMBEDDED_MODELS = {name: Path(__file__).parent / "weights" / name for name in ("default", "real")}
DEFAULT_MODEL = EMBEDDED_MODELS["default"]


def __getattr__(name):  # keep `import fmboost` light: torch and diffusers load on first use
    if name == "FMBoostPipeline":
        from fmboost.pipelines.upscale import FMBoostPipeline
        return FMBoostPipeline
    if name == "BoostedLatentDiffusionPipeline":
        from fmboost.pipelines.generate import BoostedLatentDiffusionPipeline
        return BoostedLatentDiffusionPipeline
    raise AttributeError(name)

"""fmboost: boost latent diffusion models to high resolution with coupling flow matching (CFM)."""
from pathlib import Path

__version__ = "0.1.0"

# The embedded ×2 default: a small AutoencoderKL and a tiny CFM U-Net trained by recipes/default.
DEFAULT_MODEL = Path(__file__).parent / "weights" / "default"


def __getattr__(name):  # keep `import fmboost` light: torch and diffusers load on first use
    if name == "FMBoostPipeline":
        from fmboost.pipelines.upscale import FMBoostPipeline
        return FMBoostPipeline
    if name == "BoostedLatentDiffusionPipeline":
        from fmboost.pipelines.generate import BoostedLatentDiffusionPipeline
        return BoostedLatentDiffusionPipeline
    raise AttributeError(name)

"""fmboost: boost latent diffusion models to high resolution with coupling flow matching (CFM)."""
from fmboost.data.sources import DEFAULT_MODEL, EMBEDDED_MODELS  # noqa: F401  (the package's names for them)

__version__ = "0.1.0"


def __getattr__(name):  # keep `import fmboost` light: torch and diffusers load on first use
    if name == "FMBoostPipeline":
        from fmboost.pipelines.upscale import FMBoostPipeline
        return FMBoostPipeline
    if name == "BoostedLatentDiffusionPipeline":
        from fmboost.pipelines.generate import BoostedLatentDiffusionPipeline
        return BoostedLatentDiffusionPipeline
    raise AttributeError(name)

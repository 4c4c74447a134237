"""The embedded default model: present in the package, offline, and a better upscaler than bicubic (and than its
own x0) on real photos."""
from pathlib import Path

import numpy as np
import pytest

from fmboost import DEFAULT_MODEL
from fmboost.cli.main import main
from fmboost.data.images import load_image, resize
from fmboost.evaluation import metrics as M
from fmboost.pipelines.upscale import FMBoostPipeline

VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "val" / "bsd68"


def test_default_model_is_embedded_and_small():
    files = list(DEFAULT_MODEL.rglob("*.safetensors"))
    assert sorted(f.parent.name for f in files) == ["autoencoder", "cfm", "temporal"]
    assert sum(f.stat().st_size for f in files) <= 40e6


def test_the_docs_record_of_the_one_step_fine_tune_is_the_shipped_one():
    """docs/default_model.md renders the fine-tune's settings from results/: the copy must be the shipped record."""
    import json

    shipped = DEFAULT_MODEL / "cfm" / "training.json"
    copy = Path(__file__).resolve().parents[1] / "results" / "default_model" / "onestep" / "training.json"
    assert json.loads(copy.read_text()) == json.loads(shipped.read_text())


def test_the_real_model_is_fine_tuned_from_the_shipped_default():
    """`real`'s first round starts from the default's flow (recipes/real/cfm.yaml's init), its second from the first
    (cfm_x4.yaml), and it shares the default's autoencoder: retrain it (recipes/real/make_real.sh) whenever the
    default's flow or decoder changes."""
    import json

    from fmboost import EMBEDDED_MODELS
    from fmboost.data.files import sha256

    real, weights = EMBEDDED_MODELS["real"], "diffusion_pytorch_model.safetensors"
    made = json.loads((real / "training.json").read_text())
    assert made["data"].get("cascade") == 2 and made["config"]["init"] == "fmboost/weights/real"
    first = made["init_record"]
    assert first["data"].get("cascade", 1) == 1 and "init_record" not in first
    assert first["init_sha256"] == sha256(DEFAULT_MODEL / "cfm" / weights)
    assert sha256(real / "autoencoder" / weights) == sha256(DEFAULT_MODEL / "autoencoder" / weights)


def test_the_default_upscales_a_pan_more_steadily_than_frame_by_frame():
    """Its temporal layers (temporal/) against --per-frame on a pan it never saw: the astronaut's centre moved by 1
    high-res px per frame, with the flicker benchmark's own pan and measure (the known shift undone)."""
    import sys

    import torch
    from PIL import Image

    from fmboost.data.images import to_pil, to_tensor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from video_flicker import flicker, pan_frames

    pipe = FMBoostPipeline.from_pretrained(DEFAULT_MODEL)
    assert pipe.aligned
    photo = load_image(Path(__file__).resolve().parents[1] / "examples" / "astronaut.png")
    highs = pan_frames(photo, 128, 12)
    lows = torch.stack([to_tensor(resize(Image.fromarray(f), (64, 64))) for f in highs])

    def mean_flicker(out):
        return float(np.mean(flicker([np.asarray(to_pil(frame)) for frame in out])))

    aligned, per_frame = pipe.upscale_clip(lows, aligned=True), pipe.upscale_clip(lows, aligned=False)
    assert mean_flicker(aligned) < 0.95 * mean_flicker(per_frame)


def test_upscale_with_no_model_argument_works_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
    small = tmp_path / "astronaut.png"
    resize(load_image(src), (64, 64)).save(small)
    assert main(["upscale", str(small)]) == 0
    assert load_image(tmp_path / "astronaut_x2.png").size == (128, 128)


@pytest.mark.skipif(not VAL.is_dir(), reason="validation photos (../shared/data) not present")
def test_cfm_beats_bicubic_and_x0_on_validation_photos():
    pipe = FMBoostPipeline.from_pretrained(DEFAULT_MODEL)
    gains = {"bicubic": [], "x0": []}
    for path in sorted(VAL.glob("*.png"))[:4]:
        hr = load_image(path)
        hr = hr.crop((0, 0, 192, 128))  # a crop keeps this test to seconds
        lr = resize(hr, (96, 64))
        cfm = pipe(lr, steps=4)
        for method in gains:
            other = pipe(lr, method=method)
            gains[method].append([M.psnr(cfm, hr, "rgb", 2) - M.psnr(other, hr, "rgb", 2),
                                  M.ssim(cfm, hr, "rgb", 2) - M.ssim(other, hr, "rgb", 2),
                                  M.sharpness(cfm, hr, 2) - M.sharpness(other, hr, 2)])
    for method, rows in gains.items():
        psnr_gain, ssim_gain, sharpness_gain = np.mean(rows, axis=0)
        assert psnr_gain > 0 and ssim_gain > 0, method
        assert sharpness_gain >= 0, method  # not bought by blurring


def test_real_model_is_embedded_and_upscales_a_degraded_photo(tmp_path, monkeypatch):
    from fmboost import EMBEDDED_MODELS
    from fmboost.data.degradations import degrade_image, image_rng

    files = list(EMBEDDED_MODELS["real"].rglob("*.safetensors"))
    assert len(files) == 2 and sum(f.stat().st_size for f in files) <= 40e6
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
    degraded = tmp_path / "astronaut.jpg"
    degrade_image(resize(load_image(src), (128, 128)), 2, image_rng(0, 0)).save(degraded)
    assert main(["upscale", str(degraded), "--model", "real", "--steps", "2"]) == 0
    assert load_image(tmp_path / "astronaut_x2.png").size == (128, 128)


@pytest.mark.skipif(not VAL.is_dir(), reason="validation photos (../shared/data) not present")
def test_real_model_beats_bicubic_and_default_on_degraded_photos():
    """The `real` model's reason to exist: on Real-ESRGAN-degraded inputs it is closer to the clean photo than
    bicubic and than the clean `default` model (the full sets are in docs/results.md)."""
    from fmboost import EMBEDDED_MODELS
    from fmboost.data.degradations import degrade_image, image_rng

    real, default = (FMBoostPipeline.from_pretrained(EMBEDDED_MODELS[m]) for m in ("real", "default"))
    gains = {"bicubic": [], "default": []}
    for i, path in enumerate(sorted(VAL.glob("*.png"))[:6]):
        hr = load_image(path).crop((0, 0, 192, 128))
        lr = degrade_image(hr, 2, image_rng(0, i))
        ours = real(lr, steps=4)
        for name, other in (("bicubic", real(lr, method="bicubic")), ("default", default(lr, steps=4))):
            gains[name].append([M.psnr(ours, hr, "rgb", 2) - M.psnr(other, hr, "rgb", 2),
                                M.ssim(ours, hr, "rgb", 2) - M.ssim(other, hr, "rgb", 2)])
    for name, rows in gains.items():
        psnr_gain, ssim_gain = np.mean(rows, axis=0)
        assert psnr_gain > 0 and ssim_gain > 0, (name, psnr_gain, ssim_gain)


def test_the_default_ships_the_settings_its_tuning_chose():
    """fmboost.json's step count, sampling τ, colour fix and back-projection are the ones recipes/default/tune.py's committed
    results choose by the rule the docs state (experiments/doc_tables.chosen_setting), not typed in by hand."""
    import json
    import sys

    from fmboost.data.model_config import ModelConfig

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "experiments"))
    import doc_tables

    mean = json.loads((root / "results" / "default_model" / "tuning.json").read_text())["mean"]
    shipped = ModelConfig.read(DEFAULT_MODEL)
    chosen = doc_tables.setting(doc_tables.chosen_setting(mean))
    assert chosen == {"steps": shipped.steps, "tau": float(shipped.tau), "color_fix": shipped.color_fix,
                      "back_projection": shipped.back_projection}

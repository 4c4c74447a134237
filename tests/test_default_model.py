"""The embedded default model: present in the package, offline, and better than its own x0 on real photos."""
from pathlib import Path

import numpy as np
import pytest

from fmboost import DEFAULT_MODEL
from fmboost.cli.main import main
from fmboost.data.images import load_image, resize
from fmboost.pipelines.upscale import FMBoostPipeline

VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "val" / "bsd68"


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_default_model_is_embedded_and_small():
    files = list(DEFAULT_MODEL.rglob("*.safetensors"))
    assert len(files) == 2
    assert sum(f.stat().st_size for f in files) <= 40e6


def test_upscale_with_no_model_argument_works_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
    small = tmp_path / "astronaut.png"
    resize(load_image(src), (64, 64)).save(small)
    assert main(["upscale", str(small)]) == 0
    assert load_image(tmp_path / "astronaut_x2.png").size == (128, 128)


@pytest.mark.skipif(not VAL.is_dir(), reason="validation photos (../shared/data) not present")
@pytest.mark.xfail(strict=True, reason="known gap (issue 2): the CPU-trained default does not yet beat x0 at "
                   "NFE 4; x0 sits near the small autoencoder's ceiling. strict: passing means the gap closed")
def test_cfm_beats_x0_on_validation_photos():
    pipe = FMBoostPipeline.from_pretrained(DEFAULT_MODEL)
    gains = []
    for path in sorted(VAL.glob("*.png"))[:4]:
        hr = load_image(path)
        hr = hr.crop((0, 0, 192, 128))  # a crop keeps this test to seconds
        lr = resize(hr, (96, 64))
        gains.append(psnr(pipe(lr, steps=4), hr) - psnr(pipe(lr, method="x0"), hr))
    assert np.mean(gains) > 0

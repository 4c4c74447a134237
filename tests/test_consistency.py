"""Back-projection: the upscale shrinks back to its input, its detail above the input's resolution untouched."""
import pytest
import torch
import torch.nn.functional as F

from fmboost.data.model_config import ModelConfig
from fmboost.errors import InputError
from fmboost.pipelines.consistency import back_project


def shrink(x, size):
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)


def smooth_photo(seed=0, size=(24, 20)):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, 6, 5, generator=g) * 1.2 - 0.6, size=size, mode="bilinear")


def test_each_iteration_brings_the_shrunk_output_closer_to_the_input():
    lowres = smooth_photo(0)
    output = F.interpolate(smooth_photo(1), scale_factor=2, mode="bilinear")  # an upscale of another photo
    errors = [(shrink(back_project(output, lowres, k), lowres.shape[-2:]) - lowres).abs().mean().item()
              for k in range(4)]
    assert errors[1] < 0.5 * errors[0] and errors[2] < errors[1] and errors[3] < errors[2]
    assert torch.equal(back_project(output, lowres, 0), output)  # 0: off


def test_detail_above_the_inputs_resolution_is_left_alone():
    lowres = smooth_photo(2)
    base = F.interpolate(lowres, scale_factor=2, mode="bicubic", align_corners=False)
    stripes = torch.zeros_like(base)
    stripes[..., ::2, :] = 0.1
    stripes[..., 1::2, :] = -0.1  # one-pixel stripes: nothing of them survives the shrink
    fixed = back_project(base + stripes, lowres, 2)
    kept = (fixed[..., 4:-4:2, 4:-4] - fixed[..., 5:-4:2, 4:-4]).mean()
    assert kept > 0.15  # of the 0.2 between neighbouring rows


def test_a_grey_input_stays_grey():
    lowres = smooth_photo(3)[:, :1].expand(1, 3, 24, 20)
    output = F.interpolate(lowres, scale_factor=2, mode="nearest")
    fixed = back_project(output, lowres, 3)
    assert (fixed - fixed[:, :1]).abs().max() < 1e-6


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_the_model_setting_must_be_a_whole_number_from_zero(value):
    with pytest.raises(InputError, match="back_projection"):
        ModelConfig(back_projection=value)
    assert ModelConfig(back_projection=0).back_projection == 0


def test_the_pipeline_back_projects_when_its_model_says_so(tiny_model_dir):
    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    x = smooth_photo(4, (16, 16))
    outs = {}
    for k in (0, 2):
        pipe.config = pipe.config.replace(back_projection=k)
        outs[k], _ = pipe.upscale_tensor(x, "cfm", steps=1)
    error = {k: (shrink(out, x.shape[-2:]) - x).abs().mean() for k, out in outs.items()}
    assert error[2] < 0.5 * error[0]


def test_info_says_when_a_model_back_projects(tmp_path, tiny_model_dir, capsys):
    import json
    import shutil

    from fmboost.cli.main import main

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    assert main(["info", str(folder)]) == 0
    assert "back-projected" not in capsys.readouterr().out
    config = json.loads((folder / "fmboost.json").read_text())
    (folder / "fmboost.json").write_text(json.dumps({**config, "back_projection": 2}))
    assert main(["info", str(folder)]) == 0
    assert "back-projected onto the input 2×" in capsys.readouterr().out


@pytest.mark.parametrize("fix", ["luma", "wavelet"])
def test_bf16_autocast_runs_the_output_stage_in_fp32(tiny_model_dir, fix, tmp_path):
    """`--dtype bf16` (the CLI's `auto` on a CPU with bf16 units) with a back-projecting model: the resizes have
    no bf16 kernels, so the colour fix and the back-projection must leave autocast; the result stays near fp32's."""
    import numpy as np
    from PIL import Image

    from fmboost.pipelines.upscale import FMBoostPipeline

    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    pipe.config = pipe.config.replace(back_projection=1, color_fix=fix)
    photo = Image.fromarray((np.random.default_rng(0).random((16, 20, 3)) * 255).astype(np.uint8))
    outs = {}
    for dtype in (torch.float32, torch.bfloat16):
        for tile in (False, True):
            outs[dtype, tile], _ = pipe.upscale(photo, dtype=dtype, tile=tile, tile_size=16)
    for tile in (False, True):
        fp32, bf16 = (np.asarray(outs[d, tile], np.float64) for d in (torch.float32, torch.bfloat16))
        assert bf16.shape == fp32.shape == (32, 40, 3)
        assert np.abs(bf16 - fp32).mean() < 4  # 8-bit levels: bf16 rounding, not a different picture

"""pipelines/budget.py: the size an upscale actually processes (padded, per pass of --scale, per tile) and its
cost, checked before any model work by both `fmboost upscale` and `fmboost serve` (issue 23)."""
import subprocess
import sys

import pytest

from fmboost.pipelines.budget import OverBudget, plan
from fmboost.pipelines.tiling import default_overlap, tile_starts

MP = 1024 * 1024


def test_a_one_pixel_wide_strip_is_checked_as_the_model_pads_it():
    assert plan(1, MP, 8).sizes == ((8, MP),)  # 1 MP as a file, 8 MP to the model
    with pytest.raises(OverBudget, match=r"1×1048576 is processed as 8×1048576 = 8,388,608 pixels") as e:
        plan(1, MP, 8, max_pixels=MP)
    assert e.value.kind == "pixels" and "1,048,576" in str(e.value)
    assert plan(8, MP // 8, 8, max_pixels=MP).pixels == MP  # whole multiples need no padding: exactly at the limit


def test_each_pass_of_a_larger_scale_is_checked_at_its_own_size():
    assert plan(512, 512, 8, passes=2, max_pixels=MP).sizes == ((512, 512), (1024, 1024))
    with pytest.raises(OverBudget, match="1032×1024 .* on pass 2 of 2"):
        plan(513, 512, 8, passes=2, max_pixels=MP)  # 513 → 1026 on the second pass, padded to 1032


def test_tiles_lift_the_pixel_limit_and_count_their_padding_and_overlaps():
    tile = 128
    work = plan(1, 4096, 8, tile=tile, max_pixels=1000)  # no pixel limit on tiled work: memory follows the tile
    tiles = len(tile_starts(4096, tile, default_overlap(tile)))
    assert tiles > 4096 // tile  # the overlaps make more tiles than the length needs
    assert work.pixels == tiles * 8 * tile  # every 1 × 128 tile is padded to 8 × 128


def test_the_cost_is_processed_pixels_times_nfe_and_dopri5_cannot_be_bounded():
    assert plan(100, 60, 4, nfe=8).cost == 100 * 60 * 8
    assert plan(50, 30, 4, passes=2, nfe=2).cost == (52 * 32 + 100 * 60) * 2  # both passes, each padded
    with pytest.raises(OverBudget, match=r"6,000 processed pixels × 8 network evaluations = 48,000, over the "
                                         r"limit of 47,999") as e:
        plan(100, 60, 4, nfe=8, max_cost=47_999)
    assert e.value.kind == "cost"
    assert plan(100, 60, 4, nfe=None).cost is None  # without a budget, an adaptive solver is fine
    with pytest.raises(OverBudget) as e:
        plan(100, 60, 4, nfe=None, max_cost=10**12)
    assert e.value.kind == "unbounded"


def test_the_budget_is_known_without_torch():
    code = "import sys, fmboost.pipelines.budget; assert 'torch' not in sys.modules, 'torch imported'"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("w,h,tile,multiple", [(1200, 900, 384, 1), (1200, 900, 384, 8), (517, 301, 128, 4),
                                               (100, 60, 128, 8)])
def test_the_budget_counts_the_tiles_the_upscale_runs(w, h, tile, multiple):
    import torch

    from fmboost.pipelines.budget import padded, tiled_pixels
    from fmboost.pipelines.tiling import tiled_upscale

    seen = []

    def upscale(part):  # the pipeline pads each tile to the multiple before the model sees it
        seen.append(padded(part.shape[-2], multiple) * padded(part.shape[-1], multiple))
        return part.repeat_interleave(2, -2).repeat_interleave(2, -1)

    tiled_upscale(upscale, torch.zeros(1, 3, h, w), 2, tile, multiple=multiple)
    assert sum(seen) == tiled_pixels(w, h, tile, multiple)

"""benchmarks/ldm_families.py's FLUX-by-blocks mode and docs/speed.md's section rendered from its raw file:
the extrapolation on made-up timings, the renderer on a made-up raw file (every number from it, * on the
extrapolated rows, a note naming the command when the file is missing), and a --small smoke run of block mode."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "experiments"))
import doc_tables  # noqa: E402
import ldm_families  # noqa: E402


def test_extrapolate_blocks_adds_each_block_once_over_the_shell():
    # shell 1 s, a double block 2 s, a single block 0.5 s: 1 + 19·2 + 38·0.5
    assert ldm_families.extrapolate_blocks(1.0, 3.0, 1.5, 19, 38) == pytest.approx(58.0)
    assert ldm_families.extrapolate_blocks(1.0, 3.0, 1.5, 0, 0) == 1.0
    assert ldm_families.extrapolate_blocks(1.0, 3.0, 1.5, 1, 0) == 3.0


def component(label, seconds, extrapolated=False):
    return {"label": label, "seconds": seconds, "extrapolated": extrapolated}


def fake_family(label, blocks: bool) -> dict:
    comps = {"step_lo": component("denoiser step 512² (batch 1)", 12.5, blocks),
             "round_trip": component("decode 512², bicubic ×2, encode 1024² (PSU)", 7.25),
             "cfm_nfe1": component("CFM, NFE 1 (64² → 128² latent)", 3.5),
             "cfm_nfe4": component("CFM, NFE 4 (64² → 128² latent)", 14.0, True),
             "cfm_nfe8": component("CFM, NFE 8 (64² → 128² latent)", 28.0, True),
             "vae_decode": component("VAE decode 1024²", 21.75),
             "step_hi": component("denoiser step 1024² (batch 1)", 50.0, blocks)}
    pipelines, versus = ldm_families.totals(comps, 28, 512, 1024)
    out = {"label": label, "small": False, "base_size": 512, "output_size": 1024, "base_steps": 28,
           "parameters_m": {"denoiser": 11901.4, "vae": 83.7, "cfm": 31.25}, "components": comps,
           "pipelines": pipelines, "cfm_vs_round_trip": versus}
    if blocks:
        out["flux_blocks"] = {"n_double": 19, "n_single": 38, "formula": "…",
                              "parameters_m": {"t00": 64.1, "t10": 404.0, "t01": 205.7, "full": 11901.4},
                              "seconds": {"512": {"t00": 0.125, "t10": 0.375, "t01": 0.25, "step": 12.5},
                                          "1024": {"t00": 0.5, "t10": 1.5, "t01": 1.0, "step": 50.0}}}
    return out


def write_fake_run(results: Path) -> None:
    meta = {"date": "2026-01-02T00:00:00Z", "command": "python benchmarks/ldm_families.py --size 512",
            "git_commit": "2" * 40, "git_dirty": False,
            "machine": {"cpu": "Test CPU", "cpu_cores": 2, "torch_threads": 2, "load_average_1min": 0.25}}
    raw = {"meta": meta, "settings": {"clock": "wall", "repeats": 1, "warmup": 0, "dtype": "fp32",
                                      "device": "cpu, 2 threads", "flux_blocks": True},
           "families": {"sdxl": fake_family("SDXL", False), "flux": fake_family("FLUX.1-dev", True)}}
    (results / "bench").mkdir(parents=True)
    (results / "bench" / doc_tables.FAMILIES_CPU).write_text(json.dumps(raw))


def test_families_section_takes_every_number_from_the_raw_file(tmp_path):
    missing = doc_tables.speed_families(tmp_path)
    assert "No raw results yet" in missing and doc_tables.FAMILIES_CPU_COMMAND in missing
    write_fake_run(tmp_path)
    text = doc_tables.speed_families(tmp_path)
    sdxl, flux = text.split("**FLUX.1-dev**")
    assert "Test CPU (2 cores, 2 torch thread(s), load average 0.25 at start)" in text and "wall clock" in text
    # SDXL's steps were measured, FLUX's extrapolated: only FLUX's carry the * and the note on blocks
    assert "| denoiser step 512² (batch 1) | 12.5 |" in sdxl and "T(0,0)" not in sdxl
    assert "| denoiser step 512² (batch 1) * | 12.5 |" in flux and "| denoiser step 1024² (batch 1) * | 50 |" in flux
    assert "| CFM, NFE 4 (64² → 128² latent) * | 14 |" in sdxl and "measured at NFE 1" in sdxl
    assert "T(0,0) + 19·(T(1,0) − T(0,0)) + 38·(T(0,1) − T(0,0))" in flux
    assert "at 512², T(0,0) = 0.125 s, T(1,0) = 0.375 s, T(0,1) = 0.25 s" in flux
    assert "at 1024², T(0,0) = 0.5 s, T(1,0) = 1.5 s, T(0,1) = 1 s" in flux and "11,901 M" in flux
    # direct: 28 × 50 + 21.75 = 1421.75; boosted NFE 1: 28 × 12.5 + 7.25 + 3.5 + 21.75 = 382.5
    assert "| base 1024² + decode | 1421.8 | 1.00 |" in flux
    assert f"| base 512² + CFM ×2 (NFE 1) + decode | 382.5 | {1421.75 / 382.5:.2f} |" in flux
    assert f"| round trip + CFM flow, NFE 4 (what fmboost runs) | 21.2 | {21.25 / 7.25:.2f} |" in flux
    assert "A denoiser step costs 4.0× more at 1024² than at 512²." in flux
    assert "busy" not in text
    raw = json.loads((tmp_path / "bench" / doc_tables.FAMILIES_CPU).read_text())
    raw["meta"]["machine"]["load_average_1min"] = 3.5
    (tmp_path / "bench" / doc_tables.FAMILIES_CPU).write_text(json.dumps(raw))
    assert "**The machine was busy when the run started** (load average 3.5)" in doc_tables.speed_families(tmp_path)


def test_small_run_by_blocks_records_what_recomputes_its_steps(tmp_path, monkeypatch):
    """Block mode on the shrunken config, end to end: raw file, recomputation, rendered section."""
    monkeypatch.setattr(ldm_families, "ROOT", tmp_path)
    name = doc_tables.FAMILIES_CPU.removesuffix(".json")
    ldm_families.main(["--small", "--family", "flux", "--flux-blocks", "--device", "cpu", "--name", name])
    raw = json.loads((tmp_path / "results" / "bench" / doc_tables.FAMILIES_CPU).read_text())
    assert raw["settings"]["flux_blocks"] is True
    flux = raw["families"]["flux"]
    b, comps = flux["flux_blocks"], flux["components"]
    small = ldm_families.FLUX_TRANSFORMER_SMALL
    assert (b["n_double"], b["n_single"]) == (small["num_layers"], small["num_single_layers"])
    for key, side in (("step_lo", flux["base_size"]), ("step_hi", flux["output_size"])):
        t = b["seconds"][str(side)]
        assert comps[key]["extrapolated"] and comps[key]["seconds"] == pytest.approx(
            t["t00"] + b["n_double"] * (t["t10"] - t["t00"]) + b["n_single"] * (t["t01"] - t["t00"]))
    # parameters add up exactly, block by block: the decomposition's premise, checked on the whole small model
    from diffusers import FluxTransformer2DModel

    whole = sum(p.numel() for p in FluxTransformer2DModel(**small).parameters()) / 1e6
    assert b["parameters_m"]["full"] == pytest.approx(whole) == flux["parameters_m"]["denoiser"]
    text = doc_tables.speed_families(tmp_path / "results")
    assert "(shrunken networks: a smoke run)" in text and "denoiser step 64² (batch 1) *" in text

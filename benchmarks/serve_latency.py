"""Latency of `fmboost serve` for one upload: POST a PNG, poll until done, download the result.

    python benchmarks/serve_latency.py                       # the embedded model, 512² upload, NFE 4 (Euler)
    python benchmarks/serve_latency.py --model DIR --size 256 --steps 8 --repeats 5

The server runs in this process on 127.0.0.1 (a free port), exactly as `fmboost serve` builds it. Without the
embedded model (`fmboost/weights/default` missing), a model with its architecture (the recipe's autoencoder,
the `tiny` CFM preset) and random weights is timed instead, and the output says so: speed depends on the
architecture, not on the weights. Also timed: the pipeline called directly, so the server's own cost shows.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from timing import RESULTS, save_results  # noqa: E402


def random_default_architecture(folder: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL

    from fmboost.autoencoders.vae import Autoencoder, small_autoencoder_config
    from fmboost.models.presets import build_model
    from fmboost.pipelines.upscale import FMBoostPipeline

    recipe = json.loads((ROOT / "recipes/default/autoencoder.json").read_text())
    torch.manual_seed(0)
    vae = AutoencoderKL(**small_autoencoder_config(recipe["block_out_channels"], recipe["latent_channels"]))
    FMBoostPipeline(Autoencoder(vae), build_model("tiny", recipe["latent_channels"])).save_pretrained(folder)
    return folder


def timed(label: str, run) -> float:
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    print(f"  {label}: {seconds:.2f} s", flush=True)  # as it goes: a loaded machine can take minutes a run
    return seconds


def upload(url: str, png: bytes, steps: int) -> None:
    request = urllib.request.Request(f"{url}/api/upscale?steps={steps}&solver=euler", data=png)
    job = json.load(urllib.request.urlopen(request))
    while job["state"] in ("queued", "running"):
        time.sleep(0.01)
        job = json.load(urllib.request.urlopen(f"{url}/api/jobs/{job['id']}"))
    assert job["state"] == "done", job
    urllib.request.urlopen(f"{url}{job['result']}").read()


def main() -> None:
    from fmboost import DEFAULT_MODEL
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.serve.app import Limits, create_app, serve_in_background

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder (default: the embedded model)")
    p.add_argument("--size", type=int, default=512, help="upload side in pixels (default 512)")
    p.add_argument("--steps", type=int, default=4, help="Euler steps = NFE (default 4)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model, what = args.model, args.model
        if model is None and (DEFAULT_MODEL / "fmboost.json").exists():
            model, what = DEFAULT_MODEL, "the embedded default model"
        elif model is None:
            model = random_default_architecture(Path(tmp) / "model")
            what = "RANDOM weights in the default model's architecture (fmboost/weights/default is missing)"
        pipe = FMBoostPipeline.from_pretrained(model)
        image = Image.open(ROOT / "examples/astronaut.png").convert("RGB").resize((args.size, args.size))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        print(f"model: {what}", flush=True)
        url, stop = serve_in_background(create_app({"model": pipe}, Path(tmp), Limits()))
        try:
            serve = lambda: upload(url, buf.getvalue(), args.steps)
            timed("warm-up through the server", serve)  # first-call allocations
            served = [timed("through the server", serve) for _ in range(args.repeats)]
        finally:
            stop()
        direct = [timed("pipeline alone", lambda: pipe(image, steps=args.steps, solver="euler"))
                  for _ in range(args.repeats)]
    print(f"{args.size}² upload → {2 * args.size}², NFE {args.steps} (Euler), {args.repeats} runs after a warm-up:")
    print(f"  through the server (upload, queue, upscale, PNG write, download): median {statistics.median(served):.2f} s"
          f", min {min(served):.2f} s")
    print(f"  pipeline alone: median {statistics.median(direct):.2f} s, min {min(direct):.2f} s")
    out = save_results(RESULTS / "serve_latency_cpu.json", "cpu", model=str(what), size=args.size, steps=args.steps,
                       repeats=args.repeats, served_seconds=served, direct_seconds=direct)
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()

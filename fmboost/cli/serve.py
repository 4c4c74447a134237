"""`fmboost serve`: the web page (fmboost/serve/). `python -m fmboost.cli.serve ...` runs it on its own (the tests
use that)."""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

from fmboost import DEFAULT_MODEL, EMBEDDED_MODELS
from fmboost.cli.common import UserError, add_device_flag, check_source, load_pipeline, pick_device, run
from fmboost.data.model_config import is_model_folder


def add_parser(subparsers) -> None:
    sv = subparsers.add_parser(
        "serve", help="a web page to upload, upscale, compare and download",
        description="Serve a page where you upload an image, pick the model, steps and solver, watch the "
                    "progress, compare before/after with a slider and download the PNG. With --base, a second "
                    "tab turns a prompt into an image: the base draws it small, a CFM model boosts it (as "
                    "`fmboost generate`). Models load once at start; requests wait in a bounded queue; only "
                    "results are written, to a temporary folder removed on exit.")
    sv.add_argument("--model", action="append", default=[], metavar="DIR",
                    help="a model folder (or hub id) to offer besides the embedded default; repeatable")
    sv.add_argument("--no-default", action="store_true",
                    help="do not offer the embedded models (default, real); serve only --model")
    sv.add_argument("--base", metavar="DIR_OR_HUB_ID",
                    help="a diffusers text-to-image pipeline (folder or hub id, e.g. "
                         "stable-diffusion-v1-5/stable-diffusion-v1-5): adds the 'Text to image' tab, offering the "
                         "served models trained on the base's VAE (pip install 'fmboost[ldm]')")
    sv.add_argument("--base-steps", type=int, default=None, metavar="N",
                    help="the base's denoising steps the page starts with (default: the base's, as for fmboost "
                         "generate; a request may ask for 1 to 50)")
    sv.add_argument("--base-size", default=None, metavar="N|WxH",
                    help="the base's resolution, N or WxH pixels (default: the one it was trained at)")
    sv.add_argument("--lcm-lora", metavar="ID",
                    help="LCM-LoRA fused into a U-Net base (SD1.x/2.x, SDXL) for ~4 steps (needs peft)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only; another address warns that "
                         "other machines can reach it)")
    sv.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="a host name (or address) requests may be addressed to besides localhost, 127.0.0.1, ::1 and "
                         "--host; repeatable. Requests naming any other Host are refused (403), so a web page "
                         "cannot reach the server by pointing a name of its own at it (DNS rebinding)")
    sv.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                    help="a web origin (scheme://host[:port]) whose pages may use the server besides its own page; "
                         "repeatable. Browser requests from any other site are refused (403)")
    sv.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port)")
    add_device_flag(sv)
    sv.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload in MB (default 20)")
    sv.add_argument("--max-pixels", type=int, default=None,
                    help="largest image accepted, width × height as the model processes it: padded to the model's "
                         "multiple (default 1048576); larger ones are refused with a message on the page. Images "
                         "over 1048576 such pixels (when this is raised) are upscaled in tiles")
    sv.add_argument("--max-steps", type=int, default=32, help="most ODE steps a request may ask for (default 32)")
    sv.add_argument("--max-cost", type=int, default=None, metavar="N",
                    help="most a request may cost, in processed pixels × network evaluations (NFE = steps × 1, 2, "
                         "2, 4 for euler, midpoint, heun, rk4; dopri5 is not offered, its NFE is unbounded); "
                         "default 16777216, a 1 MP image at NFE 16. Dearer requests are refused with a message")
    sv.add_argument("--queue-size", type=int, default=8, help="requests that may wait at once (default 8)")
    sv.add_argument("--max-connections", type=int, default=64,
                    help="connections open at once (default 64); one more is answered 503 at once. A client has "
                         "10 s to send a request's headers and 60 s for an upload's body")
    sv.set_defaults(func=cmd_serve)


def model_dirs(models: list[str], use_default: bool) -> dict[str, str]:
    """Display name → model folder: the embedded models first (default, real: those present), then each --model."""
    chosen = {name: str(folder) for name, folder in EMBEDDED_MODELS.items()
              if use_default and is_model_folder(folder)}
    if use_default and "default" not in chosen and not models:
        raise UserError(f"the embedded model is missing from {DEFAULT_MODEL}; pass --model DIR")
    elif use_default and "default" not in chosen:
        print(f"fmboost serve: note: the embedded model is missing from {DEFAULT_MODEL}; offering --model only",
              file=sys.stderr)
    for model in models:
        name, n = Path(model).name or model, 2
        while name in chosen:  # two folders called `model` (runs/a/model, runs/b/model) stay apart
            name, n = f"{Path(model).name}-{n}", n + 1
        chosen[name] = model
    if not chosen:
        raise UserError("no model to serve: pass --model DIR (or drop --no-default)")
    return chosen


def limits_from(args):
    from fmboost.data.images import DEFAULT_MAX_PIXELS
    from fmboost.serve.app import Limits

    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    max_cost = Limits.max_cost if args.max_cost is None else args.max_cost
    for flag, value in (("--max-upload-mb", args.max_upload_mb), ("--max-steps", args.max_steps),
                        ("--queue-size", args.queue_size), ("--max-pixels", max_pixels), ("--max-cost", max_cost),
                        ("--max-connections", args.max_connections)):
        if value <= 0:
            raise UserError(f"{flag} must be positive, got {value}")
    limits = Limits(max_bytes=int(args.max_upload_mb * 2**20), max_pixels=max_pixels, max_cost=max_cost,
                    max_steps=args.max_steps, max_waiting=args.queue_size, max_connections=args.max_connections)
    if args.base_steps is not None and not 1 <= args.base_steps <= limits.max_base_steps:
        raise UserError(f"--base-steps must be between 1 and {limits.max_base_steps}, got {args.base_steps}")
    return limits


def load_text_to_image(args, pipelines: dict, device: str):
    """The --base pipeline, loaded once, over the served models that fit its latent space; None without --base."""
    if not args.base:
        return None
    from fmboost.cli.generate import parse_size, quiet_loading, worded_errors
    from fmboost.pipelines.bases import load_dtype, sampling_defaults
    from fmboost.pipelines.generate import load_base
    from fmboost.serve.text import TextToImage

    size = parse_size(args.base_size) if args.base_size else None
    quiet_loading()
    with worded_errors("--base"):
        base = load_base(args.base, device, load_dtype(args.base, device), args.lcm_lora)
    steps, guidance = sampling_defaults(base, args.base, args.lcm_lora)  # per family (pipelines/bases.py)
    shown = Path(args.base).name if Path(args.base).is_dir() else args.base  # the page names no server folders
    text = TextToImage(base, pipelines, shown, args.base_steps or steps, guidance=guidance, size=size)
    for name, why in text.unfit.items():
        print(f"fmboost serve: note: model {name} is upscale-only: {why}", file=sys.stderr)
    if not text.models:
        raise UserError(f"--base {args.base}: none of the served models can boost it (see the notes above); "
                        f"pass --model DIR with a model trained on its VAE")
    return text


def listen(host: str, port: int) -> socket.socket:
    """Binds before serving, so a busy port is one clear line and port 0 reports the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    sock.listen(128)
    return sock


def cmd_serve(args) -> int:
    try:  # the web stack is an extra, so a plain install stays small
        import uvicorn

        from fmboost.serve.app import create_app, server_config
        from fmboost.serve.guard import Access, exposure_warning
    except ModuleNotFoundError as e:
        raise UserError(f"{e.name} is not installed: pip install 'fmboost[serve]'") from None
    from fmboost.pipelines.precision import auto_dtype
    limits = limits_from(args)
    for model in args.model:  # hub ids that cannot be had fail now, before anything is loaded
        check_source(model, "--model")
    check_source(args.base, "--base")
    device = pick_device(args.device)
    models = model_dirs(args.model, not args.no_default)
    sock = listen(args.host, args.port)  # before loading: a busy port should not cost a model load
    host, port = sock.getsockname()[:2]
    access = Access.for_address(args.host, args.allow_host, args.allow_origin)
    pipelines = {name: load_pipeline(path, device) for name, path in models.items()}
    text = load_text_to_image(args, pipelines, device)
    # uvicorn shuts down on SIGTERM and then raises the signal again; exiting through Python (not the default
    # action, which kills at once) lets the `with` below remove the results folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = None
    try:
        with tempfile.TemporaryDirectory(prefix="fmboost-serve-") as out_dir:
            app = create_app(pipelines, out_dir, limits, text, access, dtype=auto_dtype(device))
            print(f"fmboost serve: http://{host if ':' not in host else f'[{host}]'}:{port}/  "
                  f"(models: {', '.join(pipelines)}{f'; text to image: {args.base}' if text else ''}; "
                  f"results in {out_dir}, removed on exit; Ctrl+C stops)", flush=True)
            if warning := exposure_warning(args.host):
                print(warning, file=sys.stderr, flush=True)
            uvicorn.Server(server_config(app, timeout_graceful_shutdown=5)).run(sockets=[sock])
    except SystemExit as e:  # SIGTERM (above)
        leave_now_if_busy(app, e.code if isinstance(e.code, int) else 0)
        raise
    except KeyboardInterrupt:
        leave_now_if_busy(app, 130, "interrupted")
        raise
    leave_now_if_busy(app, 0)
    return 0


def leave_now_if_busy(app, code: int, message: str | None = None) -> None:
    """Exits at once (the results folder already removed) when the worker is still inside a network evaluation
    that outlived the shutdown: letting Python finalise under a running torch thread aborts the process
    (`terminate called without an active exception`, exit 134)."""
    if app is not None and app.state.jobs.busy():
        if message:
            print(message, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv=None) -> int:
    """`python -m fmboost.cli.serve ARGS` is `fmboost serve ARGS`."""
    parser = argparse.ArgumentParser(prog="fmboost")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())

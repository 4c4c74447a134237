"""The web app of `fmboost serve`: one static page and a small JSON API, on Starlette.

    GET  /                         the page (upload, pick model / steps / solver, compare, download)
    GET  /api/info                 models, solvers, methods and limits, for the page's pickers
    POST /api/upscale?model=...    the image file as the raw request body → 202 {"id": ...}
    GET  /api/jobs/ID              state, place in the queue, progress (network evaluations done / total)
    GET  /api/jobs/ID/result.png   the upscaled PNG (?download=1: as an attachment named NAME_x2.png)

The upload is sent as the raw body rather than multipart form data: it is read into memory up to the byte
limit and never spooled to disk, so the only files the server writes are its results.
"""
from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from fmboost.data.images import DEFAULT_MAX_PIXELS, to_rgb
from fmboost.pipelines.upscale import METHODS
from fmboost.serve.jobs import Job, JobQueue, QueueFull
from fmboost.solvers.ode import SOLVERS

# The page needs nothing from elsewhere; this also stops it from ever fetching fonts or scripts online.
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self' 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'")


@dataclass
class Limits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_steps: int = 32  # one request cannot hold the only worker for long
    max_waiting: int = 8
    keep_results: int = 64


class UploadError(ValueError):
    """A refused upload: `status` is the HTTP code, the message is shown on the page as it is."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes → RGB image; the pixel count is checked from the header, before anything is decoded."""
    if not data:
        raise UploadError("the upload is empty: choose an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UploadError(f"the image is {w}×{h} = {w * h:,} pixels, over this server's limit of "
                                      f"{max_pixels:,}; downscale or crop it first", 413)
                im.load()  # a truncated file fails here
                return to_rgb(im)
    except UploadError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadError("this file is not an image that can be read (PNG, JPEG, WebP, BMP, TIFF, GIF)",
                          415) from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Reads at most max_bytes, refusing early from Content-Length when the client announces more."""
    too_big = UploadError(f"the file is over this server's limit of {max_bytes / 2**20:.1f} MB", 413)
    if int(request.headers.get("content-length") or 0) > max_bytes:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def parse_job(query, models: dict, limits: Limits) -> dict:
    """Query parameters → checked keyword arguments of `Job` (UploadError with a message otherwise)."""
    model = query.get("model") or next(iter(models))
    if model not in models:
        raise UploadError(f"unknown model {model!r}; choose one of {', '.join(models)}")
    solver, method = query.get("solver", "euler"), query.get("method", "cfm")
    if solver not in SOLVERS:
        raise UploadError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if method not in METHODS:
        raise UploadError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    steps, seed = whole_number(query, "steps", 4), whole_number(query, "seed", 0)
    if not 1 <= steps <= limits.max_steps:
        raise UploadError(f"steps must be between 1 and {limits.max_steps}, got {steps}")
    if not 0 <= seed < 2**32:
        raise UploadError(f"seed must be between 0 and {2**32 - 1}, got {seed}")
    return dict(model=model, steps=steps, solver=solver, method=method, seed=seed, name=safe_stem(query.get("name")))


def whole_number(query, key: str, default: int) -> int:
    try:
        return int(query.get(key, default))
    except ValueError:
        raise UploadError(f"{key} must be a whole number, got {query.get(key)!r}") from None


def safe_stem(filename: str | None) -> str:
    """A download name that is safe in a header and on any file system."""
    stem = re.sub(r"[^\w.-]+", "_", Path(filename or "image").stem, flags=re.ASCII).strip("._")
    return stem[:80] or "image"


def model_info(pipelines: dict) -> list[dict]:
    return [dict(name=name, scale=pipe.config["scale"], has_flow=pipe.model is not None)
            for name, pipe in pipelines.items()]


def create_app(pipelines: dict, out_dir: str | Path, limits: Limits | None = None) -> Starlette:
    """`pipelines`: display name → loaded FMBoostPipeline (the first is the default). `out_dir` receives the
    results only; the caller owns it (and removes it). The worker starts and stops with the app."""
    limits = limits or Limits()
    if not pipelines:
        raise ValueError("no model to serve")
    jobs = JobQueue(pipelines, Path(out_dir), limits.max_waiting, limits.keep_results,
                    tile_above=DEFAULT_MAX_PIXELS)
    page = resources.files("fmboost.serve").joinpath("static/index.html").read_text(encoding="utf-8")
    info = dict(models=model_info(pipelines), solvers=list(SOLVERS), methods=list(METHODS), limits=asdict(limits))

    async def index(request):
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    async def api_info(request):
        return JSONResponse(info)

    async def upscale(request):
        try:
            kwargs = parse_job(request.query_params, pipelines, limits)
            data = await read_body(request, limits.max_bytes)
            image = await run_in_threadpool(decode_upload, data, limits.max_pixels)
            job = jobs.submit(Job(image=image, **kwargs))
        except UploadError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except QueueFull as e:
            return JSONResponse({"error": str(e)}, status_code=503, headers={"Retry-After": "5"})
        return JSONResponse(job_status(job), status_code=202)

    def job_status(job):
        return dict(job.status(), ahead=jobs.ahead_of(job), result=f"/api/jobs/{job.id}/result.png")

    async def status(request):
        job = jobs.get(request.path_params["id"])
        if job is None:
            return JSONResponse({"error": "no such job (results are kept for a limited time)"}, status_code=404)
        return JSONResponse(job_status(job), headers={"Cache-Control": "no-store"})

    async def result(request):
        job = jobs.get(request.path_params["id"])
        if job is None or job.state != "done" or not job.path.exists():
            return JSONResponse({"error": "no such result"}, status_code=404)
        scale = pipelines[job.model].config["scale"]
        disposition = "attachment" if request.query_params.get("download") else "inline"
        return FileResponse(job.path, media_type="image/png", filename=f"{job.name}_x{scale}.png",
                            content_disposition_type=disposition)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        jobs.start()
        try:
            yield
        finally:
            jobs.stop()

    routes = [Route("/", index), Route("/api/info", api_info), Route("/api/upscale", upscale, methods=["POST"]),
              Route("/api/jobs/{id:str}", status), Route("/api/jobs/{id:str}/result.png", result),
              Route("/healthz", lambda request: Response("ok"))]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jobs = jobs
    return app


def serve_in_background(app: Starlette, host: str = "127.0.0.1"):
    """Runs `app` on a free port in a thread, for scripts and benchmarks; returns (base URL, stop function)."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs=dict(sockets=[sock]), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server thread ended before it started serving")
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(10)
        sock.close()

    return f"http://{host}:{sock.getsockname()[1]}", stop

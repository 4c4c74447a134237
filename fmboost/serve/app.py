"""The web app of `fmboost serve`: one static page and a small JSON API, on Starlette.

    GET  /                         the page (upload, pick model / steps / solver, compare, download)
    GET  /api/info                 models (each with the methods and solvers it can run), the flow's solvers for
                                   text to image, and limits, for the page's pickers
    POST /api/upscale?model=...    the image file as the raw request body → 202 {"id": ...}
    POST /api/generate             {"prompt": ..., "model": ..., "steps": ...} as JSON → 202 {"id": ...}; only
                                   with a base model (`fmboost serve --base`), 404 otherwise
    GET  /api/jobs/ID              state, place in the queue, progress (network evaluations done / total)
    GET  /api/jobs/ID/result.png   the upscaled PNG (?download=1: as an attachment named NAME_x2.png)
    GET  /api/jobs/ID/base.png     text to image: the base's own low-res picture, before the flow

The upload is sent as the raw body rather than multipart form data: it is read into memory up to the byte
limit and never spooled to disk, so the only files the server writes are its results. A place in the queue is
taken before the body is read (a full queue costs the client nothing, and at most the queue's worth of uploads is
in memory), and the body must arrive within a time limit. The upload is turned upright and keeps its alpha, ICC
profile and EXIF as the command line's do (pipelines/batch.py), and its size as processed (padded, per tile) and
its cost (pixels × network evaluations) are checked as the command line checks them (pipelines/budget.py), before
any model work. Who is answered, and the headers of every answer: serve/guard.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import sys
import warnings
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from fmboost.data.files import slug
from fmboost.data.images import DEFAULT_MAX_PIXELS
from fmboost.data.metadata import upright
from fmboost.flow.names import SOLVER_CHOICES
from fmboost.pipelines import budget
from fmboost.pipelines.methods import BASELINES, MODEL_METHODS, PIXEL_BASELINES
from fmboost.serve.guard import CSP, Access, Guard, bounded_protocol
from fmboost.serve.jobs import Job, JobQueue, QueueFull
from fmboost.solvers.names import EVALS_PER_STEP

# Solvers a request may ask for: those whose network evaluations are known before they run, so that the cost of
# a request can be bounded (dopri5 decides its own and is not offered).
BOUNDED_SOLVERS = tuple(EVALS_PER_STEP)
# The way out of each kind of budget.OverBudget, in the page's words.
WAY_OUT = {"pixels": "downscale or crop it first",
           "cost": "choose fewer steps, a solver with fewer evaluations per step (euler), or a smaller image",
           "unbounded": f"choose one of {', '.join(BOUNDED_SOLVERS)}"}


@dataclass
class Limits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS  # of the image as processed: padded to the model's multiple
    max_steps: int = 32  # one request cannot hold the only worker for long
    max_cost: int = 16 * DEFAULT_MAX_PIXELS  # processed pixels × network evaluations: 1 MP at NFE 16
    max_base_steps: int = 50
    max_prompt_chars: int = 1000  # the text encoder reads ~77 tokens anyway
    max_waiting: int = 8
    keep_results: int = 64
    keep_bytes: int = 512 * 2**20  # the results folder, whatever the number of files
    max_connections: int = 64
    header_timeout_s: float = 10.0  # to send a request's headers
    read_timeout_s: float = 60.0  # to send an upload's body


class UploadError(ValueError):
    """A refused upload: `status` is the HTTP code, the message is shown on the page as it is."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes → the image, in its own mode (alpha kept) and turned upright (EXIF orientation), as the command line
    reads a file; the pixel count is checked from the header, before anything is decoded."""
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
                return upright(im)
    except UploadError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadError(f"the image claims more pixels than this server's limit of {max_pixels:,}; downscale or "
                          f"crop it first", 413) from None
    except Exception:  # PIL's decoders meet hostile bytes here: struct.error, EOFError, IndexError, ... (fuzzed)
        raise UploadError("this file is not an image that can be read (PNG, JPEG, WebP, BMP, TIFF, GIF)",
                          415) from None


async def read_body(request: Request, max_bytes: int, timeout_s: float = 60.0) -> bytes:
    """Reads at most max_bytes within timeout_s, refusing early from Content-Length when the client announces more.
    One buffer: its bytes are handed on without a copy. A client that goes away is one line in the log."""
    too_big = UploadError(f"the file is over this server's limit of {max_bytes / 2**20:.1f} MB", 413)
    if int(request.headers.get("content-length") or 0) > max_bytes:
        raise too_big
    buf = io.BytesIO()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                if buf.tell() + len(chunk) > max_bytes:
                    raise too_big
                buf.write(chunk)
    except TimeoutError:
        raise UploadError(f"the upload did not arrive within {timeout_s:g} s; try again on a faster connection or "
                          f"with a smaller file", 408) from None
    except ClientDisconnect:
        print(f"fmboost serve: an upload was abandoned by its client after {buf.tell():,} bytes", file=sys.stderr,
              flush=True)
        raise
    return buf.getvalue()


def capabilities(pipe) -> dict:
    """What a served model can run, asked of its objective: its own method (none without a network) and the
    baselines, and the solvers its objective's sampler takes. The page offers these and nothing else."""
    objective = pipe.config.objective if pipe.model is not None else None
    solvers = [s for s in pipe.objective.solvers if pipe.objective.nfe(1, s) is not None] if objective else []
    return dict(objective=objective, methods=[objective, *BASELINES] if objective else list(BASELINES),
                solvers=solvers)


def parse_job(query, models: dict, limits: Limits) -> dict:
    """Query parameters → checked keyword arguments of an upscale `Job` (UploadError with a message otherwise).
    Refusals name what the page shows (the model, method and solver pickers), never a command-line flag."""
    can = capabilities(models[parse_model(query, models)])
    method = str(query.get("method") or can["methods"][0])
    if method not in can["methods"]:
        raise UploadError(f"model {parse_model(query, models)} cannot run the method {method!r}; it offers "
                          f"{', '.join(can['methods'])}")
    solvers = can["solvers"] if method == can["objective"] else []
    flow = parse_flow(query, models, limits, solvers or SOLVER_CHOICES)
    return dict(flow, method=method, name=safe_stem(query.get("name")))


def parse_model(query, models: dict) -> str:
    model = str(query.get("model") or next(iter(models)))  # str(): JSON may hold anything
    if model not in models:
        raise UploadError(f"unknown model {model!r}; choose one of {', '.join(models)}")
    return model


def parse_flow(query, models: dict, limits: Limits, solvers=BOUNDED_SOLVERS) -> dict:
    """What upscale and text-to-image requests share: the model, the flow's steps and solver (one of `solvers`;
    when none is given the model's own, if it is one of them, else the first), the seed."""
    model = parse_model(query, models)
    own = models[model].config  # the model folder's defaults (data/model_config.py)
    solver = str(query.get("solver") or (own.solver if own.solver in solvers else solvers[0]))
    if solver not in solvers:
        unbounded = " is not offered here: it picks its own number of steps, so its cost" \
                    " cannot be bounded" if solver in SOLVER_CHOICES else ""
        raise UploadError(f"{'unknown ' if not unbounded else ''}solver {solver!r}{unbounded}; choose one of "
                          f"{', '.join(solvers)}")
    steps = bounded(query, "steps", min(own.steps, limits.max_steps), 1, limits.max_steps)
    return dict(model=model, solver=solver, steps=steps,
                seed=bounded(query, "seed", 0, 0, 2**32 - 1))


def parse_prompt_job(body: dict, text, limits: Limits) -> dict:
    """A text-to-image request (its JSON) → checked keyword arguments of a `Job`."""
    prompt, negative = (str(body.get(key) or "").strip() for key in ("prompt", "negative_prompt"))
    if not prompt:
        raise UploadError("enter a prompt: a few words describing the picture")
    if max(len(prompt), len(negative)) > limits.max_prompt_chars:
        raise UploadError(f"prompts are limited to {limits.max_prompt_chars} characters")
    if str(body.get("model")) in text.unfit:
        raise UploadError(f"model {body['model']} cannot boost the base {text.name}: {text.unfit[body['model']]}")
    flow = parse_flow(body, text.models, limits)
    return dict(flow, prompt=prompt, negative_prompt=negative, name=f"{slug(prompt)}_s{flow['seed']}",
                base_steps=bounded(body, "base_steps", text.base_steps, 1, limits.max_base_steps))


def bounded(query, key: str, default: int, low: int, high: int) -> int:
    """A whole number from `query` within [low, high]; the message names the field as the page labels it."""
    label = key.replace("_", " ")
    try:
        value = int(query.get(key, default))
    except (TypeError, ValueError):
        raise UploadError(f"{label} must be a whole number, got {query.get(key)!r}") from None
    if not low <= value <= high:
        raise UploadError(f"{label} must be between {low} and {high}, got {value}")
    return value


def check_work(size: tuple[int, int], pipe, method: str, steps: int, solver: str, limits: Limits,
               tile_above: int | None = DEFAULT_MAX_PIXELS) -> int | None:
    """Refuses (413, one line) a job over the server's limits, from its size alone: the image as the model will
    process it (padded to the model's multiple) within max_pixels, and its cost, processed pixels × network
    evaluations, within max_cost; the same check as the command line's (pipelines/budget.py). Returns the tile
    side the job runs with: None (whole) unless its padded size is over `tile_above`."""
    multiple = 1 if method in PIXEL_BASELINES else pipe.pad_multiple
    nfe = pipe.objective.nfe(steps, solver) if method in MODEL_METHODS else 0
    scale = pipe.config["scale"]
    try:
        whole = budget.plan(*size, multiple, scale=scale, nfe=nfe, max_pixels=limits.max_pixels)
        w, h = whole.largest
        tile = pipe.auto_tile_size() if tile_above is not None and w * h > tile_above else None
        budget.plan(*size, multiple, scale=scale, nfe=nfe, tile=tile, max_cost=limits.max_cost)
    except budget.OverBudget as e:
        raise UploadError(f"{e}; {WAY_OUT[e.kind]}", 413) from None
    return tile


async def read_json(request: Request, max_bytes: int = 64 * 1024, timeout_s: float = 60.0) -> dict:
    try:
        body = json.loads(await read_body(request, max_bytes, timeout_s))
    except ValueError:  # JSONDecodeError and bad UTF-8 alike
        body = None
    if not isinstance(body, dict):
        raise UploadError('the request body must be a JSON object, e.g. {"prompt": "a red cat"}')
    return body


def safe_stem(filename: str | None) -> str:
    """A download name that is safe in a header and on any file system."""
    stem = re.sub(r"[^\w.-]+", "_", Path(filename or "image").stem, flags=re.ASCII).strip("._")
    return stem[:80] or "image"


def model_info(pipelines: dict) -> list[dict]:
    return [dict(name=name, scale=pipe.config["scale"], has_flow=pipe.model is not None, **capabilities(pipe))
            for name, pipe in pipelines.items()]


def create_app(pipelines: dict, out_dir: str | Path, limits: Limits | None = None, text_to_image=None,
               access: Access | None = None, dtype=None) -> Starlette:
    """`pipelines`: display name → loaded FMBoostPipeline (the first is the default). `out_dir` receives the
    results only; the caller owns it (and removes it). The worker starts and stops with the app.
    `text_to_image`: a serve.text.TextToImage over the same pipelines, or None (no text-to-image tab).
    `access`: the Host and Origin values answered (default: a server on 127.0.0.1, its own page only).
    `dtype`: the upscales' autocast precision (None: fp32; `fmboost serve` passes `fmboost upscale`'s default)."""
    limits = limits or Limits()
    if not pipelines:
        raise ValueError("no model to serve")
    text = text_to_image
    jobs = JobQueue(pipelines, Path(out_dir), limits.max_waiting, limits.keep_results, limits.keep_bytes,
                    text_to_image=text, dtype=dtype)
    page = resources.files("fmboost.serve").joinpath("static/index.html").read_text(encoding="utf-8")
    info = dict(models=model_info(pipelines), solvers=list(BOUNDED_SOLVERS), limits=asdict(limits),
                text_to_image=text and text.info())

    async def index(request):
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    async def api_info(request):
        return JSONResponse(info)

    async def upscale(request):
        async def make_job():
            kwargs = parse_job(request.query_params, pipelines, limits)
            data = await read_body(request, limits.max_bytes, limits.read_timeout_s)
            image = await run_in_threadpool(decode_upload, data, limits.max_pixels)
            del data  # the decoded image is all the job needs
            tile = await run_in_threadpool(check_work, image.size, pipelines[kwargs["model"]], kwargs["method"],
                                           kwargs["steps"], kwargs["solver"], limits)
            return Job(image=image, tile=tile, **kwargs)
        return await queue_job(make_job)

    async def generate(request):
        if text is None:
            return JSONResponse({"error": "text to image is off on this server: start it with "
                                          "`fmboost serve --base DIR_OR_HUB_ID`"}, status_code=404)

        async def make_job():
            kwargs = parse_prompt_job(await read_json(request, timeout_s=limits.read_timeout_s), text, limits)
            check_work(text.size, text.models[kwargs["model"]], "cfm", kwargs["steps"], kwargs["solver"], limits,
                       tile_above=None)
            return Job(image=None, **kwargs)
        return await queue_job(make_job)

    async def queue_job(make_job):
        """202 with the queued job, or the refusal's message: 4xx for the request, 503 while the queue is full.
        The job's place is held before its body is read. A refusal may leave the body unread: the connection
        stays open, and uvicorn reads and drops the rest, since closing with unread data would reset it and lose
        the answer (serve/guard.py closes it when the client dawdles)."""
        try:
            with jobs.slot():
                job = jobs.submit(await make_job())
        except UploadError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except QueueFull as e:
            return JSONResponse({"error": str(e)}, status_code=503, headers={"Retry-After": "5"})
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening any more
        return JSONResponse(job_status(job), status_code=202)

    def job_status(job):
        urls = dict(result=f"/api/jobs/{job.id}/result.png")
        if job.prompt is not None:
            urls["base"] = f"/api/jobs/{job.id}/base.png"
        return dict(job.status(), ahead=jobs.ahead_of(job), **urls)

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

    async def base_image(request):
        job = jobs.get(request.path_params["id"])
        if job is None or job.base_png is None:
            return JSONResponse({"error": "no such picture"}, status_code=404)
        return Response(job.base_png, media_type="image/png")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        jobs.start()
        try:
            yield
        finally:
            jobs.stop()

    routes = [Route("/", index), Route("/api/info", api_info), Route("/api/upscale", upscale, methods=["POST"]),
              Route("/api/generate", generate, methods=["POST"]), Route("/api/jobs/{id:str}", status),
              Route("/api/jobs/{id:str}/result.png", result), Route("/api/jobs/{id:str}/base.png", base_image),
              Route("/healthz", lambda request: Response("ok", media_type="text/plain"))]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(Guard, access=access or Access.for_address("127.0.0.1"))])
    app.state.jobs, app.state.limits = jobs, limits
    return app


def server_config(app: Starlette, **kwargs):
    """The uvicorn settings every way of running the app shares: the connection cap and header timeout of
    `app.state.limits` (serve/guard.py), no access log."""
    import uvicorn

    limits = app.state.limits
    return uvicorn.Config(app, http=bounded_protocol(limits.max_connections, limits.header_timeout_s),
                          log_level="warning", access_log=False, **kwargs)


def serve_in_background(app: Starlette, host: str = "127.0.0.1"):
    """Runs `app` on a free port in a thread, for scripts and benchmarks; returns (base URL, stop function)."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind((host, 0))
    server = uvicorn.Server(server_config(app))
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

"""The job queue behind `fmboost serve` (upscale and text-to-image jobs): a bounded queue and one worker thread.

One worker, because the pipelines are not thread-safe and torch already spreads one job over every core;
a second request waits its turn (the page shows its place). The queue is bounded so that a burst of uploads is
refused with a clear message instead of piling up decoded images in memory.
"""
from __future__ import annotations

import contextlib
import io
import queue
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from fmboost.data.files import write_atomic
from fmboost.data.model_config import ModelConfig
from fmboost.pipelines.batch import upscale_image
from fmboost.pipelines.methods import MODEL_METHODS


class QueueFull(Exception):
    """Too many requests are waiting; the message is meant for the user."""


class ShuttingDown(Exception):
    """Raised inside a running job, at its next network evaluation, when the server stops."""


@dataclass
class Job:
    image: Image.Image | None
    model: str
    steps: int = ModelConfig.steps  # requests get the model's own (serve/app.py parse_flow)
    solver: str = ModelConfig.solver
    method: str = "cfm"
    seed: int = 0
    name: str = "image"  # the download is called NAME_x2.png
    tile: int | None = None  # tile side in input pixels; None: the whole image at once
    prompt: str | None = None  # set: a text-to-image job, `image` stays None and the base draws one
    negative_prompt: str = ""
    base_steps: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)  # unguessable: results are not listed anywhere
    state: str = "queued"  # queued → running → done | error
    nfe_done: int = 0
    nfe_total: int | None = None
    message: str = ""
    seconds: float | None = None
    size: tuple[int, int] | None = None
    path: Path | None = None
    bytes: int = 0  # of the result file
    base_png: bytes | None = None  # text to image: the base's low-res picture, in memory (only results on disk)

    def count(self, *_) -> None:
        """One more network evaluation done: the pipelines' callback, for the progress bar."""
        self.nfe_done += 1

    def status(self) -> dict:
        return dict(id=self.id, state=self.state, nfe_done=self.nfe_done, nfe_total=self.nfe_total,
                    message=self.message, seconds=self.seconds, width=self.size and self.size[0],
                    height=self.size and self.size[1])


class JobQueue:
    """Runs jobs one at a time on `pipelines[job.model]` (behind `text_to_image` for a prompt), writing each
    result as OUT_DIR/ID.png.

    Only results are written, and only the newest of them are kept: at most `keep` files and `keep_bytes` bytes
    (the newest is always kept), so the folder stays small however long the server runs. A job that fails is
    marked `error` with a message; the worker carries on. `stop` ends a running job at its next network
    evaluation, and no result is written after it.
    """

    def __init__(self, pipelines: dict, out_dir: Path, max_waiting: int = 8, keep: int = 64,
                 keep_bytes: int = 512 * 2**20, text_to_image=None, dtype=None):
        self.pipelines, self.out_dir, self.keep, self.keep_bytes = pipelines, Path(out_dir), keep, keep_bytes
        self.dtype = dtype  # the upscales' autocast precision (None: fp32)
        self.text_to_image = text_to_image
        self._waiting: queue.Queue[Job | None] = queue.Queue(maxsize=max_waiting)
        self._reserved = 0  # places held by requests whose upload is still being read
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._saving = threading.Lock()  # held while a result is written: `stop` waits for it
        self._stopping = threading.Event()
        # A daemon thread: a shutdown must not hang on an upscale that is half done.
        self._thread = threading.Thread(target=self._work, name="fmboost-serve-worker", daemon=True)

    def start(self) -> "JobQueue":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stops the worker: the running job ends at its next network evaluation. Returns whether the worker
        ended within `timeout`; either way no result is written once this returns."""
        self._stopping.set()
        try:
            self._waiting.put_nowait(None)  # wakes the worker if it is idle
        except queue.Full:
            pass  # it is busy and will see _stopping after the current job
        self._thread.join(timeout)
        with self._saving:  # a result being written is finished (or never started) after this
            pass
        return not self._thread.is_alive()

    def busy(self) -> bool:
        """Whether the worker thread is still running (inside a job, after `stop` timed out)."""
        return self._thread.is_alive()

    @contextlib.contextmanager
    def slot(self):
        """Holds a place in the queue while a request's upload is read and checked: a full queue is told before
        the body is read, and no more uploads than the queue holds are ever in memory. QueueFull otherwise."""
        with self._lock:
            if self._waiting.qsize() + self._reserved >= self._waiting.maxsize:
                raise self._full()
            self._reserved += 1
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= 1

    def _full(self) -> QueueFull:
        return QueueFull(f"the server is busy ({self._waiting.maxsize} requests waiting); try again in a moment")

    def submit(self, job: Job) -> Job:
        job.nfe_total = self.expected_nfe(job)
        with self._lock:
            try:
                self._waiting.put_nowait(job)
            except queue.Full:
                raise self._full() from None
            self._jobs[job.id] = job
            self._forget_old()
        return job

    def expected_nfe(self, job: Job) -> int | None:
        """How many network evaluations the job will take (the base's U-Net once a step, then what the model's
        objective says its flow takes); None where the solver decides (dopri5)."""
        pipe = self.pipelines.get(job.model)
        if job.method not in MODEL_METHODS or pipe is None or pipe.model is None:
            return 0
        flow = pipe.objective.nfe(job.steps, job.solver)
        return None if flow is None else job.base_steps + flow

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def ahead_of(self, job: Job) -> int:
        """How many jobs will run before this one (the running one included)."""
        with self._lock:
            ahead = 0
            for other in self._jobs.values():
                if other is job:
                    return ahead if job.state == "queued" else 0
                ahead += other.state in ("queued", "running")
        return 0

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ("done", "error")]
        held = sum(j.bytes for j in finished)
        for i, job in enumerate(finished[:-1]):  # the oldest first; the newest is kept whatever its size
            if len(finished) - i <= self.keep and held <= self.keep_bytes:
                break
            held -= job.bytes
            del self._jobs[job.id]
            if job.path is not None:
                job.path.unlink(missing_ok=True)

    def _work(self) -> None:
        while not self._stopping.is_set():
            job = self._waiting.get()
            if job is None or self._stopping.is_set():
                break
            self._run(job)

    def _run(self, job: Job) -> None:
        job.state, started = "running", time.perf_counter()
        try:
            result, params = self._upscale(job) if job.prompt is None else self._generate(job)
            job.path = self._save(result, job.id, params)
            job.size, job.state, job.bytes = result.size, "done", job.path.stat().st_size
        except Exception as e:  # any failure ends this job only, never the worker
            job.state, job.message = "error", user_message(e)
            if not isinstance(e, (ValueError, ShuttingDown)):
                traceback.print_exc(file=sys.stderr)
        finally:
            job.image, job.seconds = None, round(time.perf_counter() - started, 3)  # frees the decoded upload
            with self._lock:
                self._forget_old()

    def _progress(self, job: Job):
        """The pipelines' callback after each network evaluation: counts it, and ends the job when stopping."""
        def count(*_):
            if self._stopping.is_set():
                raise ShuttingDown("the server is shutting down")
            job.count()
        return count

    def _upscale(self, job: Job) -> tuple[Image.Image, dict]:
        """The upload's colour through the model, its alpha, ICC profile and EXIF carried as the command line
        carries them (pipelines/batch.py); (the result, its PNG's save keywords)."""
        pipe, image = self.pipelines[job.model], job.image
        run = lambda im: pipe(im, steps=job.steps, solver=job.solver, method=job.method, seed=job.seed,
                              tile=job.tile is not None, tile_size=job.tile, callback=self._progress(job),
                              dtype=self.dtype)
        scale = pipe.config["scale"]
        return upscale_image(image, (image.width * scale, image.height * scale), 1, run, "PNG")

    def _generate(self, job: Job) -> tuple[Image.Image, dict]:
        low, result = self.text_to_image(job.model, job.prompt, job.negative_prompt, job.base_steps, job.steps,
                                         job.solver, job.seed, callback=self._progress(job))
        buf = io.BytesIO()
        low.save(buf, format="PNG")
        job.base_png = buf.getvalue()
        return result, {}

    def _save(self, image: Image.Image, job_id: str, params: dict) -> Path:
        """Writes through a temporary name; never recreates OUT_DIR, so nothing outlives its clean-up, and
        nothing is written once `stop` began."""
        with self._saving:
            if self._stopping.is_set():
                raise ShuttingDown("the server is shutting down")
            path = self.out_dir / f"{job_id}.png"
            write_atomic(path, lambda tmp: image.save(tmp, format="PNG", **params))
        return path


def user_message(e: Exception) -> str:
    """ValueErrors from fmboost are written for users; anything else is summed up without internals."""
    if isinstance(e, (ValueError, ShuttingDown)):
        return str(e)
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        return "out of memory: try a smaller image"
    return f"the job failed ({type(e).__name__}); the server logged the details"

"""The job queue behind `fmboost serve` (upscale and text-to-image jobs): a bounded queue and one worker thread.

One worker, because the pipelines are not thread-safe and torch already spreads one job over every core;
a second request waits its turn (the page shows its place). The queue is bounded so that a burst of uploads is
refused with a clear message instead of piling up decoded images in memory.
"""
from __future__ import annotations

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
from fmboost.pipelines.methods import MODEL_METHODS


class QueueFull(Exception):
    """Too many requests are waiting; the message is meant for the user."""


@dataclass
class Job:
    image: Image.Image | None
    model: str
    steps: int = ModelConfig.steps  # requests get the model's own (serve/app.py parse_flow)
    solver: str = ModelConfig.solver
    method: str = "cfm"
    seed: int = 0
    name: str = "image"  # the download is called NAME_x2.png
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

    Only results are written, and only the newest `keep` of them are kept, so the folder stays small however
    long the server runs. A job that fails is marked `error` with a message; the worker carries on.
    """

    def __init__(self, pipelines: dict, out_dir: Path, max_waiting: int = 8, keep: int = 64,
                 tile_above: int | None = None, text_to_image=None):
        self.pipelines, self.out_dir, self.keep, self.tile_above = pipelines, Path(out_dir), keep, tile_above
        self.text_to_image = text_to_image
        self._waiting: queue.Queue[Job | None] = queue.Queue(maxsize=max_waiting)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        # A daemon thread: a shutdown must not hang on an upscale that is half done.
        self._thread = threading.Thread(target=self._work, name="fmboost-serve-worker", daemon=True)

    def start(self) -> "JobQueue":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        try:
            self._waiting.put_nowait(None)  # wakes the worker if it is idle
        except queue.Full:
            pass  # it is busy and will see _stopping after the current job
        self._thread.join(timeout)

    def submit(self, job: Job) -> Job:
        job.nfe_total = self.expected_nfe(job)
        with self._lock:
            try:
                self._waiting.put_nowait(job)
            except queue.Full:
                raise QueueFull(f"the server is busy ({self._waiting.maxsize} requests waiting); "
                                f"try again in a moment") from None
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
        for job in finished[: max(0, len(finished) - self.keep)]:
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
            result = self._upscale(job) if job.prompt is None else self._generate(job)
            job.path = self._save(result, job.id)
            job.size, job.state = result.size, "done"
        except Exception as e:  # any failure ends this job only, never the worker
            job.state, job.message = "error", user_message(e)
            if not isinstance(e, ValueError):
                traceback.print_exc(file=sys.stderr)
        finally:
            job.image, job.seconds = None, round(time.perf_counter() - started, 3)  # frees the decoded upload
            with self._lock:
                self._forget_old()

    def _upscale(self, job: Job) -> Image.Image:
        pipe = self.pipelines[job.model]
        tile = self.tile_above is not None and job.image.width * job.image.height > self.tile_above
        return pipe(job.image, steps=job.steps, solver=job.solver, method=job.method, seed=job.seed, tile=tile,
                    callback=job.count)

    def _generate(self, job: Job) -> Image.Image:
        low, result = self.text_to_image(job.model, job.prompt, job.negative_prompt, job.base_steps, job.steps,
                                         job.solver, job.seed, callback=job.count)
        buf = io.BytesIO()
        low.save(buf, format="PNG")
        job.base_png = buf.getvalue()
        return result

    def _save(self, image: Image.Image, job_id: str) -> Path:
        """Writes through a temporary name; never recreates OUT_DIR, so nothing outlives its clean-up."""
        if self._stopping.is_set():
            raise RuntimeError("the server is shutting down")
        path = self.out_dir / f"{job_id}.png"
        write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
        return path


def user_message(e: Exception) -> str:
    """ValueErrors from fmboost are written for users; anything else is summed up without internals."""
    if isinstance(e, ValueError):
        return str(e)
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        return "out of memory: try a smaller image"
    return f"the job failed ({type(e).__name__}); the server logged the details"

"""`fmboost serve`: upload checks and the queue in-process, the HTTP API against a real server process on
127.0.0.1 (upscaling, and text to image with a tiny Stable Diffusion base), and the page in headless Chromium
(Debian's, installed here when missing; without it the browser tests are skipped with the reason, and the HTTP
tests of the same flow still run).

FMBOOST_SERVE_SCREENSHOT=docs/serve.png python -m pytest tests/test_serve.py -k browser_upload
refreshes the README's screenshot.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import random_photo
from fmboost.serve.app import UploadError, decode_upload
from fmboost.serve.jobs import Job, JobQueue, QueueFull

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
MAX_PIXELS, MAX_MB = 20_000, 0.2  # the test server's limits: small, so refusals are cheap to provoke
MAX_COST = 100_000  # processed pixels × NFE: the page's tests (≤ 64×80 at NFE 8) fit, 100×100 at rk4 × 32 does not
PROMPT = "a photo of a red cat"


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- in-process: upload checks and the queue

def test_decode_upload_refuses_what_is_not_a_usable_image():
    with pytest.raises(UploadError, match="not an image") as e:
        decode_upload(b"just some text, not a picture", MAX_PIXELS)
    assert e.value.status == 415
    truncated = png_bytes(random_photo(64, 64))[:300]
    with pytest.raises(UploadError, match="not an image"):
        decode_upload(truncated, MAX_PIXELS)
    with pytest.raises(UploadError, match="empty"):
        decode_upload(b"", MAX_PIXELS)
    with pytest.raises(UploadError, match="over this server's limit") as e:
        decode_upload(png_bytes(Image.new("L", (200, 101))), MAX_PIXELS)
    assert e.value.status == 413
    rgba = decode_upload(png_bytes(Image.new("RGBA", (30, 20), (255, 0, 0, 0))), MAX_PIXELS)
    assert rgba.mode == "RGBA" and rgba.size == (30, 20)  # alpha kept: the result carries it back (as the CLI)


class GatedPipeline:
    """Stands in for FMBoostPipeline: waits for `gate`, fails for method x0, else resizes ×2."""
    model, config = None, {"scale": 2}

    def __init__(self):
        self.gate = threading.Event()

    def __call__(self, image, method="cfm", **kwargs):
        assert self.gate.wait(20)
        if method == "x0":
            raise RuntimeError("simulated crash inside the model")
        return image.resize((image.width * 2, image.height * 2))


def wait_for(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_queue_is_bounded_and_a_failing_job_does_not_stop_it(tmp_path):
    pipe = GatedPipeline()
    jobs = JobQueue({"m": pipe}, tmp_path, max_waiting=2).start()
    try:
        failing = jobs.submit(Job(random_photo(8, 8), "m", method="x0"))
        wait_for(lambda: failing.state == "running")
        waiting = [jobs.submit(Job(random_photo(8, 8, seed=i), "m")) for i in range(2)]
        assert jobs.ahead_of(waiting[1]) == 2  # the running job and the first waiting one
        with pytest.raises(QueueFull, match="busy"):
            jobs.submit(Job(random_photo(8, 8), "m"))
        pipe.gate.set()
        wait_for(lambda: all(j.state == "done" for j in waiting))
    finally:
        jobs.stop()
    assert failing.state == "error" and "RuntimeError" in failing.message and "simulated" not in failing.message
    assert all(j.size == (16, 16) and j.image is None for j in waiting)  # decoded uploads are let go
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{j.id}.png" for j in waiting)


def test_queue_keeps_only_the_newest_results(tmp_path):
    pipe = GatedPipeline()
    pipe.gate.set()
    jobs = JobQueue({"m": pipe}, tmp_path, keep=2).start()
    try:
        done = []
        for i in range(4):
            done.append(jobs.submit(Job(random_photo(8, 8, seed=i), "m")))
            wait_for(lambda: done[-1].state == "done")
    finally:
        jobs.stop()
    assert [jobs.get(j.id) for j in done[:2]] == [None, None]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{j.id}.png" for j in done[2:])


def test_upscales_compute_in_the_precision_the_server_was_given(tmp_path):
    import torch

    seen = []

    class Recording(GatedPipeline):
        def __call__(self, image, method="cfm", **kwargs):
            seen.append(kwargs.get("dtype"))
            return super().__call__(image, method, **kwargs)

    for dtype in (None, torch.bfloat16):
        pipe = Recording()
        pipe.gate.set()
        (tmp_path / str(dtype)).mkdir()  # the caller owns the results folder
        jobs = JobQueue({"m": pipe}, tmp_path / str(dtype), dtype=dtype).start()
        try:
            job = jobs.submit(Job(random_photo(8, 8), "m"))
            wait_for(lambda: job.state == "done")
        finally:
            jobs.stop()
    assert seen == [None, torch.bfloat16]


def test_each_model_offers_only_what_its_objective_runs(tiny_model_dir):
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.serve.app import Limits, model_info, parse_job

    pipe = FMBoostPipeline.from_pretrained(tiny_model_dir)
    diffusion = FMBoostPipeline(pipe.autoencoder, pipe.model, objective="diffusion")
    models = {"tiny": pipe, "eps": diffusion, "no-flow": FMBoostPipeline(pipe.autoencoder, None)}
    info = {m["name"]: m for m in model_info(models)}
    # dopri5 picks its own NFE, so a request's cost could not be bounded: the server does not offer it.
    assert info["tiny"]["methods"] == ["cfm", "x0", "bicubic", "lanczos"]
    assert info["tiny"]["solvers"] == ["euler", "midpoint", "heun", "rk4"]
    assert info["eps"]["methods"][0] == "diffusion" and info["eps"]["solvers"] == ["ddim", "ddpm"]
    assert info["no-flow"]["methods"] == ["x0", "bicubic", "lanczos"] and info["no-flow"]["solvers"] == []
    assert parse_job({"model": "eps"}, models, Limits())["solver"] == "ddim"  # its own default, not euler
    for query in ({"model": "tiny", "method": "diffusion"}, {"model": "no-flow", "method": "cfm"},
                  {"model": "eps", "solver": "heun"}, {"model": "tiny", "solver": "dopri5"}):
        with pytest.raises(UploadError) as e:
            parse_job(query, models, Limits())
        assert "--" not in str(e.value) and (query.get("method") or query["solver"]) in str(e.value)


def test_pipeline_errors_name_no_command_line_flags(tiny_model_dir):
    from fmboost.pipelines.generate import GenerateInputError, cascade
    from fmboost.pipelines.upscale import FMBoostPipeline

    stage = FMBoostPipeline.from_pretrained(tiny_model_dir)
    with pytest.raises(GenerateInputError) as e:
        cascade([stage], 3)
    assert e.value.part == "scale" and str(e.value).startswith("3 cannot be reached") and "--" not in str(e.value)


def test_serve_command_reports_user_mistakes_in_one_line(capsys):
    from fmboost.cli.serve import main

    assert main(["--no-default"]) == 2
    assert capsys.readouterr().err.strip() == "fmboost serve: error: no model to serve: pass --model DIR (or drop " \
                                              "--no-default)"
    assert main(["--no-default", "--model", "x", "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb must be positive" in capsys.readouterr().err
    assert main(["--no-default", "--model", "x", "--base", "b", "--base-steps", "0"]) == 2
    assert "--base-steps must be between 1 and 50, got 0" in capsys.readouterr().err


def test_serve_is_registered_as_an_fmboost_command():
    from fmboost.cli.main import build_parser
    from fmboost.cli.serve import cmd_serve

    args = build_parser().parse_args(["serve", "--model", "a", "--model", "b", "--port", "0"])
    assert args.func is cmd_serve and args.model == ["a", "b"] and args.host == "127.0.0.1"


# ---------------------------------------------------------------- a real server process

class Server:
    def __init__(self, folder: Path, *args: str):
        (folder / "tmp").mkdir(parents=True)
        self.tmp, self.log = folder / "tmp", folder / "serve.log"
        # TMPDIR points into the test's folder, so the test sees everything the server writes there.
        env = dict(os.environ, TMPDIR=str(self.tmp), OMP_NUM_THREADS="1")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "fmboost.cli.serve", "--port", "0", *args],
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
        self.url, self.results = self._wait_for_banner()

    def _wait_for_banner(self, timeout=300.0):  # generous: a loaded CI machine imports torch slowly
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = re.search(r"(http://127\.0\.0\.1:\d+)/ .* results in (\S+), removed", self.log.read_text())
            if found:
                return found[1], Path(found[2])
            assert self.proc.poll() is None, f"fmboost serve exited:\n{self.log.read_text()}"
            time.sleep(0.2)
        raise AssertionError(f"fmboost serve did not start:\n{self.log.read_text()}")

    def request(self, path, data=None, headers=None, **params):
        """(status, body as JSON or bytes, headers); HTTP errors are answers here, not exceptions."""
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}),
                                        timeout=60) as r:
                status, body, headers = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, body, headers = e.code, e.read(), e.headers
        if headers.get("content-type", "").startswith("application/json"):
            body = json.loads(body)
        return status, body, headers

    def upscale(self, image_bytes: bytes, **params) -> dict:
        return self.run_job("/api/upscale", image_bytes, **params)

    def generate(self, **fields) -> dict:
        return self.run_job("/api/generate", json.dumps(fields).encode())

    def run_job(self, path: str, data: bytes, **params) -> dict:
        """Submits a job and waits for its end; returns its last status."""
        status, job, _ = self.request(path, data, **params)
        assert status == 202, job
        end = time.monotonic() + 60
        while job["state"] in ("queued", "running"):
            assert time.monotonic() < end, job
            time.sleep(0.1)
            job = self.request(f"/api/jobs/{job['id']}")[1]
        return job

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    # A copy without cfm/: a model for which every flow request fails inside the worker.
    broken = tmp_path_factory.mktemp("broken") / "no-flow"
    shutil.copytree(tiny_model_dir, broken, ignore=shutil.ignore_patterns("cfm"))
    s = Server(tmp_path_factory.mktemp("server"), "--no-default", "--model", str(tiny_model_dir), "--model",
               str(tiny_model_dir), "--model", str(broken), "--max-pixels", str(MAX_PIXELS), "--max-upload-mb",
               str(MAX_MB), "--queue-size", "4", "--max-cost", str(MAX_COST))
    yield s
    s.stop()


def test_page_is_self_contained_and_lists_every_model(server, tiny_model_dir):
    status, page, headers = server.request("/")
    assert status == 200 and b'id="file"' in page and b'id="run"' in page and b'id="slider"' in page
    assert not re.search(rb"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from elsewhere
    assert "default-src 'self'" in headers["content-security-policy"]
    info = server.request("/api/info")[1]
    name = Path(tiny_model_dir).name
    assert [m["name"] for m in info["models"]] == [name, f"{name}-2", "no-flow"]
    assert info["limits"]["max_pixels"] == MAX_PIXELS and info["limits"]["max_bytes"] == int(MAX_MB * 2**20)


def test_upload_upscale_download(server):
    job = server.upscale(png_bytes(random_photo(40, 52)), steps=2, solver="heun", name="holiday photo.png")
    assert job["state"] == "done" and (job["width"], job["height"]) == (104, 80)
    assert job["nfe_done"] == job["nfe_total"] == 4  # heun: two evaluations a step
    status, png, headers = server.request(job["result"], download=1)
    assert status == 200 and headers["content-type"] == "image/png"
    assert 'attachment; filename="holiday_photo_x2.png"' == headers["content-disposition"]
    assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"
    assert Image.open(io.BytesIO(png)).size == (104, 80)


def test_refusals_come_with_a_message_and_the_server_carries_on(server):
    photo = png_bytes(random_photo(24, 24))
    cases = [(b"%PDF-1.4 not an image", {}, 415, "not an image"),
             (png_bytes(Image.new("RGB", (160, 130))), {}, 413, "20,000"),
             (os.urandom(int(MAX_MB * 2**20) + 1), {}, 413, "0.2 MB"),
             (photo, {"steps": 0}, 400, "steps must be between 1 and"),
             (photo, {"steps": "many"}, 400, "whole number"),
             (photo, {"seed": -1}, 400, "seed must be between 0"),
             (photo, {"model": "nope"}, 400, "unknown model"),
             (photo, {"solver": "magic"}, 400, "unknown solver")]
    for body, params, code, message in cases:
        status, answer, _ = server.request("/api/upscale", body, **params)
        assert (status, message in answer["error"]) == (code, True), (params, answer)
    # A model without a flow offers only the baselines: asked for the flow, the door says so in the page's words.
    status, answer, _ = server.request("/api/upscale", photo, model="no-flow", method="cfm")
    assert status == 400 and answer["error"] == "model no-flow cannot run the method 'cfm'; it offers x0, bicubic, " \
                                               "lanczos"
    assert server.upscale(photo, model="no-flow")["state"] == "done"  # its first method, x0, by default
    assert server.upscale(photo)["state"] == "done"
    assert server.request("/api/jobs/0123456789abcdef")[0] == 404
    assert server.proc.poll() is None


def test_two_concurrent_requests_both_finish(server):
    sizes, jobs = [(40, 52), (32, 24)], {}
    threads = [threading.Thread(target=lambda hw: jobs.setdefault(hw, server.upscale(png_bytes(random_photo(*hw)))),
                                args=(hw,)) for hw in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert {hw: (j["state"], j["height"], j["width"]) for hw, j in jobs.items()} == \
           {hw: ("done", 2 * hw[0], 2 * hw[1]) for hw in sizes}


def test_only_results_are_written_and_removed_on_exit(tmp_path, tiny_model_dir):
    s = Server(tmp_path, "--no-default", "--model", str(tiny_model_dir))
    try:
        job = s.upscale(png_bytes(random_photo(40, 52)))
        assert job["state"] == "done"
        written = sorted(str(p.relative_to(s.tmp)) for p in s.tmp.rglob("*"))
        assert written == sorted([s.results.name, f"{s.results.name}/{job['id']}.png"])
    finally:
        code = s.stop()
    assert code == 0 and not s.results.exists() and list(s.tmp.iterdir()) == []


# ---------------------------------------------------------------- hardening (issue 23): cost, access, shutdown

def test_work_is_checked_at_its_padded_size_and_its_cost(server):
    strip = png_bytes(Image.new("RGB", (1, MAX_PIXELS), (90, 120, 150)))  # within the limit as a file
    status, answer, _ = server.request("/api/upscale", strip, steps=1)
    assert status == 413 and f"1×{MAX_PIXELS} is processed as" in answer["error"], answer
    assert "\n" not in answer["error"] and "downscale or crop" in answer["error"]
    photo = png_bytes(random_photo(100, 100))  # 10,000 pixels: within the limit, but not at rk4 × 32 steps
    status, answer, _ = server.request("/api/upscale", photo, steps=32, solver="rk4")
    assert status == 413 and "× 128 network evaluations" in answer["error"] and f"{MAX_COST:,}" in answer["error"]
    assert "fewer steps" in answer["error"]
    status, answer, _ = server.request("/api/upscale", photo, solver="dopri5")
    assert status == 400 and "cannot be bounded" in answer["error"]
    assert server.upscale(photo, steps=2, solver="heun")["state"] == "done"  # a cheaper request of the same photo


def test_other_sites_and_foreign_host_names_are_refused(server):
    photo = png_bytes(random_photo(24, 24))
    cross_site = {"Origin": "http://evil.example", "Content-Type": "text/plain"}  # no CORS preflight needed
    status, answer, headers = server.request("/api/upscale", photo, headers=cross_site)
    assert status == 403 and "--allow-origin http://evil.example" in answer["error"]
    port = server.url.rsplit(":", 1)[1]
    status, answer, _ = server.request("/api/info", headers={"Host": f"evil.example:{port}"})  # DNS rebinding
    assert status == 403 and "--allow-host evil.example" in answer["error"]
    assert server.request("/api/info", headers={"Host": f"localhost:{port}"})[0] == 200
    assert server.request("/api/info", headers={"Origin": server.url})[0] == 200  # the page itself
    assert server.upscale(photo)["state"] == "done"  # no Origin (curl, scripts): not a web page
    log = server.log.read_text()
    assert "refused POST /api/upscale: this server answers its own page only" in log and "Traceback" not in log


def test_every_answer_says_nosniff_and_html_carries_a_csp(server):
    for path, status in (("/", 200), ("/api/info", 200), ("/healthz", 200), ("/nope", 404),
                         ("/api/jobs/0123", 404)):
        got, _, headers = server.request(path)
        assert (got, headers["x-content-type-options"]) == (status, "nosniff"), path
        if headers["content-type"].startswith("text/html"):
            assert "default-src 'self'" in headers["content-security-policy"]
        if path.startswith("/api/"):
            assert headers["cache-control"] == "no-store"


def test_the_page_keeps_orientation_alpha_icc_and_exif_as_the_cli_does(server, tmp_path):
    from tests.test_upscale_files import exif_photo, rgba_photo

    icc = exif_photo(tmp_path / "cam.jpg")  # 24 × 16 as stored, orientation 6: 16 × 24 upright
    job = server.upscale((tmp_path / "cam.jpg").read_bytes(), steps=1)
    assert (job["state"], job["width"], job["height"]) == ("done", 32, 48)
    with Image.open(io.BytesIO(server.request(job["result"])[1])) as out:
        assert out.size == (32, 48) and out.info.get("icc_profile") == icc
        exif = out.getexif()
        assert exif.get(0x010F) == "FMBoost Camera" and exif.get(0x0112, 1) == 1  # upright, and says so
    job = server.upscale(png_bytes(rgba_photo()), steps=1)
    with Image.open(io.BytesIO(server.request(job["result"])[1])) as out:
        assert out.mode == "RGBA" and out.size == (48, 40)
        alpha = np.asarray(out.getchannel("A"), dtype=float)
    expected = np.asarray(rgba_photo().getchannel("A").resize((48, 40), Image.LANCZOS), dtype=float)
    assert np.abs(alpha - expected).max() <= 1


def test_sigterm_during_a_long_job_exits_0_and_leaves_no_files(tmp_path, tiny_model_dir):
    s = Server(tmp_path, "--no-default", "--model", str(tiny_model_dir), "--max-steps", "1000", "--max-cost",
               str(10**9))
    try:
        status, job, _ = s.request("/api/upscale", png_bytes(random_photo(96, 96)), steps=1000, solver="rk4")
        assert status == 202, job
        wait_for(lambda: s.request(f"/api/jobs/{job['id']}")[1]["nfe_done"] >= 2, timeout=120)
    finally:
        code = s.stop()
    log = s.log.read_text()
    assert code == 0, log
    assert "terminate called" not in log and "Traceback" not in log
    assert not s.results.exists() and list(s.tmp.iterdir()) == []


def test_stop_ends_a_running_job_at_its_next_network_evaluation(tmp_path):
    class Endless(GatedPipeline):
        def __call__(self, image, callback=None, **kwargs):
            while True:  # a job that would never end: only the stop can end it, through the callback
                callback(1)
                time.sleep(0.01)

    jobs = JobQueue({"m": Endless()}, tmp_path).start()
    job = jobs.submit(Job(random_photo(8, 8), "m"))
    wait_for(lambda: job.nfe_done > 3)
    assert jobs.stop(timeout=10) and not jobs.busy()
    assert job.state == "error" and "shutting down" in job.message and list(tmp_path.iterdir()) == []


def test_the_results_folder_is_capped_in_bytes_too(tmp_path):
    pipe = GatedPipeline()
    pipe.gate.set()
    one = len(png_bytes(random_photo(16, 16)))
    jobs = JobQueue({"m": pipe}, tmp_path, keep=100, keep_bytes=int(2.5 * one)).start()
    try:
        done = []
        for i in range(5):
            done.append(jobs.submit(Job(random_photo(8, 8, seed=i), "m")))
            wait_for(lambda: done[-1].state == "done")
    finally:
        jobs.stop()
    kept = sorted(tmp_path.iterdir())
    assert sum(p.stat().st_size for p in kept) <= 2.5 * one * 1.2 and 1 <= len(kept) < 5
    assert f"{done[-1].id}.png" in [p.name for p in kept]  # the newest stays


def test_access_rules_and_the_warning_for_other_machines():
    from fmboost.serve.guard import Access, exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("localhost") is None
    warning = exposure_warning("0.0.0.0")
    assert "\n" not in warning and "reachable from other machines" in warning and "--allow-host" in warning
    wild = Access.for_address("0.0.0.0", allow_hosts=["photos.lan"], allow_origins=["https://app.example/"])
    assert wild.refusal("photos.lan:7860", "http://photos.lan:7860") is None
    assert wild.refusal("[::1]:7860", None) is None and wild.refusal(None, None) is None
    assert wild.refusal("192.168.1.5:7860", None) is not None  # a wildcard address is no name
    assert wild.refusal("localhost:7860", "https://app.example") is None
    assert wild.refusal("localhost:7860", "null") is not None  # sandboxed frames, files
    assert Access.for_address("192.168.1.5").refusal("192.168.1.5:7860", None) is None


@pytest.fixture
def inprocess(tmp_path, tiny_model_dir):
    """start(limits, wrap=None) → (URL, app): the tiny model served in this process, `wrap` around it."""
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.serve.app import create_app, serve_in_background

    pipe, stops = FMBoostPipeline.from_pretrained(tiny_model_dir), []

    def start(limits, wrap=None):
        app = create_app({"tiny": wrap(pipe) if wrap else pipe}, tmp_path, limits)
        url, stop = serve_in_background(app)
        stops.append(stop)
        return url, app

    yield start
    for stop in stops:
        stop()


def raw_request(url: str, head: bytes, body: bytes = b"", read: bool = True, timeout: float = 20) -> bytes:
    """Sends `head` (and `body`) as they are on a new connection; returns what the server answers until it
    closes the connection ("" when it closes without a word)."""
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(head + body)
        answer = b""
        while read:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def post_head(length: int, path: str = "/api/upscale?steps=1") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_slow_headers_and_slow_bodies_are_cut_off(inprocess):
    from fmboost.serve.app import Limits

    url, _ = inprocess(Limits(header_timeout_s=0.5, read_timeout_s=1.0))
    assert raw_request(url, b"POST /api/upscale HTTP/1.1\r\nHost: 127.0.0.1\r\n") == b""  # headers never end
    answer = raw_request(url, post_head(1000), b"x" * 10)  # the body stops after 10 bytes
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert urllib.request.urlopen(f"{url}/healthz", timeout=10).status == 200


def test_an_abandoned_upload_is_one_line_in_the_log(inprocess, capfd):
    from fmboost.serve.app import Limits

    url, _ = inprocess(Limits())
    raw_request(url, post_head(100_000), b"x" * 1000, read=False)  # and goes away
    err = ""
    end = time.monotonic() + 20
    while "abandoned" not in err and time.monotonic() < end:
        time.sleep(0.1)
        err += capfd.readouterr().err
    time.sleep(0.5)
    err += capfd.readouterr().err
    assert [line for line in err.splitlines() if line.strip()] == \
        ["fmboost serve: an upload was abandoned by its client after 1,000 bytes"]


class Held:
    """A pipeline held at its first job until `release` is set: the queue fills while it waits."""

    def __init__(self, pipe):
        self.pipe, self.release = pipe, threading.Event()

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):
        assert self.release.wait(60)
        return self.pipe(*args, **kwargs)


def test_a_full_queue_is_told_before_the_body_is_sent(inprocess):
    from fmboost.serve.app import Limits

    held = []
    url, app = inprocess(Limits(max_waiting=1, header_timeout_s=1), wrap=lambda pipe: held.append(Held(pipe))
                         or held[0])
    photo = png_bytes(random_photo(16, 16))
    post = lambda: urllib.request.urlopen(urllib.request.Request(f"{url}/api/upscale?steps=1", data=photo),
                                          timeout=30)
    running = json.loads(post().read())
    wait_for(lambda: app.state.jobs.get(running["id"]).state == "running")
    assert post().status == 202  # waits: the queue of one is full now
    answer = raw_request(url, post_head(5_000_000))  # announces 5 MB and sends none of it
    assert answer.startswith(b"HTTP/1.1 503") and b"busy" in answer
    # A browser sends the body at once, before reading the answer: the answer must survive the unread body.
    answer = raw_request(url, post_head(2_000_000), bytes(2_000_000))
    assert answer.startswith(b"HTTP/1.1 503") and b"busy" in answer
    held[0].release.set()


def test_connections_beyond_the_cap_are_answered_busy_at_once(inprocess):
    from fmboost.serve.app import Limits

    url, _ = inprocess(Limits(max_connections=2))
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(2)]
    time.sleep(0.3)
    answer = raw_request(url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer and b"nosniff" in answer
    for sock in idle:
        sock.close()
    wait_for(lambda: raw_request(url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
             .startswith(b"HTTP/1.1 200"), timeout=10)


# ---------------------------------------------------------------- text to image (fmboost serve --base)

@pytest.fixture(scope="module")
def text_server(tmp_path_factory, base_dir, cfm_dir, tiny_model_dir):
    # tiny_model_dir was built on another autoencoder than the base's VAE: it must stay upscale-only.
    s = Server(tmp_path_factory.mktemp("text-server"), "--no-default", "--model", str(cfm_dir), "--model",
               str(tiny_model_dir), "--base", str(base_dir), "--base-steps", "2")
    yield s
    s.stop()


def test_text_to_image_is_404_without_a_base(server):
    assert server.request("/api/info")[1]["text_to_image"] is None
    status, answer, _ = server.request("/api/generate", json.dumps({"prompt": PROMPT}).encode())
    assert status == 404 and "fmboost serve --base" in answer["error"]


def test_text_to_image_generate_and_download(text_server, cfm_dir, tiny_model_dir):
    info = text_server.request("/api/info")[1]["text_to_image"]
    assert info["models"] == [cfm_dir.name]  # the model on another latent space is left out, with a note
    assert (info["width"], info["height"], info["base_steps"]) == (32, 32, 2)  # the base's own size; --base-steps
    assert f"model {tiny_model_dir.name} is upscale-only: it works in another latent space" in \
        text_server.log.read_text()
    job = text_server.generate(prompt=PROMPT, steps=2, solver="heun", seed=3)
    assert job["state"] == "done" and (job["width"], job["height"]) == (64, 64)  # 32 px base × 2
    assert job["nfe_done"] == job["nfe_total"] == 2 + 2 * 2  # the base's 2 steps, then heun's 2 × 2
    status, png, headers = text_server.request(job["result"], download=1)
    assert status == 200 and Image.open(io.BytesIO(png)).size == (64, 64)
    assert headers["content-disposition"] == 'attachment; filename="a_photo_of_a_red_cat_s3_x2.png"'
    status, base_png, headers = text_server.request(job["base"])
    assert status == 200 and headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(base_png)).size == (32, 32)
    # Only the result is written; the base's picture stays in memory.
    assert [p.name for p in text_server.results.iterdir() if job["id"] in p.name] == [f"{job['id']}.png"]
    assert {p.parent for p in text_server.tmp.rglob("*.png")} == {text_server.results}


def test_text_to_image_refusals_come_with_a_message(text_server, tiny_model_dir):
    cases = [({"prompt": "   "}, "enter a prompt"),
             ({"negative_prompt": "blurry"}, "enter a prompt"),
             ({"prompt": PROMPT, "base_steps": 0}, "base steps must be between 1 and 50, got 0"),
             ({"prompt": PROMPT, "steps": 99}, "steps must be between 1 and 32, got 99"),
             ({"prompt": PROMPT, "seed": "x"}, "seed must be a whole number"),
             ({"prompt": PROMPT, "model": tiny_model_dir.name}, "cannot boost the base"),
             ({"prompt": PROMPT, "solver": "magic"}, "unknown solver")]
    for fields, message in cases:
        status, answer, _ = text_server.request("/api/generate", json.dumps(fields).encode())
        assert (status, message in answer["error"]) == (400, True), (fields, answer)
    for body in (b"prompt=a cat", b'["a cat"]'):
        status, answer, _ = text_server.request("/api/generate", body)
        assert status == 400 and "JSON object" in answer["error"]
    assert text_server.proc.poll() is None


# ---------------------------------------------------------------- the page in headless Chromium

def install_chromium() -> str | None:
    """Installs Debian's chromium and its driver; returns why not, or None when it worked."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root, cannot apt-get install chromium chromium-driver"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` took over 15 minutes"
        if done.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


@pytest.fixture(scope="session")
def chromium():
    reason = None if CHROMIUM.exists() and CHROMEDRIVER.exists() else install_chromium()
    if reason is None and not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        reason = f"{CHROMIUM} or {CHROMEDRIVER} still missing after apt-get install"
    if reason:
        warnings.warn(f"browser tests skipped: {reason}")  # shows in the summary even under -q
        pytest.skip(reason)
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium[0])
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,900", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    # An explicit driver path: selenium then never looks for (or downloads) a driver itself.
    driver = webdriver.Chrome(service=Service(str(chromium[1])), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, server):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server.url + "/")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.getElementById('model').length"))


def start_upscale(driver, image_path: Path, steps: int = 4):
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "file").send_keys(str(image_path))
    driver.execute_script("document.getElementById('steps').value = arguments[0]", steps)
    driver.find_element(By.ID, "run").click()


def wait_for_result(driver, timeout=60, tab="") -> dict:
    """Waits for the tab's result or error; `tab` is its ids' prefix ("" upscale, "t-" text to image)."""
    from selenium.webdriver.support.ui import WebDriverWait

    find = "const p = arguments[0], $ = (id) => document.getElementById(p + id);"
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        find + "return !$('result').hidden && $('after').complete || !$('error').hidden", tab))
    return driver.execute_script(
        find + "const a = $('after');"
        "return {error: $('error').hidden ? null : $('error').textContent, width: a.naturalWidth,"
        " height: a.naturalHeight, status: $('status').textContent, download: $('download').href};", tab)


def test_browser_upload_compare_download(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    photo = tmp_path / "photo.png"
    random_photo(60, 80).save(photo)
    open_page(browser, server)
    start_upscale(browser, photo)
    shown = wait_for_result(browser)
    assert shown["error"] is None and (shown["width"], shown["height"]) == (160, 120)
    assert shown["status"].startswith("done in")
    status, png, headers = server.request(urllib.parse.urlsplit(shown["download"]).path, download=1)
    assert Image.open(io.BytesIO(png)).size == (160, 120) and "photo_x2.png" in headers["content-disposition"]
    assert browser.execute_script("return document.getElementById('before').naturalWidth") == 80  # the upload
    slider = browser.find_element(By.ID, "slider")
    ActionChains(browser).move_to_element_with_offset(slider, -slider.size["width"] // 4, 0).click().perform()
    value = int(slider.get_attribute("value"))
    assert 15 <= value <= 35  # a click a quarter in from the left moves the divider there
    clip = browser.execute_script("return document.getElementById('before').style.clipPath")
    assert clip == f"inset(0px {100 - value}% 0px 0px)"
    shot = tmp_path / "serve.png"
    assert browser.save_screenshot(str(shot)) and Image.open(shot).size[0] > 0
    if os.environ.get("FMBOOST_SERVE_SCREENSHOT"):
        shutil.copy(shot, os.environ["FMBOOST_SERVE_SCREENSHOT"])


def test_browser_shows_why_a_non_image_is_refused(browser, server, tmp_path):
    text = tmp_path / "notes.png"  # an image's name, not an image's bytes: the server must look inside
    text.write_text("shopping list: milk, eggs")
    open_page(browser, server)
    start_upscale(browser, text)
    shown = wait_for_result(browser)
    assert "not an image" in shown["error"]
    browser.save_screenshot(str(tmp_path / "refused.png"))


def test_browser_two_tabs_upscale_at_once(browser, server, tmp_path):
    photos = []
    for i, hw in enumerate([(48, 64), (40, 40)]):
        photos.append(tmp_path / f"p{i}.png")
        random_photo(*hw, seed=i).save(photos[-1])
    tabs = []
    for photo in photos:  # the second upload is sent while the first is still on its way
        if tabs:
            browser.switch_to.new_window("tab")
        tabs.append(browser.current_window_handle)
        open_page(browser, server)
        start_upscale(browser, photo, steps=8)
    results = []
    for tab in tabs:
        browser.switch_to.window(tab)
        results.append(wait_for_result(browser))
    assert [(r["error"], r["width"], r["height"]) for r in results] == [(None, 128, 96), (None, 80, 80)]
    for tab in tabs[1:]:
        browser.switch_to.window(tab)
        browser.close()
    browser.switch_to.window(tabs[0])


def test_browser_text_to_image_tab(browser, server, text_server, tmp_path):
    from selenium.webdriver.common.by import By

    shown = "return [!document.getElementById('upscale-tab').hidden, !document.getElementById('text-tab').hidden]"
    open_page(browser, server)
    assert browser.execute_script("return document.getElementById('tabs').hidden")  # no --base, no tab
    open_page(browser, text_server)
    assert browser.execute_script(shown) == [True, False]
    browser.find_element(By.ID, "tab-text").click()
    assert browser.execute_script(shown) == [False, True]
    browser.find_element(By.ID, "t-run").click()  # no prompt yet: the server's message is shown
    assert "enter a prompt" in wait_for_result(browser, tab="t-")["error"]
    browser.find_element(By.ID, "t-prompt").send_keys(PROMPT)
    browser.execute_script("document.getElementById('t-steps').value = 1")
    browser.find_element(By.ID, "t-run").click()
    result = wait_for_result(browser, tab="t-")
    assert result["error"] is None and (result["width"], result["height"]) == (64, 64)
    assert result["status"].startswith("done in") and result["download"].endswith("result.png?download=1")
    assert browser.execute_script("return document.getElementById('t-base').naturalWidth") == 32
    browser.save_screenshot(str(tmp_path / "text-to-image.png"))

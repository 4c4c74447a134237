"""A bounded load test of `fmboost serve` on 127.0.0.1: many clients at once against a small queue.

    python benchmarks/serve_load.py [--clients 50] [--queue-size 16] [--size 64] [--steps 1] [--limit-s 600]
                                    [--out results/bench/serve_load_cpu.json]

Starts a real `fmboost serve` process (the embedded models, this machine only, a free port), lets `--clients`
threads each upload one PNG at the same moment and follow their job to the end, then checks the server still
answers. Every request must be answered: 202 and a finished result, or 503 "busy" (the queue holds
`--queue-size`). The server's resident memory is sampled all along (before, peak, after). Everything is bounded:
each request has a timeout and the whole run `--limit-s`. Raw figures go to JSON with the machine, date, command
and commit; docs/robustness.md quotes them.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from raw import ROOT, meta, write_raw  # noqa: E402


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request(url: str, data: bytes | None = None, timeout: float = 60) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
            return r.status, json.loads(r.read()) if "json" in r.headers.get("content-type", "") else {}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def start_server(queue_size: int, log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "fmboost.cli.serve", "--port", "0", "--host", "127.0.0.1",
                                 "--queue-size", str(queue_size)], stdout=f, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT)
    end = time.monotonic() + 600
    while time.monotonic() < end:
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", log.read_text())
        if found:
            return proc, found[1]
        if proc.poll() is not None:
            raise RuntimeError(f"fmboost serve exited:\n{log.read_text()}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("fmboost serve did not start in 600 s")


def client(url: str, png: bytes, steps: int, deadline: float, out: dict) -> None:
    t0 = time.perf_counter()
    try:
        status, job = request(f"{url}/api/upscale?steps={steps}", png)
        out.update(status=status, answer_s=time.perf_counter() - t0)
        if status == 503:
            out["busy_message"] = "busy" in job.get("error", "")
        while status == 202 and job["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = request(f"{url}/api/jobs/{job['id']}")[1]
        if status == 202:
            out.update(state=job.get("state"), done_s=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - an unanswered request is a finding, recorded as such
        out.update(status=None, error=f"{type(e).__name__}: {e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--queue-size", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="side of the uploaded PNG in pixels")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--limit-s", type=float, default=600, help="bound on the whole load phase")
    p.add_argument("--out", default=str(ROOT / "results" / "bench" / "serve_load_cpu.json"))
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fmboost-load-"))
    buf = io.BytesIO()
    Image.effect_mandelbrot((args.size, args.size), (-2, -1.5, 1, 1.5), 100).convert("RGB").save(buf, "PNG")
    png = buf.getvalue()
    proc, url = start_server(args.queue_size, tmp / "serve.log")
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set() and proc.poll() is None:
            samples.append(rss_mb(proc.pid))
            time.sleep(0.1)

    try:
        request(f"{url}/api/upscale?steps={args.steps}", png)  # one job first: lazy allocations are not load
        time.sleep(2)
        rss_before = rss_mb(proc.pid)
        threading.Thread(target=sample, daemon=True).start()
        deadline = time.monotonic() + args.limit_s
        results = [{} for _ in range(args.clients)]
        threads = [threading.Thread(target=client, args=(url, png, args.steps, deadline, r)) for r in results]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(1.0, deadline - time.monotonic()))
        load_s = time.perf_counter() - t0
        stop.set()
        time.sleep(1)
        rss_after = rss_mb(proc.pid)
        alive = request(f"{url}/healthz")[0] == 200 if proc.poll() is None else False
        again = request(f"{url}/api/upscale?steps={args.steps}", png)[0] if alive else None
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    accepted = [r for r in results if r.get("status") == 202]
    summary = dict(
        clients=args.clients, queue_size=args.queue_size, upload_px=f"{args.size}x{args.size}", steps=args.steps,
        answered=sum(r.get("status") is not None for r in results),
        accepted_202=len(accepted), busy_503=sum(r.get("status") == 503 for r in results),
        busy_messages_say_busy=all(r.get("busy_message") for r in results if r.get("status") == 503),
        other_status=sorted({r.get("status") for r in results} - {202, 503}, key=str),
        accepted_done=sum(r.get("state") == "done" for r in accepted),
        accepted_error=sum(r.get("state") == "error" for r in accepted),
        median_answer_s=round(statistics.median(r["answer_s"] for r in results if "answer_s" in r), 3),
        max_done_s=round(max((r["done_s"] for r in accepted if "done_s" in r), default=0), 2),
        load_phase_s=round(load_s, 2),
        rss_before_mb=round(rss_before, 1), rss_peak_mb=round(max(samples, default=rss_before), 1),
        rss_after_mb=round(rss_after, 1), alive_after=alive, accepts_work_after=again == 202,
        server_exit_code=proc.returncode)
    for key, value in summary.items():
        print(f"{key:24s} {value}")
    server = f"python -m fmboost.cli.serve --port 0 --queue-size {args.queue_size} (embedded models, 127.0.0.1)"
    write_raw(args.out, dict(meta=meta(server=server), summary=summary, clients=results,
                             rss_samples_mb=[round(s, 1) for s in samples[::5]]))


if __name__ == "__main__":
    main()

"""The hardening of issue 23 measured against a real `fmboost serve` on 127.0.0.1 (and `fmboost upscale`).

    python benchmarks/robustness.py [--clients 60] [--slow 20] [--out results/robustness/serve.json]

Starts `fmboost serve` (the embedded models, a free port, its default limits) and measures, in this order:
- work that hides its size: a 4 KB PNG of 1 × 1,048,576 pixels (1 MP as a file, 8 MP once padded) posted to the
  server and given to `fmboost upscale`, and a 1 MP photo asked at rk4 × 32 steps (NFE 128) and with dopri5:
  the answer, its message and how long it took;
- access: a cross-site POST (`Origin: http://evil.example`, `Content-Type: text/plain`) and a `GET /api/info` under
  a foreign `Host` (DNS rebinding), beside the same requests from the server's own page;
- slow clients: `--slow` connections at once, half trickling their headers, half announcing 20 MB and sending
  1 MB; when each was cut off and what it was told, and whether the server answered meanwhile;
- load: `--clients` clients upload a 64 × 64 PNG at the same moment (NFE 1) and follow their job;
- SIGTERM while a job runs (256 × 256, 32 Euler steps): the exit code, the time to exit, files left behind;
and the server's resident memory throughout (sampled every 0.1 s). Model speed is not the point here: every job
is small. Raw figures: results/robustness/serve.json (with `meta`: machine, date, command, commit); docs/robustness.md
is generated from it (python experiments/report.py).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fmboost.evaluation.provenance import run_meta, write_json  # noqa: E402

MP = 1024 * 1024


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    a = np.stack([np.sin(7 * xx + c) * np.cos(5 * yy - c) for c in rng.uniform(0, 3, 3)], -1) * 100 + 128
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 120) -> dict:
    """{status, error (the refusal's message), seconds}; an unanswered request is {status: None, error: why}."""
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}),
                                    timeout=timeout) as r:
            status, body, ctype = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, body, ctype = e.code, e.read(), e.headers.get("content-type", "")
    except OSError as e:
        return dict(status=None, error=f"{type(e).__name__}: {e}", seconds=round(time.perf_counter() - t0, 3))
    answer = json.loads(body) if "json" in ctype else {}
    return dict(status=status, seconds=round(time.perf_counter() - t0, 3), answer=answer,
                error=answer.get("error") if isinstance(answer, dict) else None)


class Server:
    def __init__(self, folder: Path):
        self.tmp, self.log = folder / "tmp", folder / "serve.log"
        self.tmp.mkdir()
        env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(self.tmp))
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "fmboost.cli.serve", "--port", "0"], stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        end = time.monotonic() + 600
        while time.monotonic() < end:
            found = re.search(r"(http://127\.0\.0\.1:(\d+))/ .* results in (\S+), removed", self.log.read_text())
            if found:
                self.url, self.port, self.results = found[1], int(found[2]), Path(found[3])
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"fmboost serve exited:\n{self.log.read_text()}")
            time.sleep(0.2)
        else:
            self.proc.kill()
            raise RuntimeError("fmboost serve did not start in 600 s")
        self.samples, self._stop = [], threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self._stop.is_set() and self.proc.poll() is None:
            try:
                self.samples.append(rss_mb(self.proc.pid))
            except OSError:
                break
            time.sleep(0.1)

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def follow(self, job: dict, limit_s: float = 600) -> dict:
        end = time.monotonic() + limit_s
        while job.get("state") in ("queued", "running") and time.monotonic() < end:
            time.sleep(0.1)
            job = request(f"{self.url}/api/jobs/{job['id']}")["answer"]
        return job


def strip_refusals(server: Server, tmp: Path) -> dict:
    strip = png(Image.new("RGB", (1, MP), (90, 120, 150)))
    served = request(f"{server.url}/api/upscale?steps=1", strip)
    (tmp / "tall.png").write_bytes(strip)
    t0 = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "fmboost.cli.main", "upscale", str(tmp / "tall.png")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return dict(file_bytes=len(strip), size="1x1048576",
                serve=dict(status=served["status"], message=served["error"], seconds=served["seconds"]),
                cli=dict(exit_code=cli.returncode, message=cli.stderr.strip().splitlines()[-1] if cli.stderr else "",
                         seconds=round(time.perf_counter() - t0, 2),
                         output_written=(tmp / "tall_x2.png").exists()))


def cost_refusals(server: Server) -> dict:
    big = png(photo(1024, 1024))
    rk4 = request(f"{server.url}/api/upscale?steps=32&solver=rk4", big)
    dopri5 = request(f"{server.url}/api/upscale?solver=dopri5", big)
    return dict(size="1024x1024", rk4_32=dict(status=rk4["status"], message=rk4["error"], seconds=rk4["seconds"]),
                dopri5=dict(status=dopri5["status"], message=dopri5["error"], seconds=dopri5["seconds"]))


def access(server: Server) -> dict:
    small = png(photo(32, 32))
    cross = request(f"{server.url}/api/upscale?steps=1", small,
                    {"Origin": "http://evil.example", "Content-Type": "text/plain"})
    rebound = request(f"{server.url}/api/info", headers={"Host": f"evil.example:{server.port}"})
    own_page = request(f"{server.url}/api/upscale?steps=1", small, {"Origin": server.url})
    own_host = request(f"{server.url}/api/info", headers={"Host": f"localhost:{server.port}"})
    return dict(cross_site_post=dict(status=cross["status"], message=cross["error"]),
                foreign_host=dict(status=rebound["status"], message=rebound["error"]),
                own_page_post=dict(status=own_page["status"]), localhost_get=dict(status=own_host["status"]))


def slow_client(server: Server, body: bool, out: dict) -> None:
    """Headers trickled forever (body=False), or a 20 MB upload that stops after 1 MB (body=True)."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=300) as sock:
            if body:
                sock.sendall(b"POST /api/upscale?steps=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20971520\r\n"
                             b"\r\n" + bytes(2**20))
            else:
                sock.sendall(b"POST /api/upscale HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            answer = b""
            while True:
                if not body and time.perf_counter() - t0 < 300:
                    try:  # one more header byte a second, as a slowloris client does
                        sock.settimeout(1.0)
                        chunk = sock.recv(65536)
                    except TimeoutError:
                        sock.sendall(b"X")
                        continue
                else:
                    chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        out.update(cut_after_s=round(time.perf_counter() - t0, 2),
                   status=int(answer.split()[1]) if answer.startswith(b"HTTP/") else None)
    except OSError as e:
        out.update(cut_after_s=round(time.perf_counter() - t0, 2), status=None, error=type(e).__name__)


def slow_clients(server: Server, n: int) -> dict:
    results = [{} for _ in range(n)]
    threads = [threading.Thread(target=slow_client, args=(server, i % 2 == 1, r)) for i, r in enumerate(results)]
    rss_before = server.rss()
    for t in threads:
        t.start()
    time.sleep(3)
    during = request(f"{server.url}/healthz", timeout=30)
    for t in threads:
        t.join(400)
    headers, bodies = results[0::2], results[1::2]
    return dict(clients=n, header_tricklers=len(headers), stalled_uploads=len(bodies),
                healthz_during=dict(status=during["status"], seconds=during["seconds"]),
                header_cut_after_s=max(r["cut_after_s"] for r in headers),
                header_statuses=sorted({str(r["status"]) for r in headers}),
                upload_cut_after_s=max(r["cut_after_s"] for r in bodies),
                upload_statuses=sorted({str(r["status"]) for r in bodies}),
                rss_before_mb=rss_before, rss_after_mb=server.rss(), per_client=results)


def load(server: Server, n: int) -> dict:
    small = png(photo(64, 64))
    results = [{} for _ in range(n)]

    def client(out):
        answer = request(f"{server.url}/api/upscale?steps=1", small, timeout=120)
        out.update(status=answer["status"], seconds=answer["seconds"], error=answer["error"])
        if answer["status"] == 202:
            out["state"] = server.follow(answer["answer"]).get("state")

    rss_before, first = server.rss(), len(server.samples)
    threads = [threading.Thread(target=client, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    statuses = [r.get("status") for r in results]
    return dict(clients=n, answered=sum(s is not None for s in statuses), accepted_202=statuses.count(202),
                busy_503=statuses.count(503), other=sorted({str(s) for s in statuses} - {"202", "503"}),
                accepted_done=sum(r.get("state") == "done" for r in results),
                rss_before_mb=rss_before, rss_peak_mb=max(server.samples[first:], default=rss_before),
                rss_after_mb=server.rss(), alive_after=request(f"{server.url}/healthz")["status"] == 200)


def sigterm_mid_job(server: Server) -> dict:
    answer = request(f"{server.url}/api/upscale?steps=32", png(photo(256, 256)))
    job, end = answer["answer"], time.monotonic() + 300
    while job.get("nfe_done", 0) < 1 and time.monotonic() < end:
        time.sleep(0.1)
        job = request(f"{server.url}/api/jobs/{job['id']}")["answer"]
    t0 = time.perf_counter()
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(120)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        code = "killed after 120 s"
    log = server.log.read_text()
    return dict(job="256x256, 32 Euler steps", state_at_signal=job.get("state"), nfe_done_at_signal=job.get("nfe_done"),
                nfe_total=job.get("nfe_total"), exit_code=code, exit_s=round(time.perf_counter() - t0, 2),
                results_folder_left=server.results.exists(),
                files_left=sorted(str(p) for p in server.results.rglob("*")) if server.results.exists() else [],
                # everything in the server's TMPDIR afterwards (torch may keep a cache folder of its own there)
                tmpdir_entries=sorted(p.name for p in server.tmp.iterdir()),
                log_says_terminate="terminate called" in log, log_has_traceback="Traceback" in log)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=60)
    p.add_argument("--slow", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "results" / "robustness" / "serve.json"))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fmboost-robustness-"))
    server = Server(tmp)
    try:
        time.sleep(2)
        rss_start = server.rss()
        data = dict(strip=strip_refusals(server, tmp), cost=cost_refusals(server), access=access(server),
                    slow_clients=slow_clients(server, args.slow), load=load(server, args.clients))
        data["sigterm"] = sigterm_mid_job(server)
    finally:
        server._stop.set()
        if server.proc.poll() is None:
            server.proc.kill()
    data["rss"] = dict(start_mb=rss_start, peak_mb=max(server.samples), samples=len(server.samples))
    for key, value in data.items():
        print(key, json.dumps({k: v for k, v in value.items() if k != "per_client"}))
    meta = run_meta(server="python -m fmboost.cli.serve --port 0 (embedded models, default limits, 127.0.0.1)")
    print(f"raw figures: {write_json(args.out, dict(meta=meta, **data))}")


if __name__ == "__main__":
    main()

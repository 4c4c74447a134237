"""The web upload under hostile input and load, on an in-process server on 127.0.0.1 with the tiny model.

- Fuzz: over 200 mutated, truncated, header-forged and oversized PNG, JPEG, WebP, TIFF, GIF and BMP files, and a
  PNG whose header claims 100,000 × 100,000 pixels. Each ends in a refusal with a one-line message (4xx) or a
  job that finishes (a valid PNG ×2) or fails with a message; never a 500, a traceback, a hang (every request
  has a timeout) or a partial file in the results folder. The intact files run the flow; the mutants that pass
  the door run the bicubic baseline, through the same upload, queue and result writing at a fraction of the cost.
- Load: 50 clients at once against a queue of 16, the worker held until all are answered, so exactly the queue
  plus the running job are taken and the rest are told the server is busy; then everything finishes and the server
  still answers. (benchmarks/serve_load.py runs the same against a real `fmboost serve` and measures its memory.)
"""
from __future__ import annotations

import io
import json
import random
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib

import pytest
from PIL import Image

from tests.conftest import random_photo

pytest.importorskip("uvicorn")

MAX_PIXELS, MAX_BYTES = 64 * 64, 64 * 1024
TIMEOUT = 30  # seconds for any one request: a hang fails the test instead of stalling it


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming width × height 8-bit RGB pixels, over a few bytes of compressed zeros."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def with_png_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose header says another size (CRC fixed, so only the size lies)."""
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:8] + png_chunk(b"IHDR", ihdr) + data[33:]


def seeds() -> list[tuple[str, bytes]]:
    """Valid small files of every format and mode an upload may come in."""
    rgb, rgba = random_photo(24, 20), random_photo(24, 20, seed=1).convert("RGBA")
    return [("png", encode(rgb, "PNG")), ("png-rgba", encode(rgba, "PNG")), ("png-l", encode(rgb.convert("L"), "PNG")),
            ("png-p", encode(rgb.convert("P"), "PNG")), ("png-16", encode(rgb.convert("L").convert("I;16"), "PNG")),
            ("jpeg", encode(rgb, "JPEG", quality=80)), ("jpeg-l", encode(rgb.convert("L"), "JPEG")),
            ("jpeg-cmyk", encode(rgb.convert("CMYK"), "JPEG")), ("jpeg-progressive", encode(rgb, "JPEG", progressive=True)),
            ("webp", encode(rgb, "WEBP", quality=80)), ("webp-lossless", encode(rgba, "WEBP", lossless=True)),
            ("tiff", encode(rgb, "TIFF")), ("tiff-lzw", encode(rgb, "TIFF", compression="tiff_lzw")),
            ("tiff-deflate", encode(rgba, "TIFF", compression="tiff_adobe_deflate")),
            ("gif", encode(rgb.convert("P"), "GIF")), ("bmp", encode(rgb, "BMP"))]


def mutants(rng: random.Random) -> list[tuple[str, bytes]]:
    cases = []
    for name, data in seeds():
        cases.append((name, data))
        for i in range(3):  # cut anywhere: in the header, the middle, just before the end
            cut = rng.choice([rng.randrange(1, 40), rng.randrange(len(data) // 2, len(data)), len(data) - 1])
            cases.append((f"{name}-cut{i}-{cut}", data[:cut]))
        for i in range(5):  # flip a few bytes, in the header or anywhere
            b = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                at = rng.randrange(min(len(b), 64)) if i % 2 == 0 else rng.randrange(len(b))
                b[at] = rng.randrange(256)
            cases.append((f"{name}-flip{i}", bytes(b)))
        b = bytearray(data)  # a run of zeros over the middle
        mid = len(b) // 2
        b[mid:mid + 32] = bytes(32)
        cases.append((f"{name}-zeros", bytes(b)))
        cases.append((f"{name}-garbage-tail", data + rng.randbytes(512)))
        cases.append((f"{name}-doubled", data + data))
    png = dict(seeds())["png"]
    for w, h in [(100_000, 100_000), (1, 1_000_000), (65_535, 1), (0, 10), (2**31 - 1, 2**31 - 1), (80, 80)]:
        cases.append((f"png-claims-{w}x{h}", with_png_size(png, w, h)))
    cases += [("bomb-100k", bomb_png()), ("bomb-100k-l", bomb_png(100_000, 100_000)[:60]),
              ("too-many-pixels", encode(random_photo(80, 80), "PNG")),
              ("oversized-bytes", encode(random_photo(8, 8), "PNG") + rng.randbytes(MAX_BYTES)),
              ("empty", b""), ("one-byte", b"\x89"), ("png-magic-only", b"\x89PNG\r\n\x1a\n"),
              ("jpeg-magic-only", b"\xff\xd8\xff"), ("text", b"hello, not a picture"),
              ("html", b"<html><script>alert(1)</script></html>"), ("zip", b"PK\x03\x04" + bytes(100)),
              ("random", rng.randbytes(4096)), ("tiny-1x1", encode(Image.new("RGB", (1, 1)), "PNG")),
              ("wide-64x1", encode(Image.new("RGB", (64, 1)), "PNG")),
              ("tiff-huge-claim", encode(random_photo(8, 8), "TIFF").replace(b"\x08\x00\x00\x00", b"\xff\xff\x00\x00", 1))]
    return cases


def post(url: str, data: bytes, timeout: float = TIMEOUT) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, (json.loads(body) if e.headers.get("content-type", "").startswith("application/json")
                        else {"raw": body.decode(errors="replace")})


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_done(url: str, job: dict) -> dict:
    end = time.monotonic() + 120
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < end, job
        time.sleep(0.05)
        job = json.loads(get(f"{url}/api/jobs/{job['id']}")[1])
    return job


@pytest.fixture
def served(tmp_path, tiny_model_dir):
    """A server over the tiny model: start(limits) → its URL; results land in tmp_path/results."""
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.serve.app import create_app, serve_in_background

    pipe, stops = FMBoostPipeline.from_pretrained(tiny_model_dir), []
    (tmp_path / "results").mkdir()

    def start(limits, pipeline=None):
        app = create_app({"tiny": pipeline or pipe}, tmp_path / "results", limits)
        url, stop = serve_in_background(app)
        stops.append(stop)
        return url, app

    yield start
    for stop in stops:
        stop()


def test_every_hostile_upload_ends_in_a_message_or_a_valid_result(served, tmp_path):
    from fmboost.serve.app import Limits

    # Every job and result is kept (not only the newest 64); each is still checked as soon as it finishes.
    url, _ = served(Limits(max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, max_waiting=512, keep_results=1024))
    cases = mutants(random.Random(14))
    assert len(cases) >= 200
    flows = {name for name, _ in seeds()}  # the intact files run the flow; mutants the bicubic baseline (cheaper)
    answers = {}
    for name, data in cases:
        method = "cfm" if name in flows else "bicubic"
        status, body = post(f"{url}/api/upscale?steps=1&method={method}&name={name}", data)
        answers[name] = status
        assert status in (202, 400, 413, 415), (name, status, body)  # never 500
        if status != 202:
            message = body.get("error", "")
            assert message and "\n" not in message and "Traceback" not in message, (name, body)
            continue
        # Followed to its end as it goes: the server keeps only its newest finished jobs and results.
        job = wait_done(url, body)
        assert job["state"] in ("done", "error"), (name, job)
        if job["state"] == "error":
            assert job["message"] and "Traceback" not in job["message"], (name, job)
            continue
        status, png = get(f"{url}{job['result']}")
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
        assert status == 200 and (job["width"], job["height"]) == (im.width, im.height)
    assert answers["bomb-100k"] == 413 and answers["oversized-bytes"] == 413 and answers["png"] == 202
    assert get(f"{url}/healthz") == (200, b"ok")
    for path in (tmp_path / "results").iterdir():  # only whole results: no temporary or partial files
        assert path.suffix == ".png" and not path.name.startswith("."), path
        with Image.open(path) as im:
            im.verify()


class HeldPipeline:
    """The tiny model, held at its first job until `release` is set: the queue fills while it waits."""

    def __init__(self, pipe):
        self.pipe, self.release = pipe, threading.Event()
        self.model, self.config = pipe.model, pipe.config

    def __getattr__(self, name):  # objective, pad_multiple, auto_tile_size: the tiny model's
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):
        assert self.release.wait(60)
        return self.pipe(*args, **kwargs)


def test_fifty_concurrent_clients_are_all_answered_and_the_server_survives(served, tiny_model_dir):
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.serve.app import Limits

    held = HeldPipeline(FMBoostPipeline.from_pretrained(tiny_model_dir))
    queue_size, clients = 16, 50
    url, app = served(Limits(max_waiting=queue_size), held)
    photo = encode(random_photo(16, 16), "PNG")
    answers = [None] * clients

    def client(i):
        answers[i] = post(f"{url}/api/upscale?steps=1", photo)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT + 5)
    accepted = [body for status, body in answers if status == 202]
    busy = [body for status, body in answers if status == 503]
    assert len(accepted) + len(busy) == clients  # every request answered, nothing else
    # A full queue, and the running job (held) unless the worker had not yet taken the first one out of it.
    assert queue_size <= len(accepted) <= queue_size + 1
    assert all("busy" in body["error"] for body in busy)
    held.release.set()
    finished = [wait_done(url, job) for job in accepted]
    assert all(job["state"] == "done" and (job["width"], job["height"]) == (32, 32) for job in finished)
    assert get(f"{url}/healthz") == (200, b"ok")
    assert post(f"{url}/api/upscale?steps=1", photo)[0] == 202  # and takes work again

"""Robustness, measured: hundreds of damaged, truncated and oversized image files (seeded, made here) fed to
`fmboost upscale`. Each must end in one error line with exit code 2, or in a valid output — never a traceback,
a hang or a partial file."""
import io
import random
import signal
import struct
import warnings
import zlib

import pytest
from PIL import Image

from fmboost.cli.main import main
from tests.conftest import random_photo

SECONDS_PER_FILE = 120  # a hang fails the test instead of stalling CI (generous: CI machines are shared)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose header (with a valid CRC) claims width × height RGB pixels, followed by `idat`."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def decompression_bomb() -> bytes:
    """100 000 × 100 000 pixels claimed; the first megabyte of zero rows compresses to about a kilobyte."""
    return png_claiming(100_000, 100_000, zlib.compress(b"\x00" * (1 << 20), 9))


def originals() -> dict[str, bytes]:
    """Valid small images in the four formats (and a few modes) the mutations start from."""
    photo = random_photo(24, 32, seed=7)
    variants = {"png": (photo, "PNG", {}), "rgba.png": (photo.convert("RGBA"), "PNG", {}),
                "p.png": (photo.convert("P"), "PNG", {}), "jpg": (photo, "JPEG", {"quality": 90}),
                "prog.jpg": (photo, "JPEG", {"progressive": True}), "webp": (photo, "WEBP", {"quality": 80}),
                "tif": (photo, "TIFF", {}), "lzw.tif": (photo, "TIFF", {"compression": "tiff_lzw"})}
    out = {}
    for name, (im, fmt, kw) in variants.items():
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        out[name] = buf.getvalue()
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.choice(["truncate", "flip", "splat", "insert", "zero", "header"])
    if kind == "truncate":
        return bytes(b[: rng.randrange(1, len(b))])
    if kind == "flip":
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == "splat":
        at = rng.randrange(len(b))
        b[at: at + rng.randint(1, 64)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "insert":
        at = rng.randrange(len(b))
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 256)))
    elif kind == "zero":
        at = rng.randrange(len(b))
        b[at: at + rng.randint(1, 128)] = bytes(min(128, len(b) - at))
    else:  # the first 64 bytes hold the headers: sizes, modes, offsets
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(min(64, len(b)))] = rng.randrange(256)
    return bytes(b)


def fuzz_cases(n: int = 220, seed: int = 0) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    base = originals()
    names = sorted(base)
    cases = [(f"{i:03d}_{name}", mutate(base[name], rng)) for i, name in
             ((i, names[i % len(names)]) for i in range(n))]
    cases += [("bomb.png", decompression_bomb()),
              ("huge_header.png", png_claiming(60_000, 50, zlib.compress(b"\x00" * 1000))),
              ("over_limit.png", png_claiming(2000, 2000, zlib.compress(b"\x00" * (2000 * 6001)))),
              ("zero_size.png", png_claiming(0, 0, b"")),
              ("empty.jpg", b""), ("text.webp", b"RIFF....WEBPVP8 nothing here"),
              ("tiny.png", base["png"][:8])]
    return cases


class Hang(Exception):
    pass


def on_alarm(signum, frame):
    raise Hang()


def upscale_one(tmp_path, capsys, name: str, data: bytes, *flags) -> tuple[int, str]:
    src = tmp_path / "in" / name
    src.write_bytes(data)
    out = tmp_path / "out" / f"{src.stem}.png"
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(SECONDS_PER_FILE)
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")  # on the command line each would be one more line on stderr
            code = main(["upscale", str(src), "-o", str(out), *flags])
    except Hang:
        pytest.fail(f"{name}: no answer within {SECONDS_PER_FILE} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    _, err = capsys.readouterr()
    assert "Traceback" not in err, (name, err)
    assert not [w for w in warned if "PIL" in w.filename], (name, [str(w.message) for w in warned])
    if code == 0:
        with Image.open(out) as im:
            im.load()  # a valid, complete image
            assert im.width >= 2 and im.height >= 2
    else:
        assert code == 2, (name, code, err)
        assert len(err.strip().splitlines()) == 1 and "error" in err, (name, err)
        assert not out.exists(), name
    return code, err


def test_damaged_and_oversized_files_end_in_one_line_or_a_valid_image(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    codes = [upscale_one(tmp_path, capsys, name, data, "--method", "bicubic")[0] for name, data in fuzz_cases()]
    assert len(codes) >= 200
    assert codes.count(2) > 50 and codes.count(0) > 10  # both answers occur: the mutations bite, not all
    assert not list((tmp_path / "out").glob(".*.tmp")) if (tmp_path / "out").exists() else True


def test_the_bomb_and_oversized_headers_are_refused_before_decoding(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name, data in fuzz_cases()[-7:-3]:
        code, err = upscale_one(tmp_path, capsys, name, data, "--method", "bicubic")
        assert code == 2 and name in err


def test_damaged_files_through_the_embedded_model(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    cases = fuzz_cases(n=40, seed=1)
    picked = [c for c in cases[:40] if c[0].endswith(("png", "jpg", "webp", "tif"))][::6][:6]
    codes = [upscale_one(tmp_path, capsys, name, data, "--steps", "1")[0] for name, data in picked]
    assert len(codes) == 6
    assert not list((tmp_path / "out").glob(".*.tmp")) if (tmp_path / "out").exists() else True

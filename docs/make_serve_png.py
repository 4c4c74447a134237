"""Takes docs/serve.png, the README's screenshot of `fmboost serve`, from a real run in headless Chromium.

    python docs/make_serve_png.py                       # the embedded model, examples/astronaut.png
    python docs/make_serve_png.py --model DIR --image photo.png --out docs/serve.png

Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver) and selenium.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--window-size=960,1600")


def screenshot(url: str, image: Path, out: Path, profile: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url + "/")
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.getElementById('model').length"))
        driver.find_element(By.ID, "file").send_keys(str(image.resolve()))
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 600).until(lambda d: d.execute_script(
            "return !document.getElementById('result').hidden && document.getElementById('after').complete"))
        # The window is taller than the page; the empty part below is cropped away.
        height = driver.execute_script("return Math.ceil(document.documentElement.getBoundingClientRect().height)")
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    # 256 colours keep the README light; the page's flat colours survive it well.
    shot = Image.open(out).convert("RGB")
    shot.crop((0, 0, shot.width, min(shot.height, height + 16))).quantize(256).save(out, optimize=True)


def main() -> None:
    from fmboost import DEFAULT_MODEL
    from fmboost.pipelines.upscale import FMBoostPipeline
    from fmboost.serve.app import create_app, serve_in_background

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model folder (default: the embedded model)")
    p.add_argument("--name", default="default", help="its name in the model picker (default: default)")
    p.add_argument("--image", default=str(ROOT / "examples/astronaut.png"))
    p.add_argument("--out", default=str(ROOT / "docs/serve.png"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as results, tempfile.TemporaryDirectory() as profile:
        url, stop = serve_in_background(create_app({args.name: FMBoostPipeline.from_pretrained(args.model)}, results))
        try:
            screenshot(url, Path(args.image), Path(args.out), profile)
        finally:
            stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

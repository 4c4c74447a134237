"""The `real` model's sampling steps, chosen after its fine-tune on held-back training photos, never on BSD68/Set14.

    python recipes/real/choose_steps.py [--data ../shared/data] [--model fmboost/weights/real] [--steps 1,4]

Runs `fmboost eval` on the first 16 held-back photos (every 10th of train/ + train_hr/: the photos of
recipes/real/cascade.py), degraded ×2 by the seeded Real-ESRGAN pipeline, into results/real/heldback_steps.json.
The default's rule picks (docs/default_model.md): the highest PSNR; step counts within TIE_DB of it tie, and the tie
goes to fewer steps. The choice is written to the model's fmboost.json, and why to its training.json's
after_training.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from fmboost.cli.main import main as fmboost
from fmboost.data.model_config import ModelConfig
from fmboost.data.photos import split_photos

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
from doc_tables import TIE_DB  # noqa: E402

PHOTOS = 16


def choose(rows: list[dict]) -> dict:
    """The rule: rows of one model's flow at several step counts; the fewest steps within TIE_DB of the best."""
    top = max(r["psnr"] for r in rows)
    return min((r for r in rows if r["psnr"] >= top - TIE_DB), key=lambda r: r["steps"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data", help="holds train/ and train_hr/")
    p.add_argument("--model", default=str(ROOT / "fmboost" / "weights" / "real"))
    p.add_argument("--steps", default="1,4")
    p.add_argument("--photos", type=int, default=PHOTOS, help="the first N held-back photos (default: %(default)s)")
    p.add_argument("--results", default=str(ROOT / "results" / "real" / "heldback_steps.json"))
    args = p.parse_args(argv)
    _, held = split_photos([str(Path(args.data) / "train"), str(Path(args.data) / "train_hr")], 10)
    if len(held) < args.photos:
        print(f"{args.data}: {len(held)} held-back photos, {args.photos} needed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "heldback"
        photos.mkdir()
        for path in held[:args.photos]:
            shutil.copy(path, photos / path.name)
        code = fmboost(["eval", str(photos), "--model", args.model, "--methods", "cfm", "--steps", args.steps,
                        "--degradation", "realesrgan", "--seed", "0", "--metrics", "psnr,ssim,niqe",
                        "--out", str(Path(tmp) / "eval"), "--results-out", args.results,
                        "--tuned-on", f"the {args.photos} held-back training photos it chooses on"])
    if code:
        return code
    rows = json.loads(Path(args.results).read_text())["results"]
    pick = choose(rows)
    model = Path(args.model)
    ModelConfig.read(model).replace(steps=pick["steps"]).write(model)
    record = model / "training.json"
    made = json.loads(record.read_text()) if record.is_file() else {}
    scores = ", ".join(f"NFE {r['steps']} {r['psnr']:.3f} dB" for r in rows)
    made["after_training"] = {"steps": pick["steps"], "why": (
        f"on the {args.photos} held-back training photos degraded ×2 (seed 0), {scores}: the fewest steps within "
        f"{TIE_DB} dB of the best (results/real/heldback_steps.json)")}
    record.write_text(json.dumps(made, indent=2) + "\n")
    print(f"{model}: {pick['steps']} step(s) ({scores})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

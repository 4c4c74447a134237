"""The `fmboost` command: the parser and the dispatcher. Each command is one module of fmboost/cli/ with
`add_parser(subparsers)`, which sets `func`; user mistakes end in one line on stderr and exit code 2 (common.run)."""
from __future__ import annotations

import argparse
import sys

from fmboost.cli import degrade, eval, generate, info, prepare, serve, train, train_autoencoder, upscale
from fmboost.cli.common import run

COMMANDS = (upscale, prepare, train, info, eval, degrade, generate, serve, train_autoencoder)

from fmboost.cli import convert_compvis  # noqa: E402  (its own line: other commands are added above)

COMMANDS += (convert_compvis,)


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fmboost",
        description="Boost images and latent diffusion outputs to high resolution with coupling flow matching (CFM).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())

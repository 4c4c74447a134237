"""The `fmboost` command: the parser and the dispatcher. Each command is one module of fmboost/cli/ with
`add_parser(subparsers)`, which sets `func`; user mistakes end in one line on stderr and exit code 2 (common.run)."""
from __future__ import annotations

import argparse
import os
import sys

from fmboost import __version__
from fmboost.cli import degrade, eval, generate, info, prepare, serve, train, train_autoencoder, upscale
from fmboost.cli.common import run

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader left

COMMANDS = (upscale, prepare, train, info, eval, degrade, generate, serve, train_autoencoder)

from fmboost.cli import convert_compvis  # noqa: E402  (its own line: other commands are added above)

COMMANDS += (convert_compvis,)


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # --help, --version and usage errors exit here, as argparse does
    if extra:  # the command's own usage, not the top level's: that is where its flags are listed
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = run(args)
        sys.stdout.flush()  # here, so that a reader who left (`fmboost info | head`) is handled below
        return code
    except BrokenPipeError:
        # Whatever is left to print has no reader; point stdout at nothing so the exit flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fmboost",
        description="Boost images and latent diffusion outputs to high resolution with coupling flow matching (CFM).")
    p.add_argument("--version", action="version", version=f"fmboost {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    p.commands = sub.choices  # name → the command's parser, whose usage a mistake in its flags prints
    return p


if __name__ == "__main__":
    sys.exit(main())

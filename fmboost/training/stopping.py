"""How a training run stops when asked (SIGTERM from a scheduler, Ctrl-C): both trainers finish the step in flight,
write a checkpoint and stop, and the command exits with the shell's code for that signal."""
from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(Exception):
    """SIGTERM or SIGINT arrived: the step in flight was finished and checkpointed."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's "ended by this signal", so scripts do not carry on


@contextlib.contextmanager
def stop_signals():
    """Collects SIGTERM/SIGINT instead of dying, for the loop to finish its step, checkpoint and stop. Launchers
    (torchrun, Slurm) pass signals on to every process, some twice: later ones are collected too."""
    received = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield received
        return
    old = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def stopped(signum: int, step: int, where: str, how: str) -> TrainingStopped:
    name = signal.Signals(signum).name
    return TrainingStopped(signum, f"stopped by {name} at step {step}; checkpoint in {where} (continue with {how})")

"""Stopping a training run cleanly on SIGINT (Ctrl-C) and SIGTERM (``kill``, batch schedulers).

:class:`StopSignals` is installed by :meth:`iconet.engine.trainer.Trainer.fit` for the duration
of the loop only (the previous handlers come back afterwards). The first SIGINT or SIGTERM only
*asks* for a stop: the step in progress finishes, rank 0 writes ``checkpoints/last.pt``
atomically and ``fit`` raises :class:`TrainingInterrupted`, whose message names the command that
continues the run; ``iconet train`` prints it and exits with ``128 + signal`` (130, 143). A
second SIGINT aborts at once (``KeyboardInterrupt``; the last checkpoint written stays intact).

Handlers can only be installed from the main thread; elsewhere (a trainer run in a thread)
nothing is installed and signals keep their usual effect. DataLoader workers ignore SIGINT
(:func:`ignore_sigint` is their ``worker_init_fn``): a Ctrl-C reaches the whole process group,
and a worker ended by it would break the step the main process is finishing. They keep SIGTERM,
which the DataLoader itself uses to end a stuck worker; so a SIGTERM sent to *every* process of
the job (as some batch schedulers do) can end the workers before the main process has finished
its step, and the run then resumes from its last periodic checkpoint. With
``data.num_workers: 0``, or a SIGTERM to the main process alone (``kill PID``, torchrun's
forwarding), the stop is always clean.
"""

from __future__ import annotations

import shlex
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

#: the signals that ask a run to stop
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


def resume_command(out: str | Path, nproc: int = 1) -> str:
    """The command that continues the run in ``out`` exactly (``RUN/config.yaml`` holds the
    whole resolved recipe, overrides included, so no CONFIG argument is needed)."""
    run = shlex.quote(str(out))
    if nproc > 1:
        return f"torchrun --nproc_per_node={nproc} -m iconet train --resume {run}"
    return f"iconet train --resume {run}"


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped on a signal after a whole step, its state saved.

    A ``KeyboardInterrupt``: code that catches ``Exception`` does not swallow it, and a caller
    that does not know it (e.g. ``iconet ablate``) ends as on Ctrl-C (exit 130).

    Attributes:
        signum: the signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
        step: optimiser steps done (the checkpoint's step).
        checkpoint: ``RUN/checkpoints/last.pt`` (on rank 0; ``None`` on other ranks).
        command: the command that continues the run.
        exit_code: ``128 + signum``, the shell's convention (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, step: int, steps: int, checkpoint: Path | None, command: str) -> None:
        self.signum, self.step, self.steps, self.checkpoint, self.command = int(signum), step, steps, checkpoint, command
        self.exit_code = 128 + int(signum)
        name = signal.Signals(self.signum).name
        saved = f"saved {checkpoint}" if checkpoint is not None else "rank 0 saved the checkpoint"
        super().__init__(f"stopped by {name} after step {step} of {steps}; {saved}; continue with: {command}")


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`signum` instead of killing.

    ``requested`` tells the loop to stop after the current step. A second SIGINT while a stop is
    pending raises ``KeyboardInterrupt`` (and restores the previous handlers first).
    """

    def __init__(self) -> None:
        self.signum: int = 0
        self._old: dict[signal.Signals, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum != 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum and signum == signal.SIGINT:
            self._restore()
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def __enter__(self) -> StopSignals:
        self.signum = 0
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old.clear()

    def __exit__(self, *exc: object) -> None:
        self._restore()


def ignore_sigint(_worker_id: int = 0) -> None:
    """``worker_init_fn`` of the training DataLoader: its workers ignore SIGINT (a Ctrl-C is
    for the main process, which finishes its step and then ends them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

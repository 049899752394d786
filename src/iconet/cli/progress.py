"""Progress bars of the ``iconet`` commands: tqdm on stderr, on a terminal only.

A bar is shown when stderr is a terminal and ``--quiet`` was not given; in a pipe or a log file
it stays silent (tqdm's ``disable=None``), so stdout and stderr carry only the result lines.

Two things tqdm does not do on its own, both of which left a long ``iconet infer`` silent:

* A terminal that reports no size (a pseudo-terminal opened without one: some containers, CI
  runners, editors, remote shells and agent harnesses) makes tqdm hide every bar (it takes the
  terminal for -1 rows high and -1 columns wide), so the bar is drawn for a terminal of
  :data:`FALLBACK_SIZE` there.
* tqdm redraws only on an update, and one update may be a whole batch of slices through a
  network (tens of seconds on a CPU). The bar is redrawn every :data:`TICK_SECONDS` from a
  background thread, so its elapsed time moves while the first batch runs and a phase shown
  in its description (``loading model``, ``reading``) is visible at once.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

#: (columns, rows) assumed for a terminal that reports a size of 0
FALLBACK_SIZE = (80, 24)
#: seconds between two redraws of an open bar (elapsed time and rate keep moving)
TICK_SECONDS = 1.0


def add_quiet(parser: Any) -> None:
    """The ``--quiet`` option of a command that shows progress bars."""
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar (none is shown in a pipe or log file either)")


def _size() -> dict[str, int]:
    """tqdm's ``ncols``/``nrows`` where stderr is a terminal that reports a size of 0 (else
    nothing: tqdm measures the terminal itself)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file, or not a terminal
        return {}
    if size.columns > 1 and size.lines > 1:
        return {}
    cols, rows = shutil.get_terminal_size(FALLBACK_SIZE)  # $COLUMNS / $LINES, else the fallback
    return {"ncols": cols if size.columns <= 1 else size.columns, "nrows": rows if size.lines <= 1 else size.lines}


def _tick(bar: tqdm, stop: threading.Event) -> None:
    while not stop.wait(TICK_SECONDS):
        bar.refresh()


@contextmanager
def progress_bar(total: float | None = None, *, desc: str = "", unit: str = "it", quiet: bool = False,
                 leave: bool = False, **kwargs: Any) -> Iterator[tqdm]:
    """A tqdm bar on stderr, shown only on a terminal and without ``quiet``; closed on exit.

    ``total=None`` shows a counter and the elapsed time (set ``bar.total`` or call
    ``bar.reset(total=n)`` once the amount of work is known). Extra keyword arguments go to tqdm.
    Print result lines with :func:`say` while a bar is open, so they do not cut through it.
    """
    bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr,
               disable=True if quiet else None, **{**_size(), **kwargs})
    stop = threading.Event()
    ticker = None
    if not bar.disable:
        ticker = threading.Thread(target=_tick, args=(bar, stop), daemon=True, name="iconet-progress")
        ticker.start()
    try:
        yield bar
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        bar.close()


def say(line: str, *, err: bool = False) -> None:
    """Print one result line to stdout (stderr with ``err``) without breaking an open bar."""
    tqdm.write(line, file=sys.stderr if err else sys.stdout)

"""Progress bars of iconet: tqdm on stderr, on a terminal only.

Used by the ``iconet`` commands and by the library's long work (training, the through-plane fit
of ``make_isotropic`` and its application). A bar is shown when stderr is a terminal (and, in the
commands, ``--quiet`` was not given); in a pipe or a log file it stays silent (tqdm's
``disable=None``), so stdout and stderr carry only the result lines. ``disable=False`` shows it
everywhere (the trainer's ``run.progress``), ``disable=True`` nowhere. In a Jupyter notebook
tqdm's own widget is used (``tqdm.auto``).

Two things tqdm does not do on its own, both of which left a long ``iconet infer`` silent:

* A terminal that reports no size (a pseudo-terminal opened without one: some containers, CI
  runners, editors, remote shells and agent harnesses) makes tqdm hide every bar (it takes the
  terminal for -1 rows high and -1 columns wide), so the bar is drawn for a terminal of
  :data:`FALLBACK_SIZE` there (and ``dynamic_ncols``, which would measure it again, is dropped).
* tqdm redraws only on an update, and one update may be a whole batch of slices through a
  network (tens of seconds on a CPU). On a terminal the bar is redrawn every
  :data:`TICK_SECONDS` from a background thread, so its elapsed time moves while the first batch
  runs and a phase shown in its description (``loading model``, ``reading``) is visible at once.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import Any

from tqdm.auto import tqdm

#: (columns, rows) assumed for a terminal that reports a size of 0
FALLBACK_SIZE = (80, 24)
#: seconds between two redraws of an open bar (elapsed time and rate keep moving)
TICK_SECONDS = 1.0


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


def _tick(bar: tqdm) -> None:
    """Redraw ``bar`` every :data:`TICK_SECONDS` until it is closed (tqdm's ``close`` sets
    ``disable``; the check and the redraw hold the bar's lock, so no redraw follows the close)."""
    lock = bar.get_lock()
    while True:
        time.sleep(TICK_SECONDS)
        with lock:
            if bar.disable:
                return
            bar.refresh(nolock=True)


def progress_bar(total: float | None = None, *, desc: str = "", unit: str = "it", quiet: bool = False,
                 leave: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, shown only on a terminal and without ``quiet``.

    Use it in a ``with`` block, or call ``bar.close()`` when done (a bar left open keeps its
    redraw thread). ``total=None`` shows a counter and the elapsed time (set ``bar.total`` or
    call ``bar.reset(total=n)`` once the amount of work is known). Extra keyword arguments go to
    tqdm; ``disable`` among them is tqdm's (``None``: on a terminal only, the default; ``False``:
    also in a pipe or log file), overruled by ``quiet``. Print result lines with :func:`say`
    while a bar is open, so they do not cut through it.
    """
    size = _size()
    if size:
        kwargs.pop("dynamic_ncols", None)  # it would take the 0 x 0 terminal's size again
    disable = kwargs.pop("disable", None)
    bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, disable=True if quiet else disable,
               **{**size, **kwargs})
    if not bar.disable and getattr(sys.stderr, "isatty", lambda: False)():
        threading.Thread(target=_tick, args=(bar,), daemon=True, name="iconet-progress").start()
    return bar


def say(line: str, *, err: bool = False) -> None:
    """Print one result line to stdout (stderr with ``err``) without breaking an open bar."""
    tqdm.write(line, file=sys.stderr if err else sys.stdout)

"""Checkpoints: one dict of ``weights_only``-safe types, written atomically.

Format ``iconet-checkpoint/1`` (every value a tensor, dict, list, tuple, str, int, float,
bool or None, so ``torch.load(path, weights_only=True)`` reads it)::

    {"format":    "iconet-checkpoint/1",
     "step":      int,                      # optimiser steps done
     "model":     state_dict,               # the unwrapped model (no DDP/compile prefixes)
     "ema":       state_dict | None,        # same keys as "model"
     "optimizer": optimizer.state_dict(),
     "scheduler": LambdaLR.state_dict(),
     "scaler":    GradScaler.state_dict() | None,
     "rng":       {"torch": ByteTensor, "cuda": [ByteTensor, ...], "numpy": [str, [int...], int, int, float],
                   "python": [int, [int...], float | None], "generators": {name: ByteTensor}},
     "sampler":   {"epoch": int, "position": int, "seed": int, "world_size": int, "mode": str,
                   "num_samples": int},
     "config":    TrainConfig as plain data (iconet.config.to_dict),
     "metrics":   {"last": {key: float, "protocol": str}, "best": {key: float, "step": int, ...},
                   "train_pending": {"count": int, "sums": {loss term: tensor}}},  # since the last
                                            # train.jsonl row (optional; absent in older files)
     "hardware":  {"device", "processor", "world_size", "precision", "torch", "train_seconds"}}

Run folder: ``RUN/config.yaml``, ``RUN/command.txt``, ``RUN/checkpoints/last.pt``,
``RUN/checkpoints/best.pt``, ``RUN/metrics.jsonl``, ``RUN/train.jsonl``, ``RUN/tb/``.
``last.pt`` is written every ``run.ckpt_every`` steps, at the end, and when the run is stopped
by SIGINT/SIGTERM (:mod:`iconet.engine.interrupt`); a resumed run first cuts both logs back to
its checkpoint's step (:func:`truncate_log`), so they read as one run.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "iconet-checkpoint/1"
KEYS = ("format", "step", "model", "ema", "optimizer", "scheduler", "scaler", "rng", "sampler", "config", "metrics",
        "hardware")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: ``path.tmp`` in the same folder, flushed and
    fsynced, then ``os.replace`` (a crash leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    missing = [k for k in KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - some file systems refuse directory fsync
        pass
    return path


def _replace(tmp: Path, path: Path) -> None:
    """``os.replace`` (a seam for tests that simulate a crash)."""
    os.replace(tmp, path)


def truncate_log(path: str | Path, step: int) -> int:
    """Keep only the rows of a JSON-lines run log (``train.jsonl``, ``metrics.jsonl``) whose
    ``"step"`` is at most ``step``, so that a run resumed from a checkpoint of that step does not
    list the steps between the checkpoint and the kill twice. A row cut short by the kill (not
    valid JSON) goes too. Rewritten atomically (a temporary file, then ``os.replace``), and only
    when something is dropped. Returns the number of rows dropped (0 when the file is missing).
    """
    path = Path(path)
    if not path.is_file():
        return 0
    keep: list[str] = []
    dropped = 0
    for line in path.read_text().splitlines():
        try:
            row_step = json.loads(line).get("step")
        except (json.JSONDecodeError, AttributeError):
            row_step = None
        if isinstance(row_step, int) and row_step <= step:
            keep.append(line)
        elif line.strip():
            dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text("".join(f"{line}\n" for line in keep))
            _replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return dropped


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no pickle runs code) and check its format:
    the one reader of the training engine (resume), ``iconet ablate`` and ``iconet export``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an ``iconet-checkpoint/1`` file (one line: unreadable, no format tag,
            or another format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a readable weights-only checkpoint ({first})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: format tag missing (a {type(state).__name__}, not an {FORMAT} dict)")
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: format {state.get('format')!r} is not {FORMAT!r}")
    return state


# ----------------------------------------------------------------------------- RNG states


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every RNG's state as ``weights_only``-safe data (see the module docstring)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": [str(np_state[0]), np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where devices exist)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    for k, g in (generators or {}).items():
        if k in state.get("generators", {}):
            g.set_state(state["generators"][k])

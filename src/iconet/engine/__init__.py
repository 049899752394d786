"""Training engine: typed recipes, the training loop, checkpoints, EMA, schedules, DDP helpers.

Import what you need from the submodules (``iconet.engine.trainer`` pulls in the data layer);
this package itself imports nothing heavy.
"""

from __future__ import annotations

__all__ = ["checkpoint", "config", "distributed", "ema", "schedule", "trainer"]

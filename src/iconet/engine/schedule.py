"""Learning-rate schedules: linear warm-up, then cosine, step decay or constant.

The schedule is a picklable callable object inside a ``LambdaLR``, so
``scheduler.state_dict()`` holds plain numbers (``last_epoch``, ``base_lrs`` and this
object's fields) and a resumed run continues at exactly the same learning rate.
"""

from __future__ import annotations

import bisect
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from iconet.engine.config import ScheduleConfig


class WarmupSchedule:
    """Multiplier of the base learning rate at optimiser step ``t`` (0-based).

    ``warmup``: ``(t + 1) / warmup_steps`` for ``t < warmup_steps``; then, with
    ``u = (t - warmup) / max(1, total - warmup)`` clipped to [0, 1]:

    - ``cosine``: ``m + (1 - m) · (1 + cos(pi·u)) / 2`` with ``m = min_lr / lr``;
    - ``step``: ``gamma ** (number of milestones <= t)``;
    - ``constant``: 1.
    """

    def __init__(self, cfg: ScheduleConfig, total_steps: int, base_lr: float) -> None:
        self.kind = cfg.kind
        self.warmup_steps = int(cfg.warmup_steps)
        self.total_steps = int(total_steps)
        self.floor = float(cfg.min_lr) / float(base_lr)
        self.milestones = [int(m) for m in cfg.milestones]
        self.gamma = float(cfg.gamma)

    def __call__(self, t: int) -> float:
        if t < self.warmup_steps:
            return (t + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** bisect.bisect_right(self.milestones, t)
        u = (t - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        u = min(max(u, 0.0), 1.0)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * u))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, base_lr: float
) -> LambdaLR:
    """A ``LambdaLR`` over :class:`WarmupSchedule`; call ``scheduler.step()`` once per optimiser step."""
    return LambdaLR(optimizer, WarmupSchedule(cfg, total_steps, base_lr))

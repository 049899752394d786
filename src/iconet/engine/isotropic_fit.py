"""Fit a through-plane ICONet to one scan, on a time budget (:mod:`iconet.isotropic` calls it).

The model is the registry's ICONet with ``through_plane=True`` (height-only 2x stages), trained
on :class:`~iconet.data.plane_pairs.InPlanePairs` with the multi-stage loss
(:func:`iconet.losses.multistage_loss`: every stage's SR output against the in-plane slice on
its grid, the reconstruction branch against the unblurred samples on its input grid), AdamW,
linear warm-up then cosine decay, gradient clipping, an EMA of the weights (the EMA is what is
returned), autocast (:func:`iconet.runtime.autocast`) and channels-last.

Budget and reproducibility: the fit runs :data:`CALIBRATION_STEPS` steps, measures their speed,
and then fixes the total number of steps that fit ``minutes`` (rounded down to a multiple of
:data:`STEP_QUANTUM`, at least :data:`MIN_STEPS`); the learning-rate schedule is a function of
that total only. The budget is a deadline: if the steps slow down later (another job starts on
the machine), the total shrinks so that the fit still ends within the budget
(:func:`replan_steps`); it never grows. ``steps=`` fixes the total instead, and then the same seed on the same device
(same thread count) gives the same weights bit for bit; with a time budget it does whenever the
planned total comes out the same (``FitResult.steps`` says what it was, so it can be repeated).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from iconet.data.plane_pairs import InPlanePairs
from iconet.engine.ema import EMA
from iconet.losses import LossConfig, multistage_loss
from iconet.models import build_model
from iconet.models.base import SRModel
from iconet.ops.rows import resample_rows
from iconet.progress import progress_bar
from iconet.runtime import autocast

CALIBRATION_STEPS = 10
STEP_QUANTUM = 10
MIN_STEPS = 20
#: with a time budget, the plan is checked every this many steps (:func:`replan_steps`)
REPLAN_EVERY = 20
#: how far past the budget the projected end may go before the plan shrinks
REPLAN_SLACK = 0.05


@dataclass
class FitConfig:
    """The through-plane model and its training recipe (defaults: benchmarks/isotropic_design.py).

    Attributes:
        width, groups_per_stage, blocks_per_group, heads: the ICONet's size (see
            :class:`~iconet.models.iconet.ICONetConfig`).
        out_rows: output rows of a training patch (input rows = out_rows / scale, at least 8).
        columns: columns of a training patch.
        batch: patches per step.
        lr: peak learning rate (AdamW, betas 0.9/0.99); warmup_steps: linear warm-up (must
            cover the calibration steps, so the planned total never changes them).
        min_lr_fraction: the cosine decays to this fraction of ``lr``.
        rec_weight: weight of the reconstruction terms of the loss.
        ema_decay: decay of the weights' moving average.
        grad_clip: gradient-norm clip.
        focus: fraction of patches drawn where the scan has structure
            (:class:`~iconet.data.plane_pairs.PairGeometry`).
    """

    width: int = 32
    groups_per_stage: int = 1
    blocks_per_group: int = 2
    heads: int = 4
    out_rows: int = 64
    columns: int = 64
    batch: int = 12
    lr: float = 1e-3
    warmup_steps: int = 20
    min_lr_fraction: float = 0.05
    rec_weight: float = 0.5
    ema_decay: float = 0.99
    grad_clip: float = 1.0
    focus: float = 0.5

    def __post_init__(self) -> None:
        if self.warmup_steps < CALIBRATION_STEPS:
            raise ValueError(f"warmup_steps must cover the {CALIBRATION_STEPS} calibration steps")

    def input_rows(self, scale: int) -> int:
        return max(8, self.out_rows // scale)


def model_section(scale: int, cfg: FitConfig) -> dict[str, Any]:
    """The ICONet ``model`` section of a through-plane model of ``scale`` (nothing clamped:
    the scan's values may be negative)."""
    return {"name": "iconet", "scale": int(scale), "in_channels": 1, "grid": "kspace", "through_plane": True,
            "width": cfg.width, "groups_per_stage": cfg.groups_per_stage, "blocks_per_group": cfg.blocks_per_group,
            "heads": cfg.heads, "nonnegative": False}


@dataclass
class FitResult:
    """A fitted model (EMA weights, ``eval()``) and how the fit went."""

    model: SRModel
    steps: int
    seconds: float
    loss_first: float  # mean training loss of the first 10 % of steps
    loss_last: float  # mean training loss of the last 10 % of steps
    history: list[float] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": round(self.seconds, 2),
                "loss_first": self.loss_first, "loss_last": self.loss_last}


def _to(batch: dict[str, list[np.ndarray]], device: torch.device) -> dict[str, list[torch.Tensor]]:
    return {k: [torch.from_numpy(a).to(device).contiguous(memory_format=torch.channels_last) for a in v]
            for k, v in batch.items()}


def final_coords(n_out_rows: int, final_step: float, n_final: int) -> torch.Tensor:
    """Row coordinates in the model's output of the ``n_final`` rows of the output grid."""
    c = torch.arange(n_final, dtype=torch.float64) * final_step
    if n_final and float(c[-1]) > n_out_rows - 1 + 1e-9:
        raise ValueError("output grid reaches past the model's output")
    return c


def loss_of(model: SRModel, batch: dict[str, list[torch.Tensor]], loss_cfg: LossConfig,
            final_step: float | None) -> torch.Tensor:
    """The training loss of one batch (``final`` present: the last stage is scored after
    resampling onto the output grid, in place of its own grid)."""
    out = model(batch["input"][0])
    targets = {"hr": batch["hr"], "clean": batch["clean"]}
    total, _ = multistage_loss(out, targets, loss_cfg)
    if final_step is not None:
        final = batch["final"][0]
        sr = resample_rows(out["sr"][-1].float(), final_coords(out["sr"][-1].shape[-2], final_step, final.shape[-2]))
        total = total + torch.nn.functional.l1_loss(sr, final)
    return total


def replan_steps(step: int, total: int, elapsed: float, minutes: float) -> int:
    """The planned ``total`` after ``step`` steps in ``elapsed`` seconds: unchanged while the
    fit is on time; when steps have slowed (a machine that got busier) so that the rest would
    end more than :data:`REPLAN_SLACK` past the budget, the most steps that end within it at
    the average speed so far (never fewer than ``step + 1``, never more than ``total``).
    The schedule follows the new total (:func:`_lr_factor` is a function of it)."""
    per_step = elapsed / max(step, 1)
    if elapsed + (total - step) * per_step <= minutes * 60.0 * (1.0 + REPLAN_SLACK):
        return total
    left = max(minutes * 60.0 - elapsed, 0.0)
    return max(step + 1, min(total, step + int(left / per_step)))


def plan_steps(seconds_per_step: float, minutes: float) -> int:
    """Total steps that fit ``minutes`` at ``seconds_per_step`` (multiple of STEP_QUANTUM, >= MIN_STEPS)."""
    n = int(minutes * 60.0 / max(seconds_per_step, 1e-6))
    return max(MIN_STEPS, (n // STEP_QUANTUM) * STEP_QUANTUM)


def fit_through_plane(
    pairs: InPlanePairs,
    *,
    cfg: FitConfig,
    minutes: float,
    steps: int | None = None,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
    progress: bool | None = None,
    desc: str = "fit",
) -> FitResult:
    """Train a through-plane ICONet of ``pairs.g.scale`` on ``pairs``.

    Args:
        pairs: the scan's training pairs.
        cfg: model size and recipe.
        minutes: wall-clock budget of the training steps (data included), used when ``steps``
            is ``None``.
        steps: fix the number of steps instead (reproducible to the bit; see the module doc).
        seed: seeds the initialisation (``torch.manual_seed``) and the pairs (numpy Generator).
        device, precision: where and how (``"fp32"``, ``"bf16"``, ``"fp16"`` autocast).
        progress: tqdm bar with loss and time left (``None``: only on a terminal).
    """
    scale = pairs.g.scale
    torch.manual_seed(seed)
    model = build_model(model_section(scale, cfg)).to(device).to(memory_format=torch.channels_last)
    model.train()
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    loss_cfg = LossConfig(rec_weight=cfg.rec_weight,
                          sr_weights=[1.0] * (pairs.g.stages - 1) + [0.0 if pairs.final_step else 1.0])
    rng = np.random.default_rng(seed)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    total = steps
    history: list[float] = []
    t0 = time.perf_counter()
    bar = progress_bar(total, desc=desc, unit="step", disable=None if progress is None else not progress,
                       dynamic_ncols=True)
    step = 0
    budgeted = total is None
    try:
        while total is None or step < total:
            if total is None and step == CALIBRATION_STEPS:
                total = plan_steps((time.perf_counter() - t0) / step, minutes)
                bar.total = total
                bar.refresh()
            elif budgeted and step > CALIBRATION_STEPS and step % REPLAN_EVERY == 0:
                total = replan_steps(step, total, time.perf_counter() - t0, minutes)
                bar.total = total
            lr = cfg.lr * _lr_factor(step, total, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = _to(pairs.sample(rng, cfg.batch), device)
            with autocast(device, precision):
                loss = loss_of(model, batch, loss_cfg, pairs.final_step)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
            ema.update(model, step)
            history.append(float(loss.detach()))
            step += 1
            bar.update(1)
            if step % 5 == 0:
                bar.set_postfix(loss=f"{np.mean(history[-20:]):.4f}", refresh=False)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    ema.copy_to(model)
    model.eval()
    k = max(1, len(history) // 10)
    return FitResult(model=model, steps=step, seconds=seconds, loss_first=float(np.mean(history[:k])),
                     loss_last=float(np.mean(history[-k:])), history=history)


def _lr_factor(step: int, total: int | None, cfg: FitConfig) -> float:
    """Linear warm-up over ``cfg.warmup_steps``, then cosine down to ``cfg.min_lr_fraction``."""
    if step < cfg.warmup_steps or total is None:
        return (step + 1) / cfg.warmup_steps
    u = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * u))


__all__ = ["FitConfig", "FitResult", "fit_through_plane", "model_section", "plan_steps", "replan_steps"]

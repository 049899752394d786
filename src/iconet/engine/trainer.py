"""The training loop: datasets, model, loss, optimiser, schedule, EMA, validation, checkpoints.

``Trainer(cfg).fit()`` trains a :class:`~iconet.engine.config.TrainConfig` recipe; ``iconet
train`` is a thin layer over it. What it does, in order:

1. checks the output folder (refuses one holding another run unless resuming or
   ``run.overwrite``), finds the cases (:func:`iconet.data.layouts.find_cases`), splits them by
   subject and builds the slice datasets (training: random HR patches degraded with
   ``cfg.degradation``; validation: whole slices with the seeded per-volume mask);
2. joins the process group given by ``torchrun`` (:mod:`iconet.engine.distributed`), seeds
   everything from ``run.seed`` and builds the model (:func:`iconet.models.build_model`),
   optionally channels-last, DDP-wrapped and compiled; a fine-tune (``model.init``, see
   :class:`~iconet.engine.config.TrainConfig`) then loads the init model's weights strictly,
   before the EMA and the validation copy are made (a resumed run takes its checkpoint's);
3. trains with AdamW/Adam, warm-up + schedule, gradient clipping, autocast (bf16 on CPUs with
   native bf16 and on recent GPUs, fp16 + ``GradScaler`` on older GPUs), the multi-stage loss
   with every term logged separately (plus a frozen teacher's outputs as extra targets when
   ``distill.teacher`` names one), and an EMA of the weights;
4. with ``run.val_at_start``, validates once before the first step (the step-0 row); then
   every ``run.val_every`` steps scores the EMA model per volume (:mod:`iconet.evaluation.metrics`),
   appends a row to ``metrics.jsonl``, writes TensorBoard scalars and an image panel when
   TensorBoard is installed, and keeps ``best.pt`` by ``run.best_metric``;
5. writes ``last.pt`` every ``run.ckpt_every`` steps, at the end, and when SIGINT/SIGTERM stops
   the run after the step in progress (rank 0 only, atomically; :mod:`iconet.engine.interrupt`).

A resumed run cuts ``train.jsonl`` and ``metrics.jsonl`` back to its checkpoint's step (rows the
killed run wrote after it would otherwise appear twice), and the checkpoint carries the
training-loss sums since the last logged row, so the resumed log equals the uninterrupted one.

Exact resume: the data order is a function of ``(seed, epoch, position)`` only (per-sample
generators in :class:`~iconet.data.datasets.SliceDataset`, a seeded
:class:`~iconet.engine.distributed.ShardSampler`, a private ``DataLoader`` generator reseeded per
epoch), and the checkpoint holds the model, optimiser, scheduler, scaler, EMA, every RNG and the
sampler position, so a run killed after a checkpoint and resumed ends with bit-identical weights.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from iconet.config import ConfigError, load_yaml, to_dict
from iconet.data.datasets import collate
from iconet.data.degrade import seed_from_name
from iconet.data.normalize import denormalize
from iconet.engine.data import build_datasets, find_split
from iconet.engine.checkpoint import (FORMAT, load_checkpoint, rng_state, save_checkpoint, set_rng_state,
                                      truncate_log)
from iconet.engine.config import MIN_LR_PATCH, TrainConfig
from iconet.runtime import autocast, machine_name, resolve_device, resolve_precision
from iconet.engine.distributed import ShardSampler, barrier, cleanup, gather_objects, init_distributed, shard_for_eval
from iconet.engine.ema import EMA
from iconet.engine.interrupt import StopSignals, TrainingInterrupted, ignore_sigint, resume_command
from iconet.engine.schedule import WarmupSchedule, build_scheduler
from iconet.losses import distillation_loss, multistage_loss, rec_stage_indices
from iconet.models import SRModel, build_model, saved_model_config
from iconet.progress import progress_bar

def _epoch_seed(seed: int, epoch: int) -> int:
    return seed_from_name(f"loader/{seed}/{epoch}")


def _diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


# ============================================================================ the trainer


class Trainer:
    """Builds everything from a :class:`TrainConfig` and trains.

    Every check that can fail on user input (data, splits, output folder, resume state) runs in
    the constructor, before any file is written and before any step.

    Args:
        cfg: the recipe (``cfg.run.out_dir`` is the run folder).
        resume: continue ``out_dir/checkpoints/last.pt`` exactly (model, optimiser,
            scheduler, EMA, scaler, every RNG, sampler position). The saved model config must
            equal ``cfg.model``.
        command: the command line recorded in ``command.txt``.

    Raises:
        ConfigError / ValueError / FileNotFoundError: one line saying what to fix.
    """

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, command: str | None = None) -> None:
        self.cfg = cfg
        run = cfg.run
        if run.threads:
            torch.set_num_threads(run.threads)
        self.device = resolve_device(run.device)
        self.precision = resolve_precision(run.precision, self.device, fp16_fallback=True)
        if self.device.type == "cuda":  # training patches have one size: let cuDNN pick its kernels once
            torch.backends.cudnn.benchmark = True
        self.out = Path(run.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.command = command
        resume_state = self._check_out_dir(resume)
        split = find_split(cfg.data)
        self.train_ds, self.val_ds, val_indices = build_datasets(cfg, split)
        self.dist = init_distributed(self.device)
        barrier(self.dist)  # every rank has checked the run folder before rank 0 writes to it
        rank, world = self.dist.rank, self.dist.world_size
        self.is_main = self.dist.is_main
        # stop flags travel on CPU (gloo) even when training runs on NCCL: no GPU sync per step
        self._signal_group = None
        if self.dist.distributed and torch.distributed.get_backend() != "gloo":
            self._signal_group = torch.distributed.new_group(backend="gloo")

        # ---- model, deterministic initialisation
        torch.manual_seed(run.seed)
        np.random.seed(run.seed % 2**32)
        random.seed(run.seed)
        self.model: SRModel = build_model(cfg.model).to(self.device)
        if cfg.init is not None and resume_state is None:
            self._load_init(cfg.init)  # before the EMA and validation copies: they start from it
        if run.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.eval_model = copy.deepcopy(self.model).eval()
        self.teacher = self._load_teacher(cfg.distill.teacher) if cfg.distill.teacher is not None else None
        self.ema = EMA(self.model, run.ema_decay) if run.ema_decay > 0 else None
        net: nn.Module = self.model
        if self.dist.distributed:
            net = DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.loss.rec_weight == 0,
            )
        self.net = torch.compile(net) if run.compile else net

        # ---- optimiser, schedule, scaler
        o = cfg.optim
        opt_cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                 weight_decay=o.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, run.steps, o.lr)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None

        # ---- data order
        subjects = [name for name, _ax, _k in self.train_ds.index]
        self.sampler = ShardSampler(subjects, rank, world, seed=run.seed, mode=cfg.data.shard)
        if self.sampler.num_samples < cfg.data.batch_size:
            raise ConfigError(
                f"each process gets {self.sampler.num_samples} training slice(s) per epoch, fewer than "
                f"data.batch_size={cfg.data.batch_size}; lower the batch size or add data"
            )
        self.loader_gen = torch.Generator()
        self.loader = DataLoader(
            self.train_ds, batch_size=cfg.data.batch_size, sampler=self.sampler, num_workers=cfg.data.num_workers,
            collate_fn=collate, drop_last=True, generator=self.loader_gen,
            pin_memory=self.device.type == "cuda", worker_init_fn=ignore_sigint,
        )
        self.val_indices = [val_indices[j] for j in shard_for_eval(
            [self.val_ds.index[i][0] for i in val_indices], rank, world)]
        self.val_keys = self._validation_keys()
        if (run.val_every or run.val_at_start) and run.best_metric not in self.val_keys:
            raise ConfigError(f"run.best_metric {run.best_metric!r} is not a validation key; choose one of: "
                              + ", ".join(k for k in self.val_keys if not k.endswith("_std")))

        # ---- state
        self.step = 0
        self.epoch = 0
        self.position = 0
        self.train_seconds = 0.0  # wall time of the training loop, summed over resumes
        self.metrics_last: dict[str, Any] = {}
        self.metrics_best: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self._log_sums: dict[str, torch.Tensor] = {}  # training-loss sums since the last train.jsonl row
        self._log_count = 0
        self._pending_log: dict[str, Any] = {"count": 0, "sums": {}}
        self._resumed_step: int | None = None  # the checkpoint's step until the logs are cut back to it
        if resume_state is not None:
            self._load_state(resume_state)
        self.writer: Any = None

    def _validation_keys(self) -> list[str]:
        """The keys :meth:`validate` reports for this model (from one forward pass on zeros)."""
        m = MIN_LR_PATCH
        with torch.no_grad():
            out = self.eval_model(torch.zeros(1, 1, m, m, device=self.device))
        stages = self.cfg.degradation.stages
        keys = ["val/loss", "val/volumes"]
        clean_sizes = [(m * 2**k, m * 2**k) for k in range(stages)]
        for kind in ("sr", "rec"):
            n = len(out.get(kind, []))
            ks = list(range(stages - n + 1, stages + 1))
            if kind == "rec":
                ks = [k + 1 for k in rec_stage_indices([tuple(t.shape[-2:]) for t in out.get("rec", [])], clean_sizes)]
            keys += [f"val/loss_{kind}_{k}" for k in ks]
            names = ([kind] if n else []) + ([f"{kind}_{k}" for k in ks] if stages > 1 else [])
            keys += [f"val/{n_}_{m_}{s_}" for n_ in names for m_ in ("psnr", "ssim", "nmse") for s_ in ("", "_std")]
        return keys

    # ------------------------------------------------------------------ output folder, resume
    def _check_out_dir(self, resume: bool) -> dict[str, Any] | None:
        """Refuse a folder holding another run (unless resuming or ``run.overwrite``); on
        resume, load ``last.pt`` and check that its model config is the one asked for. Every
        refusal names a command that works from here."""
        cfg, out = self.cfg, self.out
        last = self.ckpt_dir / "last.pt"
        resume_cmd = resume_command(out)
        if resume:
            if not out.is_dir():
                raise FileNotFoundError(f"{out}: run folder to resume not found; start a run there with: "
                                        f"iconet train CONFIG.yaml --out {shlex.quote(str(out))}")
            if not last.is_file():
                raise FileNotFoundError(self._no_checkpoint_message())
            state = load_checkpoint(last)
            saved = saved_model_config(state["config"].get("model", {}))
            diff = _diff_keys(saved, cfg.model)
            if diff:
                shown = ", ".join(f"model.{k} (saved {saved.get(k)!r}, asked {cfg.model.get(k)!r})" for k in diff)
                raise ConfigError(f"{out}: the saved model config differs from the one asked: {shown}; "
                                  f"continue the run as it was with: {resume_cmd}")
            saved_init = state["config"].get("init")
            if saved_init != cfg.init:
                raise ConfigError(
                    f"{out}: the run started from init {saved_init!r}, not {cfg.init!r}; a resumed run continues "
                    f"from its checkpoint, so give the same model.init (or none): {resume_cmd}"
                )
            if state["step"] >= cfg.run.steps:
                raise ConfigError(
                    f"{out}: the run already did {state['step']} of run.steps={cfg.run.steps}; to go on, raise "
                    f"run.steps, e.g. {resume_cmd} run.steps={state['step'] + cfg.run.steps}"
                )
            return state
        holds_run = (out / "config.yaml").exists() or last.exists() or (out / "metrics.jsonl").exists()
        if holds_run and not cfg.run.overwrite:
            same = ""
            try:
                saved_cfg = load_yaml(out / "config.yaml")
                same = " (a different config)" if saved_cfg != to_dict(cfg) else " (the same config)"
            except ConfigError:
                pass
            if not last.is_file():
                raise ConfigError(
                    f"{out} already holds a run{same} that stopped before its first checkpoint, so it cannot be "
                    "resumed; start it over by adding run.overwrite=true, remove the folder, or choose another --out"
                )
            raise ConfigError(
                f"{out} already holds a run{same}; continue it with: {resume_cmd}; or choose another --out, "
                "or add run.overwrite=true to start over"
            )
        return None

    def _no_checkpoint_message(self) -> str:
        """Why ``--resume`` cannot work on a folder without ``last.pt``, and what to run instead."""
        out = self.out
        q = shlex.quote(str(out))
        if (out / "config.yaml").is_file():
            return (f"{out}: no checkpoint to resume (no checkpoints/last.pt): the run stopped before its first one "
                    f"(written every run.ckpt_every steps and on Ctrl-C/SIGTERM); start it over with: "
                    f"iconet train {shlex.quote(str(out / 'config.yaml'))} run.overwrite=true (or remove {q})")
        return (f"{out}: holds no run to resume (no config.yaml, no checkpoints/last.pt); start one there with: "
                f"iconet train CONFIG.yaml --out {q}")

    def _load_init(self, source: str) -> None:
        """Load the weights of ``model.init`` (a shipped name or an exported folder, read with
        :func:`iconet.hub.load_model`: safetensors, format and shapes checked) strictly into
        ``self.model``. The global RNG is left as the seeded initialisation left it."""
        from iconet.hub import load_model

        try:
            with torch.random.fork_rng(devices=[]):  # building the hub's copy draws random numbers
                init_model, _info = load_model(source, device="cpu")
        except (OSError, ValueError) as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"model.init {source}: {msg}") from None
        try:
            self.model.load_state_dict(init_model.state_dict(), strict=True)
        except RuntimeError as err:
            raise ConfigError(f"model.init {source}: the weights do not load into model "
                              f"{self.cfg.model.get('name')!r}: {str(err).strip().splitlines()[0]}") from None

    def _load_teacher(self, source: str) -> nn.Module:
        """The frozen teacher of ``distill.teacher`` (read with :func:`iconet.hub.load_model`),
        on the run's device and memory format, in eval mode. The global RNG is left as it was."""
        from iconet.hub import load_model

        try:
            with torch.random.fork_rng(devices=[]):
                teacher, _info = load_model(source, device=self.device)
        except (OSError, ValueError) as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"distill.teacher {source}: {msg}") from None
        teacher.requires_grad_(False).eval()
        return teacher.to(memory_format=torch.channels_last) if self.cfg.run.channels_last else teacher

    def _load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # EMA switched on at resume: start from the current weights
                self.ema = EMA(self.model, self.cfg.run.ema_decay)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # the schedule follows the config asked now (a raised run.steps stretches the cosine);
        # LambdaLR.load_state_dict restored the saved fields, which equal these on an exact resume
        self.scheduler.lr_lambdas[0] = WarmupSchedule(self.cfg.schedule, self.cfg.run.steps, self.cfg.optim.lr)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        s = state["sampler"]
        self.epoch = int(s["epoch"])
        self.position = int(s["position"])
        if int(s.get("world_size", 1)) != self.dist.world_size or s.get("mode") != self.cfg.data.shard:
            # another world size: the per-rank orders differ; restart the epoch at the same share
            consumed = self.position * int(s.get("world_size", 1))
            self.position = min(consumed // self.dist.world_size, self.sampler.num_samples)
            self._warn("resumed with another world size or data.shard: the sample order is not exact")
        self.metrics_last = dict(state["metrics"].get("last", {}))
        self.metrics_best = dict(state["metrics"].get("best", {}))
        self.train_seconds = float((state.get("hardware") or {}).get("train_seconds", 0.0))
        pending = state["metrics"].get("train_pending") or {}
        self._log_sums = {k: v.to(self.device) for k, v in (pending.get("sums") or {}).items()}
        self._log_count = int(pending.get("count", 0))
        self._resumed_step = self.step
        self._rng_to_restore = state["rng"]

    def _warn(self, msg: str) -> None:
        if self.is_main:
            print(f"iconet: warning: {msg}", file=sys.stderr)

    def _prepare_out_dir(self) -> None:
        """Rank 0: create the run folder, write ``config.yaml`` and ``command.txt``, open TensorBoard."""
        if not self.is_main:
            return
        if self._resumed_step is not None:  # the logs read as one run: drop rows after the checkpoint
            for name in ("train.jsonl", "metrics.jsonl"):
                truncate_log(self.out / name, self._resumed_step)
            self._resumed_step = None
        elif self.cfg.run.overwrite and self.step == 0:
            for name in ("metrics.jsonl", "train.jsonl"):
                (self.out / name).unlink(missing_ok=True)
            for name in ("last.pt", "best.pt"):
                (self.ckpt_dir / name).unlink(missing_ok=True)
            for f in (self.out / "tb").glob("events.out.tfevents.*"):
                f.unlink()
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
        cmd = self.command or " ".join(sys.argv)
        with open(self.out / "command.txt", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} step {self.step}: {cmd}\n")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional
            self.writer = None
        else:
            self.writer = SummaryWriter(str(self.out / "tb"), purge_step=self.step or None)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint dict (format in :mod:`iconet.engine.checkpoint`)."""
        return {
            "format": FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state({"loader": self.loader_gen}),
            "sampler": {**self.sampler.state_dict(), "epoch": self.epoch, "position": self.position},
            "config": to_dict(self.cfg),
            "metrics": {"last": dict(self.metrics_last), "best": dict(self.metrics_best),
                        "train_pending": self._pending_log},
            "hardware": {
                "device": str(self.device), "processor": machine_name(self.device),
                "world_size": self.dist.world_size, "precision": self.precision,
                "torch": str(torch.__version__), "train_seconds": round(self.train_seconds, 1),
            },
        }

    def save(self, name: str = "last.pt") -> Path | None:
        """Rank 0 writes ``checkpoints/<name>`` atomically (other ranks return ``None``)."""
        if not self.is_main:
            return None
        return save_checkpoint(self.state_dict(), self.ckpt_dir / name)

    # ------------------------------------------------------------------ training
    def _batches(self) -> Iterator[dict[str, Any]]:
        """Endless batches; epoch and position are the trainer's (checkpointed) counters."""
        while True:
            self.train_ds.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch)
            self.sampler.set_position(min(self.position, self.sampler.num_samples))
            self.loader_gen.manual_seed(_epoch_seed(self.cfg.run.seed, self.epoch))
            yield from self.loader
            self.epoch += 1
            self.position = 0

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, non_blocking=True)
        if self.cfg.run.channels_last and t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One optimiser step on ``batch`` (from :func:`collate`); returns the detached loss
        ``"loss"``, every loss term (``sr_k``, ``rec_k``) and ``"grad_norm"`` (before clipping)
        when clipping is on. ``self.step_lr`` is the learning rate this step used."""
        self.net.train()
        lr = self._to_device(batch["lr"])
        targets = {"hr": [self._to_device(t) for t in batch["hr_stages"]],
                   "clean": [self._to_device(t) for t in batch["clean_stages"]]}
        with autocast(self.device, self.precision):
            out = self.net(lr)
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_out = self.teacher(lr)
        out = {k: [t.float() for t in v] for k, v in out.items()}
        loss, terms = multistage_loss(out, targets, self.cfg.loss)
        if self.teacher is not None:
            teacher_out = {k: [t.float() for t in v] for k, v in teacher_out.items()}
            kd, kd_terms = distillation_loss(out, teacher_out, targets, self.cfg.distill.weight, self.cfg.loss)
            loss = loss + kd
            terms.update(kd_terms)
        self.optimizer.zero_grad(set_to_none=True)
        logs = {"loss": loss.detach(), **terms}
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.cfg.optim.grad_clip > 0:
            logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.step_lr = float(self.optimizer.param_groups[0]["lr"])
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        self.step += 1
        self.position += self.cfg.data.batch_size
        return logs

    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``run.steps`` (or stop after step ``stop_at``, writing ``last.pt``: a
        controlled interruption, e.g. to test resuming). Returns the last validation row.

        SIGINT and SIGTERM (handlers installed for this call only, from the main thread; see
        :mod:`iconet.engine.interrupt`) stop the run after the step in progress: ``last.pt`` is
        written (rank 0, atomically; every rank stops at the same step) and
        :class:`~iconet.engine.interrupt.TrainingInterrupted` is raised, naming the command
        that continues the run; resuming from it is bit-identical to not stopping.
        """
        run = self.cfg.run
        end = run.steps if stop_at is None else min(stop_at, run.steps)
        self._prepare_out_dir()
        barrier(self.dist)
        if getattr(self, "_rng_to_restore", None) is not None:
            set_rng_state(self._rng_to_restore, {"loader": self.loader_gen})
            self._rng_to_restore = None
        bar = progress_bar(run.steps, initial=self.step, disable=not (self.is_main and run.progress),
                           dynamic_ncols=True, unit="step", desc="train", leave=True)
        batches = self._batches()
        try:
            with StopSignals() as signals:
                if run.val_at_start and self.step == 0 and not self.history and not self.metrics_last:
                    tick = time.perf_counter()
                    self._validate_and_record()  # the starting point (of a fine-tune) as the step-0 row
                    self.train_seconds += time.perf_counter() - tick
                    self._stop_if_asked(signals, saved=False)
                while self.step < end:
                    tick = time.perf_counter()
                    try:
                        batch = next(batches)
                    except Exception:  # noqa: BLE001 - a worker ended by the signal: stop at this boundary
                        if signals.requested and not self.dist.distributed:  # (no collective on one rank)
                            self._stop_if_asked(signals, saved=False)
                        raise
                    logs = self.train_step(batch)
                    for k, v in logs.items():
                        self._log_sums[k] = self._log_sums.get(k, 0) + v.detach().float()
                    self._log_count += 1
                    bar.update(1)
                    last_step = self.step == end
                    if (run.log_every and self.step % run.log_every == 0) or last_step:
                        means = self._log_train(self._log_sums, self._log_count)
                        bar.set_postfix(loss=f"{means['train/loss']:.4g}", lr=f"{means['lr']:.2e}")
                        self._log_sums, self._log_count = {}, 0
                    if run.val_every and (self.step % run.val_every == 0 or self.step == run.steps):
                        self.train_seconds += time.perf_counter() - tick  # wall time: steps and validation
                        tick = time.perf_counter()
                        self._validate_and_record()
                    self.train_seconds += time.perf_counter() - tick
                    saved = bool(run.ckpt_every and self.step % run.ckpt_every == 0) or last_step
                    if saved:
                        self._save_last()
                    if not last_step:
                        self._stop_if_asked(signals, saved=saved)
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.flush()
        return dict(self.metrics_last)

    def _save_last(self) -> None:
        """Every rank: agree on the pending log sums, then rank 0 writes ``last.pt``."""
        self._pending_log = self._reduced_log_sums()
        self.save("last.pt")
        barrier(self.dist)

    def _stop_signal(self, signals: StopSignals) -> int:
        """The stop signal received on any rank (0: none); every rank gets the same answer, so
        all stop after the same step."""
        if not self.dist.distributed:
            return signals.signum
        flag = torch.tensor([signals.signum], dtype=torch.int64)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self._signal_group)
        return int(flag.item())

    def _stop_if_asked(self, signals: StopSignals, *, saved: bool) -> None:
        """After a whole step: if a stop was asked for, write ``last.pt`` (unless this step just
        did) and raise :class:`TrainingInterrupted`."""
        signum = self._stop_signal(signals)
        if not signum:
            return
        if not saved:
            self._save_last()
        nproc = int(os.environ.get("LOCAL_WORLD_SIZE", self.dist.world_size))
        raise TrainingInterrupted(signum, self.step, self.cfg.run.steps,
                                  self.ckpt_dir / "last.pt" if self.is_main else None,
                                  resume_command(self.out, nproc))

    def _reduced_log_sums(self) -> dict[str, Any]:
        """The training-loss sums since the last ``train.jsonl`` row (mean over ranks), kept in
        the checkpoint so that the first row after a resume averages the same steps."""
        sums = {k: v.detach().float().cpu() for k, v in self._log_sums.items()}
        if self.dist.distributed and sums:
            keys = sorted(sums)
            vec = torch.stack([sums[k] for k in keys]).to(self.device)
            torch.distributed.all_reduce(vec)
            sums = dict(zip(keys, (vec / self.dist.world_size).cpu()))
        return {"count": self._log_count, "sums": sums}

    def _log_train(self, sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
        keys = sorted(sums)
        vec = torch.stack([sums[k] / count for k in keys]).to(self.device)
        if self.dist.distributed:
            torch.distributed.all_reduce(vec)
            vec /= self.dist.world_size
        vals = dict(zip(keys, vec.tolist()))
        if not math.isfinite(vals["loss"]):
            raise FloatingPointError(
                f"the training loss became {vals['loss']} at step {self.step}; lower optim.lr, set "
                "optim.grad_clip or use run.precision=fp32"
            )
        row = {f"train/{k}": v for k, v in vals.items()}
        row["lr"] = self.step_lr  # the learning rate of the last step taken
        if self.is_main:
            with open(self.out / "train.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, "epoch": self.epoch, "time": round(time.time(), 3), **row}) + "\n")
            if self.writer is not None:
                for k, v in row.items():
                    self.writer.add_scalar(k, v, self.step)
        return row

    # ------------------------------------------------------------------ validation
    def _validation_model(self) -> nn.Module:
        if self.ema is not None:
            self.ema.copy_to(self.eval_model)
        else:
            self.eval_model.load_state_dict(self.model.state_dict())
        return self.eval_model.eval()

    @torch.no_grad()
    def validate(self) -> tuple[dict[str, float], torch.Tensor | None]:
        """Score the (EMA) model on the whole validation slices of every rank.

        Each rank predicts the volumes :func:`shard_for_eval` gives it, stacks the slices of
        each (volume, axis) into a volume, undoes the normalisation and scores it with
        :func:`iconet.evaluation.metrics.evaluate_volume` (slices along axis 0); the rows are
        gathered and averaged over volumes. Keys: ``val/sr_{psnr,ssim,nmse}`` (final SR vs
        HR), ``val/rec_*`` (the first reconstruction the model gives, normally rec_1 vs CLEAN_0,
        for models with one), per stage
        ``val/sr_k_*`` / ``val/rec_k_*`` when there are several stages, ``val/loss`` and its
        terms ``val/loss_sr_k``, ``val/loss_rec_k``, and ``*_std`` (std over volumes).

        Returns:
            ``(row, panel)``: the averaged metrics (on every rank) and an image panel
            LR | REC | SR | HR | 4·|SR−HR| of the first slice, ``(1, H, 5W)`` in [0, 1]
            (rank 0; ``None`` elsewhere).
        """
        from iconet.evaluation.metrics import MetricProtocol, aggregate, evaluate_volume

        protocol = MetricProtocol(slice_axis=0)
        model = self._validation_model()
        stages = self.cfg.degradation.stages
        vols: dict[tuple[str, int], dict[str, list[np.ndarray]]] = {}
        norms: dict[tuple[str, int], dict[str, Any]] = {}
        loss_rows: list[dict[str, float]] = []
        panel = None
        for i in self.val_indices:
            s = self.val_ds[i]
            x = self._to_device(s["lr"][None])
            with autocast(self.device, self.precision):
                out = model(x)
            out = {k: [t.float() for t in v] for k, v in out.items()}
            targets = {"hr": [self._to_device(t[None]) for t in s["hr_stages"]],
                       "clean": [self._to_device(t[None]) for t in s["clean_stages"]]}
            loss, terms = multistage_loss(out, targets, self.cfg.loss)
            loss_rows.append({"loss": float(loss), **{f"loss_{k}": float(v) for k, v in terms.items()}})
            key = (s["volume"], s["axis"])
            norms[key] = s["norm"]
            acc = vols.setdefault(key, {})
            srs, recs = out["sr"], out.get("rec", [])
            for j, t in enumerate(srs):
                k = stages - len(srs) + j
                acc.setdefault(f"sr_{k + 1}", []).append(t[0, 0].cpu().numpy())
                acc.setdefault(f"hr_{k + 1}", []).append(s["hr_stages"][k][0].numpy())
            rec_ks = rec_stage_indices([tuple(t.shape[-2:]) for t in recs],
                                       [tuple(t.shape[-2:]) for t in s["clean_stages"]])
            for t, k in zip(recs, rec_ks):
                acc.setdefault(f"rec_{k + 1}", []).append(t[0, 0].cpu().numpy())
                acc.setdefault(f"clean_{k + 1}", []).append(s["clean_stages"][k][0].numpy())
            if panel is None and self.is_main:
                panel = self._panel(s, out)
        rows = []
        for key, acc in vols.items():
            row: dict[str, float] = {}
            rec_ks = [int(n.split("_")[1]) for n in acc if n.startswith("rec_")]
            for name in [n for n in acc if n.startswith(("sr_", "rec_"))]:
                kind, k = name.split("_")
                ref_name = ("hr_" if kind == "sr" else "clean_") + k
                pred = denormalize(np.stack(acc[name]).astype(np.float64), norms[key])
                ref = denormalize(np.stack(acc[ref_name]).astype(np.float64), norms[key])
                scores = evaluate_volume(pred, ref, protocol)
                for m, v in scores.items():
                    if stages > 1:
                        row[f"{kind}_{k}_{m}"] = v
                    # headline keys: the final SR; the first reconstruction (of the input)
                    if (kind == "sr" and int(k) == stages) or (kind == "rec" and int(k) == min(rec_ks)):
                        row[f"{kind}_{m}"] = v
            rows.append(row)
        all_rows = [r for part in gather_objects(rows, self.dist) for r in part]
        all_losses = [r for part in gather_objects(loss_rows, self.dist) for r in part]
        result: dict[str, float] = {}
        for k, (mean, std) in aggregate(all_rows).items():
            result[f"val/{k}"] = mean
            result[f"val/{k}_std"] = std
        for k, (mean, _std) in aggregate(all_losses).items():
            result[f"val/{k}"] = mean
        result["val/volumes"] = float(len(all_rows))
        self.protocol_text = protocol.describe()
        return result, panel

    def _panel(self, s: dict[str, Any], out: dict[str, list[torch.Tensor]]) -> torch.Tensor:
        hr = s["hr"][0]
        H, W = hr.shape
        up = lambda t: F.interpolate(t[None, None].float().cpu(), size=(H, W), mode="nearest")[0, 0]  # noqa: E731
        sr = out["sr"][-1][0, 0].cpu()
        rec = up(out["rec"][0][0, 0]) if out.get("rec") else torch.zeros_like(hr)
        tiles = [up(s["lr"][0]), rec, sr, hr, 4 * (sr - hr).abs()]
        return torch.cat(tiles, dim=-1).clamp(0, 1)[None]

    def _validate_and_record(self) -> None:
        row, panel = self.validate()
        row = {"step": self.step, "epoch": self.epoch, **row, "protocol": self.protocol_text}
        self.metrics_last = dict(row)
        metric = self.cfg.run.best_metric
        if metric not in row:
            raise ConfigError(f"run.best_metric {metric!r} is not a validation key; have: "
                              + ", ".join(k for k in row if k.startswith("val/") and not k.endswith("_std")))
        better = (lambda a, b: a > b) if self.cfg.run.resolved_best_mode == "max" else (lambda a, b: a < b)
        is_best = not self.metrics_best or better(row[metric], self.metrics_best[metric])
        if is_best:
            self.metrics_best = dict(self.metrics_last)
        self.history.append(row)
        if self.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.writer is not None:
                for k, v in row.items():
                    if k.startswith("val/") and not k.endswith("_std"):
                        self.writer.add_scalar(k, v, self.step)
                if panel is not None:
                    self.writer.add_image("val/LR|REC|SR|HR|error", panel, self.step, dataformats="CHW")
            if is_best:
                self.save("best.pt")
        barrier(self.dist)

    def close(self) -> None:
        """Close TensorBoard and leave the process group (if this trainer joined it)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        cleanup(self.dist)


def train(cfg: TrainConfig, *, resume: bool = False, command: str | None = None,
          stop_at: int | None = None) -> dict[str, Any]:
    """Build a :class:`Trainer`, run it, close it; returns the last validation row."""
    trainer = Trainer(cfg, resume=resume, command=command)
    try:
        return trainer.fit(stop_at=stop_at)
    finally:
        trainer.close()

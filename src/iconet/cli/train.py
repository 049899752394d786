"""``iconet train CONFIG.yaml [key=value ...] [--resume RUN_DIR] [--out RUN_DIR]``.

Fine-tuning: ``iconet train RECIPE.yaml model.init=iconet-t1-x2 run.val_at_start=true`` starts
from a shipped model (or ``model.init=MODEL_DIR``, a folder written by ``iconet export``)
instead of a random initialisation; the architecture comes from that model, and the step-0
row of ``metrics.jsonl`` scores it on this run's validation data before any step.

Every check on user input (config keys and values, data folder, splits, output folder,
resume state) runs before the first step; a failure is one line saying what to fix.
Multi-process: ``torchrun --nproc_per_node=N -m iconet train CONFIG.yaml``.

Ctrl-C or SIGTERM stops the run after the step in progress: ``RUN/checkpoints/last.pt`` is
written, one line names the command that continues it (``iconet train --resume RUN``, which
reads ``RUN/config.yaml``; under torchrun, the same behind ``torchrun --nproc_per_node=N -m``),
and the exit status is 130 (SIGINT) or 143 (SIGTERM). A second Ctrl-C aborts at once.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from iconet.config import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train a model from a YAML recipe (configs/*.yaml) with dotted key=value overrides. "
        "Writes RUN/config.yaml, RUN/command.txt, RUN/checkpoints/{last,best}.pt, RUN/metrics.jsonl, "
        "RUN/train.jsonl and RUN/tb/ (when TensorBoard is installed). Fine-tune instead of training from "
        "scratch with model.init=NAME (a shipped model, e.g. iconet-t1-x2) or model.init=MODEL_DIR (a folder "
        "written by iconet export): its architecture and weights are the start; add run.val_at_start=true to "
        "score it first (step 0).",
    )
    p.add_argument("config", nargs="?", default=None, metavar="CONFIG.yaml",
                   help="the recipe; optional with --resume (then RUN_DIR/config.yaml) or when "
                   "key=value overrides alone describe the run (defaults otherwise)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides, e.g. run.steps=2000 optim.lr=1e-4 model.width=32 model.init=iconet-t1-x2")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR exactly from its checkpoints/last.pt (written every "
                   "run.ckpt_every steps, at the end, and on Ctrl-C/SIGTERM); CONFIG.yaml defaults to "
                   "RUN_DIR/config.yaml")
    p.add_argument("--out", metavar="RUN_DIR", default=None, help="run folder (overrides run.out_dir)")
    p.set_defaults(func=run)


def resolve_args(args: argparse.Namespace) -> tuple[Path | None, list[str], bool]:
    """(config path, overrides, resume) from the parsed arguments."""
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).is_file():
        overrides.insert(0, config)  # `iconet train key=value --resume RUN`
        config = None
    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise ConfigError(f"--out {args.out} and --resume {args.resume} name different folders; give one")
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: run folder to resume not found; start a run there with: "
                                    f"iconet train CONFIG.yaml --out {shlex.quote(str(run_dir))}")
        path = Path(config) if config is not None else run_dir / "config.yaml"
        if config is None and not path.is_file():
            raise FileNotFoundError(f"{run_dir}: holds no run to resume (no config.yaml, no checkpoints/last.pt); "
                                    f"start one there with: iconet train CONFIG.yaml --out {shlex.quote(str(run_dir))}")
        overrides.append(f"run.out_dir={run_dir}")
        return path, overrides, True
    if config is None and not overrides:
        raise ConfigError("give a recipe, e.g. iconet train configs/demo_s1_x2.yaml (or --resume RUN_DIR)")
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    return (Path(config) if config is not None else None), overrides, False


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (rebuilt from the parsed arguments), for ``RUN/command.txt``."""
    parts = ["iconet", "train"]
    if args.config is not None:
        parts.append(args.config)
    parts += list(args.overrides)
    if args.resume:
        parts += ["--resume", args.resume]
    if args.out:
        parts += ["--out", args.out]
    return " ".join(shlex.quote(str(p)) for p in parts)


def run(args: argparse.Namespace) -> int:
    from iconet.runtime import keep_freed_memory

    keep_freed_memory()  # this process is ours: reuse freed activations (2x at 512^2 fp32, see runtime)
    from iconet.engine.config import load_train_config
    from iconet.engine.interrupt import TrainingInterrupted
    from iconet.engine.trainer import Trainer

    path, overrides, resume = resolve_args(args)
    cfg = load_train_config(path, overrides)
    command = command_line(args)
    trainer = Trainer(cfg, resume=resume, command=command)
    try:
        last = trainer.fit()
    except TrainingInterrupted as stop:  # Ctrl-C / SIGTERM: the step finished and last.pt was saved
        if trainer.is_main:
            print(f"iconet: {stop}", file=sys.stderr)
        return stop.exit_code
    finally:
        trainer.close()
    if trainer.is_main:
        best = trainer.metrics_best
        metric = cfg.run.best_metric
        print(f"run          {cfg.run.out_dir}  ({trainer.step} steps, precision {trainer.precision}, "
              f"device {trainer.device})")
        if cfg.init is not None:
            start = next((r for r in trainer.history if r.get("step") == 0), None)
            score = f"; {metric} = {start[metric]:.4f} at step 0" if start and metric in start else ""
            print(f"init         {cfg.init}{score}")
        if metric in last:
            print(f"last         {metric} = {last[metric]:.4f} at step {last.get('step')}")
        if metric in best:
            print(f"best         {metric} = {best[metric]:.4f} at step {best.get('step')}")
        if getattr(trainer, "protocol_text", None):
            print(f"protocol     {trainer.protocol_text}")
    return 0

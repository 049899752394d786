"""``iconet ablate SPEC.yaml [key=value ...] [--out DIR] [--only NAME ...] [--table-only]``.

Trains every variant of an ablation spec (:mod:`iconet.engine.ablation`) with the same recipe,
data and budget into ``DIR/<variant>``, then writes ``DIR/ablation.md`` and
``DIR/ablation.json`` and prints the table with the deltas against ``full``.

A variant whose folder holds a finished run (``last.pt`` at ``run.steps``) is not trained
again; an unfinished one is resumed exactly from its ``last.pt``; a folder holding a run of a
different config is an error naming it. Every folder is checked before the first step.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ablate",
        help="train the variants of an ablation spec and print the ablation table",
        description="Train every variant of an ablation spec (configs/ablation/*.yaml: a base recipe and "
        "model switches) with the same data and budget into DIR/<variant> (finished runs are kept, "
        "unfinished ones resumed), then write DIR/ablation.md and DIR/ablation.json and print the "
        "table with the deltas against the full model.",
    )
    p.add_argument("spec", metavar="SPEC.yaml", help="the ablation spec, e.g. configs/ablation/ablation_t1_x4.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides applied to every variant, e.g. run.steps=2000 data.batch_size=8")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder of the runs and the table (default: runs/<spec file stem>)")
    p.add_argument("--only", metavar="NAME", nargs="+", action="extend", default=None,
                   help="train these variants only (full is always included: it is the reference); the table "
                   "lists every variant that has a run in DIR")
    p.add_argument("--table-only", action="store_true",
                   help="train nothing: build the table from the runs in DIR")
    p.set_defaults(func=run)


@dataclass
class Plan:
    """What to do with one variant: ``train`` (fresh), ``resume`` (from ``step``) or ``done``."""

    name: str
    cfg: Any
    action: str
    step: int = 0


def _user_error(msg: str) -> Exception:
    from iconet.cli import UserError

    return UserError(msg)


def select(variants: list[str], only: list[str] | None) -> list[str]:
    """The variants to run, in spec order; ``full`` always (it is the reference)."""
    from iconet.engine.ablation import REFERENCE

    if not only:
        return list(variants)
    unknown = [n for n in only if n not in variants]
    if unknown:
        raise _user_error(f"--only {unknown[0]}: no such variant; the spec has: {', '.join(variants)}")
    return [n for n in variants if n in only or n == REFERENCE]


def plan_variant(name: str, cfg: Any) -> Plan:
    """Decide from the run folder whether a variant is trained, resumed or already done.

    Raises:
        UserError: the folder holds a run of another config (keys named) or an unreadable one.
    """
    from iconet.config import load_yaml, to_dict
    from iconet.engine.ablation import RUN_HOW_KEYS, config_differences
    from iconet.engine.checkpoint import load_checkpoint

    out = Path(cfg.run.out_dir)
    saved_cfg, last = out / "config.yaml", out / "checkpoints" / "last.pt"
    if not saved_cfg.exists():
        if last.exists() or (out / "metrics.jsonl").exists():
            raise _user_error(f"{out}: holds a run without config.yaml; move it away or choose another --out")
        return Plan(name, cfg, "train")
    diff = config_differences(load_yaml(saved_cfg), to_dict(cfg), RUN_HOW_KEYS)
    if diff:
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise _user_error(f"{out} holds a run of a different config (differs in {', '.join(diff[:3])}{more}); "
                          "give the same overrides as before, or another --out")
    if not last.exists():  # stopped before its first checkpoint: nothing to resume, start again
        cfg.run.overwrite = True
        return Plan(name, cfg, "train")
    step = int(load_checkpoint(last)["step"])
    if step >= cfg.run.steps:
        return Plan(name, cfg, "done", step)
    return Plan(name, cfg, "resume", step)


def command_line(args: argparse.Namespace, variant: str) -> str:
    parts = ["iconet", "ablate", args.spec, *args.overrides]
    if args.out:
        parts += ["--out", args.out]
    if args.only:
        parts += ["--only", *args.only]
    return " ".join(shlex.quote(str(p)) for p in parts) + f"  # variant {variant}"


def write_outputs(out_root: Path, table: str, report: dict[str, Any]) -> tuple[Path, Path]:
    """``ablation.md`` and ``ablation.json`` in ``out_root``, each written atomically."""
    from iconet.data.io import atomic_output

    md, js = out_root / "ablation.md", out_root / "ablation.json"
    with atomic_output(md) as tmp:
        tmp.write_text(table)
    with atomic_output(js) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return md, js


def run(args: argparse.Namespace) -> int:
    from iconet.engine.ablation import ablation_rows, ablation_table, load_ablation, variant_configs

    # `--only a b key=value`: argparse gives key=value to --only; it is an override
    if args.only:
        args.overrides = [*args.overrides, *(x for x in args.only if "=" in x)]
        args.only = [x for x in args.only if "=" not in x]
    spec = load_ablation(args.spec)
    out_root = Path(args.out) if args.out else Path("runs") / Path(args.spec).stem
    cfgs = variant_configs(spec, args.overrides, out_root)  # checks every variant, selected or not
    names = select(list(spec.variants), args.only)

    if args.table_only:
        missing = [n for n in names if not (out_root / n / "metrics.jsonl").is_file()]
        if missing:
            raise _user_error(f"{out_root}: no run for {', '.join(missing)} (looked for "
                              f"{out_root / missing[0] / 'metrics.jsonl'}); train them without --table-only")
    else:
        from iconet.runtime import keep_freed_memory

        keep_freed_memory()  # as `iconet train`: this process is ours
        from iconet.engine.interrupt import TrainingInterrupted

        try:
            train_variants(args, [plan_variant(n, cfgs[n]) for n in names])  # every folder checked first
        except TrainingInterrupted as stop:  # Ctrl-C / SIGTERM: the variant's step finished, last.pt saved
            if int(os.environ.get("RANK", "0")) == 0:
                again = command_line(args, "").split("  # ")[0]  # the train command in stop's text resumes one run only
                print(f"iconet: {str(stop).rsplit('; continue with: ', 1)[0]}; continue with: {again} "
                      "(resumes that variant)", file=sys.stderr)
            return stop.exit_code

    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    # the table holds every variant with a run in DIR (so --only never shrinks ablation.md)
    shown = [n for n in spec.variants if n in names or (out_root / n / "metrics.jsonl").is_file()]
    rows = ablation_rows({n: out_root / n for n in shown})
    table = ablation_table(rows)
    absent = [n for n in spec.variants if n not in shown]
    if absent:
        table += f"Not run yet: {', '.join(absent)}.\n"
    report = {
        "spec": str(args.spec), "base": str(spec.base), "out": str(out_root),
        "overrides": list(args.overrides), "variants": {n: spec.variants[n] for n in shown},
        "not_run": absent, "rows": rows,
    }
    md, js = write_outputs(out_root, table, report)
    print(table, end="")
    print(f"\nwrote {md} and {js}")
    return 0


def train_variants(args: argparse.Namespace, plans: list[Plan]) -> None:
    """Train or resume the plans in order (finished ones are reported and skipped)."""
    from iconet.engine.trainer import Trainer

    is_main = int(os.environ.get("RANK", "0")) == 0
    for i, p in enumerate(plans, 1):
        head = f"[{i}/{len(plans)}] {p.name:<24}"
        if p.action == "done":
            if is_main:
                print(f"{head} finished ({p.step} steps) in {p.cfg.run.out_dir}; not retrained", flush=True)
            continue
        if is_main:
            what = f"resuming at step {p.step} of {p.cfg.run.steps}" if p.action == "resume" else \
                f"training {p.cfg.run.steps} steps"
            print(f"{head} {what} into {p.cfg.run.out_dir}", flush=True)
        trainer = Trainer(p.cfg, resume=p.action == "resume", command=command_line(args, p.name))
        try:
            trainer.fit()
        finally:
            trainer.close()

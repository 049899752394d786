"""``iconet demo [--out DIR]``: super-resolve the shipped real sample, write NIfTI, figure, metrics."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from iconet.cli import add_quiet
from iconet.progress import progress_bar


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the main job on the shipped Colin27 sample (no network)",
                       description="Degrade 8 real Colin27 slices shipped with iconet, super-resolve "
                       "them, and write the SR NIfTI, a comparison figure and a metrics table.")
    p.add_argument("--out", type=Path, default=Path("iconet-demo"), help="output folder (default: iconet-demo)")
    p.add_argument("--scale", type=int, choices=(2, 4), default=2, help="upscaling factor (default 2)")
    p.add_argument("--model", default=None, metavar="DIR_OR_NAME",
                   help="an exported model to show (default: the shipped ICONet for --scale)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier demo run")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from iconet.demo import run_demo

    start = time.perf_counter()
    # run_demo is one call (8 slices in one batch per model): the bar shows the elapsed time.
    with progress_bar(desc=f"demo: super-resolving 8 Colin27 slices x{args.scale}, scoring, drawing the figure",
                      quiet=args.quiet, bar_format="{desc} {elapsed}"):
        result = run_demo(args.out, scale=args.scale, model=args.model, overwrite=args.overwrite)
    print(result.table.read_text().rstrip())
    print()
    print(f"super-resolved volume  {result.sr}   ({result.model})")
    print(f"LR input               {result.lr}")
    print(f"comparison figure      {result.figure}")
    print(f"metrics table          {result.table}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0

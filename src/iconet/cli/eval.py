"""``iconet eval DATA ... --models A B ...``: score models on the same volumes, degradation and protocol.

DATA are NIfTI/DICOM volumes or folders of them (plain layout). Models are built-in peers
(``bicubic``, ``zerofill``), exported model folders, shipped names, or training runs (their best
EMA weights). Writes ``per_volume.csv``, ``summary.json`` and ``table.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from iconet.cli import UserError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="score models on test volumes under one metric protocol",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", type=Path, metavar="DATA", help="test volumes or folders of them")
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL")
    p.add_argument("--scale", type=int, choices=(2, 4, 8), default=2)
    p.add_argument("--degradation", choices=("kspace", "bicubic"), default="kspace",
                   help="kspace: truncation + seeded Cartesian mask (default); bicubic: plain bicubic")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=2, help="slice axis (default 2)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: eval-x<scale>)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def _volumes(paths: list[Path]) -> list[Any]:
    from iconet.data.io import read_volume
    from iconet.data.layouts import find_cases

    vols = []
    for path in paths:
        if path.is_dir() and any(p.suffix in (".gz", ".nii") or p.is_dir() for p in path.iterdir()):
            vols += [read_volume(next(iter(c.images.values()))) for c in find_cases(path, "plain")]
        else:
            vols.append(read_volume(path))
    names = [v.name for v in vols]
    if len(set(names)) != len(names):
        raise UserError(f"test volumes must have distinct names, got {names}")
    return vols


def run(args: argparse.Namespace) -> int:
    from iconet.data.degrade import Degradation
    from iconet.evaluation.runner import evaluate, load_candidate, markdown_table

    out = args.out or Path(f"eval-x{args.scale}")
    targets = [out / n for n in ("per_volume.csv", "summary.json", "table.md")]
    if any(t.exists() for t in targets) and not args.overwrite:
        raise UserError(f"{out}: holds an earlier evaluation (use --overwrite to replace it)")
    degradation = Degradation(kind=args.degradation, scale=args.scale)
    candidates = [load_candidate(m, args.scale, degradation.grid) for m in args.models]
    for c in candidates:
        if c.grid != degradation.grid:
            raise UserError(f"{c.source}: trained on the {c.grid} grid, the test data use the {degradation.grid} grid")
    result = evaluate(candidates, _volumes(args.data), degradation, axis=args.axis)
    out.mkdir(parents=True, exist_ok=True)
    from iconet.data.io import atomic_output

    with atomic_output(targets[0]) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result.rows[0]))
        writer.writeheader()
        writer.writerows(result.rows)
    with atomic_output(targets[1]) as tmp:
        tmp.write_text(json.dumps({"protocol": result.protocol, "degradation": result.degradation,
                                   "models": result.summary}, indent=1))
    table = markdown_table(result, args.scale)
    with atomic_output(targets[2]) as tmp:
        tmp.write_text(table + "\n")
    print(table)
    print(f"\nwrote {targets[0]}, {targets[1]}, {targets[2]}")
    return 0

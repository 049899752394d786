"""``iconet eval DATA ... --models A B ...``: score models on the same volumes, degradation and protocol.

DATA are NIfTI/DICOM volumes or folders of them (plain layout). Models are built-in peers
(``bicubic``, ``zerofill``), exported model folders, shipped names, or training runs (their best
EMA weights). Writes ``per_volume.csv``, ``summary.json``, ``table.md`` and ``bars.png`` (PSNR and
SSIM per model, mean ± std over volumes; needs matplotlib: ``pip install iconet[figures]``) to
``--out``.

``--downstream`` also segments every volume's HR slices into background/CSF/GM/WM with a fixed
intensity model fitted on that HR (multi-Otsu; T1 ordering; not a clinical segmentation) and
reports the Dice of each model's SR output against it (include ``bicubic`` for the baseline).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
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
    p.add_argument("--downstream", action="store_true",
                   help="add tissue Dice (CSF/GM/WM) of each SR output against HR's segmentation by a fixed "
                        "intensity model fitted on HR")
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
    targets = [out / n for n in ("per_volume.csv", "summary.json", "table.md", "bars.png")]
    if any(t.exists() for t in targets) and not args.overwrite:
        raise UserError(f"{out}: holds an earlier evaluation (use --overwrite to replace it)")
    degradation = Degradation(kind=args.degradation, scale=args.scale)
    candidates = [load_candidate(m, args.scale, degradation.grid) for m in args.models]
    for c in candidates:
        if c.grid != degradation.grid:
            raise UserError(f"{c.source}: trained on the {c.grid} grid, the test data use the {degradation.grid} grid")
    result = evaluate(candidates, _volumes(args.data), degradation, axis=args.axis, downstream=args.downstream)
    out.mkdir(parents=True, exist_ok=True)
    from iconet.data.io import atomic_output

    with atomic_output(targets[0]) as tmp, open(tmp, "w", newline="") as f:
        fields = list(dict.fromkeys(k for row in result.rows for k in row))  # rec rows carry no Dice
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(result.rows)
    with atomic_output(targets[1]) as tmp:
        extra = {"downstream": result.downstream} if result.downstream else {}
        tmp.write_text(json.dumps({"protocol": result.protocol, "degradation": result.degradation, **extra,
                                   "models": result.summary}, indent=1))
    table = markdown_table(result, args.scale)
    with atomic_output(targets[2]) as tmp:
        tmp.write_text(table + "\n")
    written = targets[:3]
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        targets[3].unlink(missing_ok=True)  # never leave an earlier evaluation's chart beside this one
        print("bars.png not written: it needs matplotlib (pip install iconet[figures])", file=sys.stderr)
    else:
        from iconet.evaluation.figures import metric_bar_chart

        deg = ", ".join(f"{k}={v}" for k, v in result.degradation.items() if v is not None)
        n_vol = len({r["volume"] for r in result.rows})
        with atomic_output(targets[3]) as tmp:
            metric_bar_chart(result.summary, tmp, protocol=f"{result.protocol}. Degradation: {deg}.",
                             title=f"x{args.scale}, {args.degradation} degradation, {n_vol} volume{'s' if n_vol > 1 else ''}")
        written.append(targets[3])
    print(table)
    print("\nwrote " + ", ".join(map(str, written)))
    return 0

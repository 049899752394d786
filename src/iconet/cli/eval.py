"""``iconet eval DATA ... --models A B ...``: score models on the same volumes, degradation and protocol.

DATA are NIfTI/DICOM volumes or folders of them (``--layout plain``, the default), or BraTS
2021 folders (``--layout brats2021 --contrast t1ce``: ``BraTS2021_*/BraTS2021_*_t1ce.nii.gz``,
one volume per case, with the case's ``_seg`` labels). Models are built-in peers
(``bicubic``, ``zerofill``), exported model folders, shipped names, or training runs (their best
EMA weights). Writes ``per_volume.csv``, ``summary.json``, ``table.md`` and ``bars.png`` (PSNR and
SSIM per model, mean ± std over volumes; needs matplotlib: ``pip install iconet[figures]``) to
``--out``.

``--downstream`` (= ``--downstream tissue``) also segments every volume's HR slices into
background/CSF/GM/WM with a fixed intensity model fitted on that HR (multi-Otsu; T1 ordering;
not a clinical segmentation) and reports the Dice of each model's SR output against it (include
``bicubic`` for the baseline).

``--downstream tumour`` (``--layout brats2021`` only) does the same inside each case's expert
whole-tumour label (BraTS labels 1, 2, 4): three intensity classes low/mid/high by multi-Otsu of
HR inside WT, Dice of each SR output's classes against HR's; plus, once per volume, the Dice of
HR's classes against the expert labels (on t1ce: NCR ↔ low, ED ↔ mid, ET ↔ high). An
intensity model inside the expert outline, not a tumour segmenter.
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
    p.add_argument("--layout", choices=("plain", "brats2021"), default="plain",
                   help="plain: volumes or folders of them (default); brats2021: BraTS2021_* case folders")
    p.add_argument("--contrast", choices=("t1", "t1ce", "t2", "flair"), default=None,
                   help="the BraTS contrast to score (required with --layout brats2021)")
    p.add_argument("--downstream", nargs="?", const="tissue", default=None, choices=("tissue", "tumour"),
                   help="tissue (the default when given alone): Dice CSF/GM/WM of each SR output against HR's "
                        "segmentation by a fixed intensity model fitted on HR; tumour: the same with three "
                        "intensity classes inside the BraTS whole-tumour label (needs --layout brats2021)")
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
    _distinct(vols)
    return vols


def _distinct(vols: list[Any]) -> None:
    names = [v.name for v in vols]
    if len(set(names)) != len(names):
        raise UserError(f"test volumes must have distinct names, got {names}")


def _brats_volumes(paths: list[Path], contrast: str, need_labels: bool) -> tuple[list[Any], dict[str, Any]]:
    """The ``contrast`` volume of every BraTS 2021 case under ``paths``, and (when asked) each
    case's ``_seg`` labels keyed by the volume's name. A case without labels is an error then."""
    from iconet.data.io import read_volume
    from iconet.data.layouts import find_cases

    cases = [c for path in paths for c in find_cases(path, "brats2021", contrasts=contrast)]
    if need_labels:
        for c in cases:
            if c.label is None:
                raise UserError(f"{c.subject}: no labels file {c.subject}_seg.nii.gz beside "
                                f"{c.images[contrast].name} (--downstream tumour needs it)")
    vols, labels = [], {}
    for c in cases:
        vol = read_volume(c.images[contrast])
        vols.append(vol)
        if need_labels:
            labels[vol.name] = read_volume(c.label)
    _distinct(vols)
    return vols, labels


def run(args: argparse.Namespace) -> int:
    from iconet.data.degrade import Degradation
    from iconet.evaluation.runner import evaluate, load_candidate, markdown_table

    if args.layout == "brats2021" and args.contrast is None:
        raise UserError("--layout brats2021 needs --contrast (t1, t1ce, t2 or flair)")
    if args.layout == "plain" and args.contrast is not None:
        raise UserError("--contrast picks a BraTS contrast: use it with --layout brats2021")
    if args.downstream == "tumour" and args.layout != "brats2021":
        raise UserError("--downstream tumour needs expert tumour labels: use --layout brats2021 --contrast ... "
                        "(BraTS2021_*/BraTS2021_*_seg.nii.gz); plain volumes carry none")
    out = args.out or Path(f"eval-x{args.scale}")
    targets = [out / n for n in ("per_volume.csv", "summary.json", "table.md", "bars.png")]
    if any(t.exists() for t in targets) and not args.overwrite:
        raise UserError(f"{out}: holds an earlier evaluation (use --overwrite to replace it)")
    degradation = Degradation(kind=args.degradation, scale=args.scale)
    candidates = [load_candidate(m, args.scale, degradation.grid) for m in args.models]
    for c in candidates:
        if c.grid != degradation.grid:
            raise UserError(f"{c.source}: trained on the {c.grid} grid, the test data use the {degradation.grid} grid")
    labels: dict[str, Any] | None = None
    if args.layout == "brats2021":
        volumes, labels = _brats_volumes(args.data, args.contrast, args.downstream == "tumour")
    else:
        volumes = _volumes(args.data)
    result = evaluate(candidates, volumes, degradation, axis=args.axis, downstream=args.downstream or False,
                      labels=labels if args.downstream == "tumour" else None, contrast=args.contrast)
    out.mkdir(parents=True, exist_ok=True)
    from iconet.data.io import atomic_output

    with atomic_output(targets[0]) as tmp, open(tmp, "w", newline="") as f:
        fields = list(dict.fromkeys(k for row in result.rows for k in row))  # rec rows carry no Dice
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(result.rows)
    with atomic_output(targets[1]) as tmp:
        extra: dict[str, Any] = {"downstream": result.downstream} if result.downstream else {}
        if result.reference:
            extra["reference"] = {"mapping": result.reference_mapping, **result.reference}
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

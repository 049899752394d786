"""``iconet eval DATA ... --models A B ...``: score models on the same volumes, degradation and protocol.

DATA are volumes (NIfTI, DICOM, any format ``iconet infer`` reads) or folders of them, told from
a DICOM series folder and listed by ``iconet infer``'s rule (``--layout plain``, the default), or BraTS
2021 folders (``--layout brats2021 --contrast t1ce``: ``BraTS2021_*/BraTS2021_*_t1ce.nii.gz``,
one volume per case, with the case's ``_seg`` labels). Models are built-in peers
(``bicubic``, ``zerofill``), exported model folders, shipped names, or training runs (their best
EMA weights). Writes ``per_volume.csv`` (one row per model, volume and draw, with the mask seed
and the normalisation statistic), ``summary.json``, ``table.md`` and ``bars.png`` (PSNR and SSIM
per model, mean and 95 % interval; needs matplotlib: ``pip install iconet[figures]``) to ``--out``.

Every volume is scored on ``--draws K`` seeded mask draws (default 8; draw d's mask seeded from
``<volume>/draw<d>``, draw 0 from the volume's name); the table gives each model's mean with a
95 % interval (t over the draws for one volume, t over the per-volume means for several) and its
paired difference to ``--reference`` (default bicubic) on the same draws: a lead is claimed only
where that interval excludes 0. ``--masks equispaced`` scores one deterministic mask per volume.
The intensity statistic is taken on each draw's LR volume, as ``iconet infer`` takes it
(``--normalize-on hr`` for the older convention). A 2-D image is refused: it is not a volume.

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

from iconet.cli import UserError, add_quiet
from iconet.progress import progress_bar


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="score models on test volumes under one metric protocol",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", type=Path, metavar="CONFIG_OR_DATA",
                   help="test volumes or folders of them, or one training recipe (.yaml): its test share "
                        "(the third part of data.split), else its validation subjects, with its degradation "
                        "and normalisation")
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                   help="models to score: bicubic, zerofill, shipped names, exported model folders, training runs")
    p.add_argument("--scale", type=int, choices=(2, 4, 8), default=None, help="default 2, or the recipe's")
    p.add_argument("--degradation", choices=("kspace", "bicubic"), default=None,
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
    p.add_argument("--draws", type=int, default=None, metavar="K",
                   help="seeded mask draws per volume (default 8; 1 where nothing is random, e.g. bicubic)")
    p.add_argument("--masks", choices=("random", "equispaced"), default="random",
                   help="random: K seeded draws of the degradation's mask (default); equispaced: one deterministic "
                        "equispaced mask per volume (K = 1)")
    p.add_argument("--reference", default=None, metavar="MODEL",
                   help="the model every other is compared with on the same draws (default: bicubic when scored, "
                        "else the first of --models); a lead is claimed only where the paired 95 %% interval excludes 0")
    p.add_argument("--normalize-on", choices=("lr", "hr"), default=None,
                   help="take the normalisation statistic on each draw's LR volume (default, what iconet infer does) "
                        "or on HR (the older convention, to reproduce earlier numbers)")
    p.add_argument("--series-uid", default=None, metavar="UID",
                   help="the series to score from a DICOM folder holding several (one DATA folder)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier evaluation in --out")
    add_quiet(p)
    p.set_defaults(func=run)


def _recipe(args: argparse.Namespace) -> Any:
    """For one ``.yaml`` DATA: the recipe's protocol (:func:`iconet.evaluation.volumes.recipe_protocol`);
    fills ``--scale`` and ``--degradation`` (an explicit value that contradicts the recipe is an
    error). Otherwise ``None`` and the defaults x2 / kspace."""
    is_recipe = len(args.data) == 1 and args.data[0].suffix in (".yaml", ".yml") and args.data[0].is_file()
    if not is_recipe:
        if any(p.suffix in (".yaml", ".yml") for p in args.data):
            raise UserError("a training recipe is scored alone: give one .yaml, or volumes and folders")
        args.scale = args.scale or 2
        args.degradation = args.degradation or "kspace"
        return None
    if args.layout != "plain" or args.contrast is not None or args.downstream == "tumour":
        raise UserError(f"{args.data[0]}: --layout/--contrast/--downstream tumour take data folders; "
                        "the recipe names its own layout and contrast")
    from iconet.evaluation.volumes import recipe_protocol

    recipe = recipe_protocol(args.data[0])
    deg = recipe.degradation
    for option, asked, own in (("--scale", args.scale, deg.scale), ("--degradation", args.degradation, deg.kind)):
        if asked is not None and asked != own:
            raise UserError(f"{args.data[0]}: {option} {asked} contradicts the recipe's {own}")
    args.scale, args.degradation = deg.scale, deg.kind
    return recipe


def _draw_options(args: argparse.Namespace) -> dict[str, Any]:
    from iconet.evaluation.runner import DEFAULT_DRAWS

    if args.masks == "equispaced" and args.draws not in (None, 1):
        raise UserError(f"--masks equispaced is one deterministic mask per volume: --draws {args.draws} cannot apply")
    if args.draws is not None and args.draws < 1:
        raise UserError(f"--draws must be at least 1, got {args.draws}")
    return {"draws": args.draws or DEFAULT_DRAWS, "masks": args.masks, "reference": args.reference}


def run(args: argparse.Namespace) -> int:
    from iconet.data.degrade import Degradation
    from iconet.evaluation.runner import evaluate, load_candidate, markdown_table
    from iconet.evaluation.volumes import (eval_normalization, holds_volumes, read_brats_volumes, read_test_volumes,
                                           recipe_volumes)

    if args.layout == "brats2021" and args.contrast is None:
        raise UserError("--layout brats2021 needs --contrast (t1, t1ce, t2 or flair)")
    if args.layout == "plain" and args.contrast is not None:
        raise UserError("--contrast picks a BraTS contrast: use it with --layout brats2021")
    if args.downstream == "tumour" and args.layout != "brats2021":
        raise UserError("--downstream tumour needs expert tumour labels: use --layout brats2021 --contrast ... "
                        "(BraTS2021_*/BraTS2021_*_seg.nii.gz); plain volumes carry none")
    if args.series_uid is not None and (len(args.data) != 1 or args.layout != "plain"
                                        or args.data[0].suffix in (".yaml", ".yml")):
        raise UserError("--series-uid picks a series of one DICOM folder: give that folder alone as DATA")
    recipe = _recipe(args)
    share, volumes = recipe_volumes(recipe) if recipe else (None, [])
    out = args.out or Path(f"eval-x{args.scale}")
    targets = [out / n for n in ("per_volume.csv", "summary.json", "table.md", "bars.png")]
    if any(t.exists() for t in targets) and not args.overwrite:
        raise UserError(f"{out}: holds an earlier evaluation (use --overwrite to replace it)")
    degradation = recipe.degradation if recipe else Degradation(kind=args.degradation, scale=args.scale)
    with progress_bar(desc="loading models", quiet=args.quiet, bar_format="{desc} {elapsed}"):
        candidates = [load_candidate(m, args.scale, degradation.grid) for m in args.models]
    for c in candidates:
        if c.grid != degradation.grid:
            raise UserError(f"{c.source}: trained on the {c.grid} grid, the test data use the {degradation.grid} grid")
    if args.reference:  # a model given by its path is named by its folder in the tables
        args.reference = next((c.name for c in candidates if args.reference in (c.name, c.source)), args.reference)
    labels: dict[str, Any] | None = None
    if args.layout == "brats2021":
        volumes, labels = read_brats_volumes(args.data, args.contrast, labels=args.downstream == "tumour")
    elif not recipe:
        if args.series_uid is not None and holds_volumes(args.data[0]):
            raise UserError(f"{args.data[0]}: --series-uid picks a series of one DICOM folder, but this is a folder "
                            "of volumes; give the DICOM folder that holds the series as DATA")
        volumes = read_test_volumes(args.data, args.series_uid)
    # One bar over the (volume, mask draw, model) passes, moved after every batch of slices.
    with progress_bar(desc="scoring (volume x draw x model)", unit="pass", quiet=args.quiet,
                      bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}]") as bar:
        def tick(done: float, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = evaluate(candidates, volumes, degradation, axis=args.axis, downstream=args.downstream or False,
                          labels=labels if args.downstream == "tumour" else None, contrast=args.contrast,
                          normalization=eval_normalization(recipe, args.normalize_on), progress=tick,
                          **_draw_options(args))
    if recipe:
        print(f"{args.data[0]}: scored on its {share} subjects: {', '.join(v.name for v in volumes)}",
              file=sys.stderr)
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
                                   "draws": result.draws, "interval": result.interval_method,
                                   "reference_model": result.reference_model, "models": result.summary}, indent=1))
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
                             title=f"x{args.scale}, {args.degradation} degradation, {n_vol} volume{'s' if n_vol > 1 else ''}, "
                                   f"{result.draws['k']} draw{'s' if result.draws['k'] > 1 else ''} each")
        written.append(targets[3])
    print(table)
    print("\nwrote " + ", ".join(map(str, written)))
    return 0

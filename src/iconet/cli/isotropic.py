"""``iconet infer THICK OUT --isotropic``: a thick-slice scan made isotropic by an ICONet fitted to it.

Also ``iconet infer SCAN OUT --model DIR`` where DIR was written by ``--save-model``: the fitted
model is applied to another scan of the same protocol without fitting. The options live in
``iconet infer``'s parser (:func:`add_arguments`); :func:`wanted` says whether a parsed command
is one of these, and :func:`run` does it by calling :func:`iconet.make_isotropic` or
:func:`iconet.isotropic.apply_fitted`.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from iconet.cli import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--isotropic`` options of ``iconet infer``."""
    from iconet.isotropic import DEFAULT_FIT_MINUTES

    g = p.add_argument_group("thick-slice scans made isotropic (an ICONet fitted to the scan itself)")
    g.add_argument("--isotropic", action="store_true",
                   help="fit a through-plane ICONet to INPUT's own in-plane slices and write OUTPUT with the "
                        "in-plane spacing on every axis, slice centres where they were in scanner space")
    g.add_argument("--slice-thickness", type=float, default=None, metavar="MM",
                   help="FWHM of the Gaussian slice profile (default: DICOM SliceThickness, a BIDS sidecar's "
                        "SliceThickness, else the slice spacing)")
    g.add_argument("--fit-minutes", type=float, default=DEFAULT_FIT_MINUTES, metavar="M",
                   help=f"time budget of the fit (default {DEFAULT_FIT_MINUTES:g})")
    g.add_argument("--fit-steps", type=int, default=None, metavar="N",
                   help="fit exactly N steps instead of a time budget (bit-reproducible with --seed)")
    g.add_argument("--save-model", type=Path, default=None, metavar="DIR",
                   help="also write the fitted model as a model folder that --model DIR applies to other "
                        "scans of the same protocol without fitting")
    g.add_argument("--axis", type=int, choices=(0, 1, 2), default=None,
                   help="array axis across the slices (default: the coarsest; needed for a volume isotropic "
                        "within 10 %%)")
    g.add_argument("--target-spacing", type=float, default=None, metavar="MM",
                   help="output spacing on every axis (default: the finest in-plane spacing)")
    g.add_argument("--seed", type=int, default=0, help="seed of the fit (default 0)")


def wanted(args: argparse.Namespace) -> bool:
    """``--isotropic``, or ``--model`` naming a through-plane model saved by ``--save-model``."""
    if getattr(args, "isotropic", False):
        return True
    model = getattr(args, "model", None)
    if model is None or model in ("bicubic", "zerofill"):
        return False
    from iconet.isotropic import is_fitted_model

    return is_fitted_model(model)


def _check(args: argparse.Namespace, fitted: bool) -> None:
    from iconet.data.folders import is_volume_folder

    if not fitted and is_volume_folder(args.input):
        raise UserError(f"{args.input}: --isotropic fits a model to one scan (a file or one DICOM series folder), "
                        "not to a folder of scans; fit one with --save-model, then apply it to the folder with --model")
    if fitted and (args.save_model is not None or args.fit_steps is not None):
        raise UserError(f"{args.model} is already fitted: --save-model and --fit-steps belong to --isotropic")
    if args.isotropic and args.model is not None:
        raise UserError("--isotropic fits its own model; to apply a saved one use --model DIR without --isotropic")
    if args.fit_minutes <= 0:
        raise UserError(f"--fit-minutes must be positive, got {args.fit_minutes:g}")
    if args.fit_steps is not None and args.fit_steps < 1:
        raise UserError(f"--fit-steps must be at least 1, got {args.fit_steps}")
    if args.slice_thickness is not None and not args.slice_thickness > 0:
        raise UserError(f"--slice-thickness must be a positive number of mm, got {args.slice_thickness:g}")


def run(args: argparse.Namespace, check_output: Any) -> int:
    """Make INPUT isotropic into OUTPUT; ``check_output(path, overwrite)`` refuses an existing or
    unwritable OUTPUT before any work (``iconet infer``'s check)."""
    from iconet.data.io import read_volume, write_volume
    from iconet.isotropic import apply_fitted, make_isotropic

    fitted = not args.isotropic
    _check(args, fitted)
    if fitted:
        from iconet.data.folders import is_volume_folder

        if is_volume_folder(args.input):
            return _run_folder(args)
    check_output(args.output, args.overwrite)
    volume = read_volume(args.input, series_uid=getattr(args, "series_uid", None))
    progress = False if getattr(args, "quiet", False) else None
    if fitted:
        out = apply_fitted(args.model, volume, slice_thickness=args.slice_thickness, device=args.device,
                           precision=args.precision, progress=progress)
        what = f"iconet through-plane model {args.model}"
    else:
        out = make_isotropic(volume, axis=args.axis, slice_thickness=args.slice_thickness,
                             target_spacing=args.target_spacing, fit_minutes=args.fit_minutes,
                             fit_steps=args.fit_steps, seed=args.seed, device=args.device, precision=args.precision,
                             save_model=args.save_model, progress=progress)
        what = "iconet isotropic (fitted to the scan)"
    done = out.meta["iconet_isotropic"]
    if args.output.exists() and args.overwrite:
        shutil.rmtree(args.output) if args.output.is_dir() else args.output.unlink()
    write_volume(out, args.output, reference=volume, description=what)
    sp = done["target_spacing_mm"]
    fit = done.get("fit")
    how = f", fit {fit['steps']} steps in {fit['seconds']:.0f} s" if fit else ""
    print(f"wrote {args.output} ({'x'.join(map(str, out.shape))}, {sp:g} mm isotropic{how})"
          + (f" and the model {args.save_model}" if args.save_model is not None and not fitted else ""))
    return 0


def _run_folder(args: argparse.Namespace) -> int:
    """A fitted model over every scan of a folder (``iconet infer``'s layout rules): OUTPUT is a
    folder with the same relative paths; a failing scan is reported and skipped (exit 1)."""
    import sys

    from iconet.data.folders import plan_folder
    from iconet.data.io import read_volume, write_volume
    from iconet.isotropic import apply_fitted

    files = plan_folder(args.input, args.output)
    if not files:
        raise UserError(f"{args.input}: no volumes in this folder")
    if args.output.exists() and not args.output.is_dir():
        raise UserError(f"{args.output}: output for a folder of scans must be a folder")
    failures = 0
    for src, rel, dst in files:
        try:
            if dst.exists() and not args.overwrite:
                raise UserError(f"{dst}: output exists (use --overwrite to replace it)")
            volume = read_volume(src)
            out = apply_fitted(args.model, volume, slice_thickness=args.slice_thickness, device=args.device,
                               precision=args.precision, progress=False if args.quiet else None)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():
                shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
            write_volume(out, dst, reference=volume, description=f"iconet through-plane model {args.model}")
            print(f"ok      {rel.as_posix()}")
        except (ValueError, OSError, UserError) as err:
            failures += 1
            print(f"FAILED  {rel.as_posix()}: {str(err).splitlines()[0]}", file=sys.stderr)
    print(f"{len(files) - failures} of {len(files)} scan(s) written to {args.output}")
    return 1 if failures else 0


__all__ = ["add_arguments", "run", "wanted"]

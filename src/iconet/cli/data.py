"""``iconet data``: small tools around data files.

* ``iconet data fetch-samples [--dest DIR] [--archives DIR] [--only NAME]`` — fetch the two
  public T1 volumes (pycortex S1, Colin27) from PyPI / Debian, checksum-checked.
* ``iconet data info FILE`` — shape, dtype, spacing, orientation, modality, value range.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iconet.cli import add_quiet
from iconet.progress import progress_bar, say


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="fetch sample data, inspect files", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    f = sub.add_parser(
        "fetch-samples",
        help="fetch the public T1 volumes (pycortex S1, Colin27) and check their SHA-256",
        description="Download pycortex S1 (PyPI sdist pycortex==1.4.0) and Colin27 (Debian "
        "package mricron-data), extract one file from each, check its SHA-256 and write "
        "pycortex_S1_T1.nii.gz and colin27_T1.nii.gz to DEST. Nothing is installed.",
    )
    f.add_argument("--dest", type=Path, default=Path("data"), help="output folder (default: ./data)")
    f.add_argument(
        "--archives", type=Path, default=None,
        help="keep downloaded archives here and reuse those already present (offline use)",
    )
    f.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="fetch only this file (repeatable), e.g. colin27_T1.nii.gz")
    add_quiet(f)
    f.set_defaults(func=run)

    i = sub.add_parser("info", help="print shape, dtype, spacing, orientation, modality, value range")
    i.add_argument("file", type=Path, help="NIfTI / DICOM file or series folder / fastMRI .h5 / ...")
    i.add_argument("--frame", type=int, default=None, metavar="N",
                   help="the frame to read from a 4-D NIfTI (a multi-frame DICOM is read as one volume)")
    i.add_argument("--series-uid", default=None, metavar="UID",
                   help="the series to read from a DICOM folder holding several (listed when none is given)")
    add_quiet(i)
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.data_command == "fetch-samples":
        return _fetch(args)
    if args.data_command == "info":
        return _info(args)
    raise ValueError(f"unknown data action {args.data_command!r}")  # pragma: no cover


def _fetch(args: argparse.Namespace) -> int:
    from iconet.data.samples import SAMPLES, fetch_samples

    fetched, failed = {}, {}
    names = args.only or list(SAMPLES)
    with progress_bar(len(names), unit="file", quiet=args.quiet) as bar:
        for name in names:  # one at a time, so the bar names the download in progress
            bar.set_description_str(f"fetching {name}")
            got, lost = fetch_samples(args.dest, names=[name], archives=args.archives)
            fetched.update(got)
            failed.update(lost)
            for got_name, path in got.items():
                spec = SAMPLES[got_name]
                say(f"ok      {path}  ({spec.description}; {spec.licence}; sha256 {spec.sha256[:12]}...)")
            for lost_name, reason in lost.items():  # a sample, or a step after it (s1_holdout)
                say(f"FAILED  {lost_name}: {reason}", err=True)
            bar.update(1)
    if failed:
        print(f"could not fetch {len(failed)} of {len(fetched) + len(failed)} sample(s)", file=sys.stderr)
        return 1
    return 0


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    from iconet.data.io import read_volume  # lazy: readers pull in pydicom / h5py

    # A DICOM folder of many files takes a while: a bar with the elapsed time (terminal only).
    with progress_bar(desc=f"reading {args.file.name}", quiet=args.quiet, bar_format="{desc} {elapsed}"):
        vol = read_volume(args.file, frame=args.frame, series_uid=args.series_uid)
    data = np.asarray(vol.data)
    finite = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data
    spacing = " x ".join(f"{s:g}" for s in vol.spacing)
    print(f"file         {args.file}")
    print(f"shape        {' x '.join(str(s) for s in vol.shape)}")
    print(f"dtype        {data.dtype}")
    print(f"spacing      {spacing} mm")
    print(f"orientation  {vol.orientation}")
    print(f"modality     {vol.modality or 'unknown'}")
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        p995 = float(np.percentile(finite, 99.5))
        print(f"range        {lo:g} .. {hi:g} (99.5th percentile {p995:g})")
    else:
        print("range        no finite value")
    if finite.size != data.size:
        print(f"non-finite   {data.size - finite.size} voxel(s)")
    return 0

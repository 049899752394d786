"""Split the training subject S1 into a training part and a held-out validation slab.

``iconet data fetch-samples --dest data`` already does this (into ``data/s1_holdout/``) once it
has fetched S1; this script redoes it from a given file, e.g. into another folder. The split
(:mod:`iconet.data.holdout`) cuts S1 along its third voxel axis:

    <out>/S1_train.nii.gz   voxels [:, :, 0:176)    training
    <out>/S1_val.nii.gz     voxels [:, :, 180:256)  validation (about 20 % of the brain)

with a 4-voxel gap; affines are kept exact, so both parts stay in S1's scanner space.

    python scripts/make_s1_holdout.py [--src data/pycortex_S1_T1.nii.gz] [--out data/s1_holdout]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iconet.data.errors import DataError
from iconet.data.holdout import write_s1_holdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=Path("data/pycortex_S1_T1.nii.gz"))
    ap.add_argument("--out", type=Path, default=Path("data/s1_holdout"))
    args = ap.parse_args()
    try:
        written = write_s1_holdout(args.src, args.out)
    except DataError as err:
        raise SystemExit(str(err)) from None
    for path in written.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

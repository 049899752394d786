"""Split the training subject S1 into a training part and a held-out validation slab.

iconet's shipped models are trained on one subject (pycortex S1) and scored on another
(Colin27), which they never see. Checkpoint and design choices need a validation set too, and
it must not be Colin27: this script cuts S1 along its third voxel axis (anterior–posterior for
S1's LIA orientation) into

    <out>/S1_train.nii.gz   voxels [:, :, 0:176)    training
    <out>/S1_val.nii.gz     voxels [:, :, 180:256)  validation (about 20 % of the brain)

with a 4-voxel gap so that no training slice neighbours a validation slice. Affines are kept
exact (nibabel's slicer moves the origin), so both parts stay in S1's scanner space.

    python scripts/make_s1_holdout.py [--src data/pycortex_S1_T1.nii.gz] [--out data/s1_holdout]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib

TRAIN_END = 176
VAL_START = 180


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=Path("data/pycortex_S1_T1.nii.gz"))
    ap.add_argument("--out", type=Path, default=Path("data/s1_holdout"))
    args = ap.parse_args()
    img = nib.load(args.src)
    if img.ndim != 3 or img.shape[2] <= VAL_START:
        raise SystemExit(f"{args.src}: expected a 3-D volume with more than {VAL_START} slices on axis 2, got {img.shape}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in (("S1_train", img.slicer[:, :, :TRAIN_END]), ("S1_val", img.slicer[:, :, VAL_START:])):
        path = args.out / f"{name}.nii.gz"
        tmp = path.with_name(path.name + ".tmp.nii.gz")
        nib.save(part, tmp)
        tmp.replace(path)
        print(f"wrote {path} {part.shape}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

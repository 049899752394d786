"""S1's held-out validation slab: what every S1 recipe validates on (never Colin27).

iconet's shipped models and demo recipes train on one subject (pycortex S1) and are scored on
another (Colin27), which no training or tuning step may see. Checkpoint and design choices
need a validation set too; this module cuts S1 along its third voxel axis (anterior-posterior
for S1's LIA orientation) into

    <out>/S1_train.nii.gz   voxels [:, :, 0:176)    training
    <out>/S1_val.nii.gz     voxels [:, :, 180:256)  validation (about 20 % of the brain)

with a 4-voxel gap, so that no training slice neighbours a validation slice. Affines are kept
exact (nibabel's slicer moves the origin), so both parts stay in S1's scanner space.

``iconet data fetch-samples --dest DIR`` writes them to ``DIR/s1_holdout/`` right after it has
fetched and checked S1 (:func:`iconet.data.samples.fetch_samples`); ``scripts/make_s1_holdout.py``
writes them from a given file.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib

from iconet.data.errors import DataError
from iconet.data.writing import atomic_output

#: the split along voxel axis 2: training slices [0, TRAIN_END), validation [VAL_START, end)
TRAIN_END = 176
VAL_START = 180
#: the folder (under the samples folder) and the subject names the S1 recipes expect
FOLDER = "s1_holdout"
TRAIN_NAME = "S1_train"
VAL_NAME = "S1_val"
#: SHA-256 of pycortex S1 (``iconet.data.samples.SAMPLES``): the volume the split is defined for
S1_SHA256 = "1a480d10e8c07fbca58e069efce2a11d477e180beb43f88bdad825b750055a28"


def write_s1_holdout(src: str | Path, out: str | Path, *, train_end: int = TRAIN_END,
                     val_start: int = VAL_START) -> dict[str, Path]:
    """Write ``out/S1_train.nii.gz`` (slices ``[0, train_end)`` of axis 2) and
    ``out/S1_val.nii.gz`` (``[val_start, end)``) from ``src``, each atomically.

    Returns:
        ``{"S1_train": path, "S1_val": path}``.

    Raises:
        DataError: ``src`` is not a 3-D NIfTI volume with more than ``val_start`` slices on
            axis 2, or ``0 < train_end <= val_start`` does not hold.
    """
    src = Path(src)
    if not 0 < train_end <= val_start:
        raise ValueError(f"need 0 < train_end <= val_start, got {train_end}, {val_start}")
    try:
        img = nib.load(src)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for a bad file
        raise DataError(src, f"not a readable NIfTI file: {err}") from None
    if img.ndim != 3 or img.shape[2] <= val_start:
        raise DataError(src, f"expected a 3-D volume with more than {val_start} slices on axis 2, got {img.shape}")
    written: dict[str, Path] = {}
    for name, part in ((TRAIN_NAME, img.slicer[:, :, :train_end]), (VAL_NAME, img.slicer[:, :, val_start:])):
        path = Path(out) / f"{name}.nii.gz"
        with atomic_output(path) as tmp:
            nib.save(part, tmp)
        written[name] = path
    return written

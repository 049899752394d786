"""Which axis of a scan runs across its slices, how far apart they are, and how thick.

:func:`slice_profile` reads it from the volume and its header:

* **axis** — the coarsest axis; refused when the volume is isotropic within 10 %
  (:data:`ISOTROPIC_TOLERANCE`) unless the caller names the axis.
* **spacing** — the distance between slice centres: the affine's column norm along the axis
  (for DICOM the reader derives it from ImagePositionPatient, and has refused unevenly spaced
  series).
* **thickness** (the FWHM of the Gaussian slice profile), first found of:

  1. the caller's value (``--slice-thickness``);
  2. ``meta["slice_profile"]`` of a volume made by :func:`iconet.data.through_plane.thick_slices`;
  3. DICOM ``SliceThickness`` (beside the spacing, it says whether slices leave gaps or overlap;
     ``SpacingBetweenSlices`` is not needed, the positions give the spacing);
  4. ``SliceThickness`` in a BIDS sidecar (``scan.json`` beside ``scan.nii.gz``, as dcm2niix writes);
  5. otherwise the spacing itself (contiguous slices; NIfTI headers carry no thickness), and the
     profile says it was assumed.

A thickness must lie in [``MIN_THICKNESS_OF_PIXEL`` × in-plane spacing, ``MAX_THICKNESS_OF_SPACING``
× slice spacing]: thinner than half an in-plane pixel cannot be simulated on the in-plane grid that
teaches the model; more than four spacings is no longer a stack of slices.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iconet.data.errors import DataError
from iconet.data.volume import Volume

#: a volume whose coarsest spacing is within this fraction of its finest is isotropic
ISOTROPIC_TOLERANCE = 0.10
MIN_THICKNESS_OF_PIXEL = 0.5
MAX_THICKNESS_OF_SPACING = 4.0
#: the fewest slices a fit accepts (the in-plane slices are its training images)
MIN_SLICES = 4


@dataclass(frozen=True)
class SliceProfile:
    """The slice geometry of a thick-slice scan.

    Attributes:
        axis: array axis across the slices.
        spacing: mm between slice centres.
        fwhm: mm, FWHM of the Gaussian slice profile (the slice thickness).
        in_plane: mm, spacings of the two other axes (ascending axis order).
        source: where ``fwhm`` came from, in words.
        assumed: True when no header or caller gave the thickness (``fwhm`` = ``spacing``).
    """

    axis: int
    spacing: float
    fwhm: float
    in_plane: tuple[float, float]
    source: str
    assumed: bool = False

    @property
    def gap(self) -> float:
        """mm between slices (negative: they overlap)."""
        return self.spacing - self.fwhm

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _where(volume: Volume) -> Path | str:
    return volume.source if volume.source is not None else volume.name


def through_plane_axis(volume: Volume, axis: int | None = None) -> int:
    """The axis across the slices: ``axis`` when given, else the coarsest one (see module doc).

    Raises:
        DataError: a 2-D image, a 4-D series flattened elsewhere, or an isotropic volume
            without a forced axis.
    """
    where = _where(volume)
    if min(volume.shape) <= 1:
        raise DataError(where, f"is a 2-D image (shape {'x'.join(map(str, volume.shape))}); making it "
                               "isotropic needs a stack of slices")
    sp = np.asarray(volume.spacing, dtype=np.float64)
    if axis is not None:
        if axis not in (0, 1, 2):
            raise DataError(where, f"--axis must be 0, 1 or 2, got {axis}")
        return int(axis)
    ax = int(np.flatnonzero(sp == sp.max())[-1])
    if sp.max() <= sp.min() * (1 + ISOTROPIC_TOLERANCE):
        raise DataError(where, f"is already isotropic within {ISOTROPIC_TOLERANCE:.0%} (voxel "
                               f"{' x '.join(f'{v:.3g}' for v in sp)} mm); name the axis (--axis) to force it")
    return ax


def _sidecar_thickness(volume: Volume) -> float | None:
    src = volume.source
    if src is None or not Path(src).is_file():
        return None
    name = Path(src).name
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            side = Path(src).with_name(name[: -len(ext)] + ".json")
            if side.is_file():
                try:
                    value = json.loads(side.read_text()).get("SliceThickness")
                except (OSError, ValueError, AttributeError):
                    return None
                return float(value) if isinstance(value, (int, float)) else None
    return None


def _header_thickness(volume: Volume, axis: int) -> tuple[float | None, str]:
    made = volume.meta.get("slice_profile")
    if isinstance(made, dict) and made.get("axis") == axis and made.get("fwhm_mm"):
        return float(made["fwhm_mm"]), str(made.get("source", "volume metadata"))
    dicom = volume.meta.get("dicom")
    if isinstance(dicom, dict) and dicom.get("SliceThickness") not in (None, ""):
        try:
            return float(dicom["SliceThickness"]), "DICOM SliceThickness"
        except (TypeError, ValueError):
            pass
    side = _sidecar_thickness(volume)
    if side is not None:
        return side, "BIDS sidecar SliceThickness"
    return None, ""


def slice_profile(volume: Volume, axis: int | None = None, slice_thickness: float | None = None) -> SliceProfile:
    """The :class:`SliceProfile` of ``volume`` (see the module docstring for every rule).

    Raises:
        DataError: a 2-D image, an isotropic volume without ``axis``, fewer than
            :data:`MIN_SLICES` slices, or a thickness out of range (given or from the header).
    """
    where = _where(volume)
    ax = through_plane_axis(volume, axis)
    n = volume.shape[ax]
    if n < MIN_SLICES:
        raise DataError(where, f"has {n} slice(s) along axis {ax}; fitting a model to the scan needs at least {MIN_SLICES}")
    sp = volume.spacing
    spacing = float(sp[ax])
    in_plane = tuple(float(sp[a]) for a in range(3) if a != ax)
    if slice_thickness is not None:
        fwhm, source, assumed = float(slice_thickness), "given", False
    else:
        found, source = _header_thickness(volume, ax)
        fwhm, assumed = (found, False) if found is not None else (spacing, True)
        if assumed:
            source = "assumed equal to the slice spacing (the header gives no slice thickness)"
    low, high = MIN_THICKNESS_OF_PIXEL * min(in_plane), MAX_THICKNESS_OF_SPACING * spacing
    if not (math.isfinite(fwhm) and low <= fwhm <= high):
        what = "--slice-thickness" if source == "given" else f"slice thickness ({source})"
        raise DataError(where, f"{what} {fwhm:g} mm is out of range for slices {spacing:g} mm apart "
                               f"with {min(in_plane):g} mm pixels (allowed {low:g} to {high:g} mm)")
    return SliceProfile(axis=ax, spacing=spacing, fwhm=fwhm, in_plane=in_plane, source=source, assumed=assumed)  # type: ignore[arg-type]


__all__ = ["ISOTROPIC_TOLERANCE", "MIN_SLICES", "SliceProfile", "slice_profile", "through_plane_axis"]

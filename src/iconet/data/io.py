"""Read and write medical images as :class:`~iconet.data.volume.Volume` with exact geometry.

``read_volume`` recognises a file by its content (and checks that the extension agrees):
NIfTI-1/2 (``.nii``, ``.nii.gz``), DICOM (a file, an enhanced multi-frame file, or a folder
holding a series), PNG / TIFF (grayscale), NPY, fastMRI HDF5. ``write_volume`` picks the format
from the output path. Format modules are imported on demand, so a missing optional package
(e.g. ``tifffile``) only matters to the format that needs it.

Writers never leave a half-written output: they write under a temporary name in the target's
folder and rename at the end (:func:`iconet.data.writing.atomic_output`, re-exported here).
"""

from __future__ import annotations

from pathlib import Path

from iconet.data.errors import DataError
from iconet.data.validate import (
    check_finite,
    check_not_empty,
    detect_format,
    extension,
    require_volume,
)
from iconet.data.volume import Volume
from iconet.data.writing import DEFAULT_DESCRIPTION, DataNote, GeometryDefaulted, GeometryNotStored, atomic_output, geometry_note

__all__ = ["read_volume", "write_volume", "atomic_output", "WRITE_EXTENSIONS", "DataNote", "GeometryDefaulted", "GeometryNotStored",
           "geometry_note"]

#: Output extensions :func:`write_volume` understands (a path without one is a DICOM folder).
WRITE_EXTENSIONS: tuple[str, ...] = (".nii", ".nii.gz", ".dcm", ".png", ".npy", ".tif", ".tiff")


def read_volume(
    path: str | Path,
    *,
    frame: int | None = None,
    series_uid: str | None = None,
    nan_policy: str = "error",
    max_bytes: int | None = None,
    require_3d: bool = False,
    spacing: tuple[float, float, float] | None = None,
) -> Volume:
    """Read a medical image or volume.

    Args:
        path: a NIfTI file, a DICOM file, a folder holding a DICOM series, a PNG/TIFF/NPY
            image, or a fastMRI ``.h5`` file. The content decides; the extension must agree.
        frame: which 3-D frame of a 4-D NIfTI to read (required when there are several).
        series_uid: which SeriesInstanceUID to read from a DICOM folder holding several.
        nan_policy: ``"error"`` refuses NaN/Inf voxels (with a count); ``"zero"`` sets them
            to 0 and records how many in ``meta["nonfinite_replaced"]``.
        max_bytes: refuse a volume whose voxels would take more memory than this.
        require_3d: refuse 2-D images (a single slice).
        spacing: voxel size for formats without geometry (PNG, TIFF, NPY, fastMRI without a
            header); refused for NIfTI / DICOM, which carry their own.

    Returns:
        A :class:`Volume` whose ``data`` keeps the source's dtype (native byte order) unless the
        file asks for rescaling (NIfTI ``scl_slope``/``scl_inter``, DICOM RescaleSlope/
        Intercept), which gives float32 (float64 for 32/64-bit sources).

    Raises:
        DataError: one line naming the file and the problem.
    """
    p = Path(path)
    fmt = detect_format(p)
    if spacing is not None and fmt in ("nifti", "nifti.gz", "dicom", "folder"):
        raise DataError(p, "spacing= is only for formats without geometry (PNG, TIFF, NPY, "
                           "fastMRI); this file carries its own")
    if fmt in ("nifti", "nifti.gz"):
        from iconet.data.nifti import read_nifti

        vol = read_nifti(p, frame=frame, max_bytes=max_bytes)
    elif fmt in ("dicom", "folder"):
        from iconet.data.dicom_read import read_dicom

        if frame is not None:
            raise DataError(p, "--frame (frame=) selects a frame of a 4-D NIfTI; DICOM input has no "
                               "frame selection (several series: use --series-uid UID, in Python series_uid=)")
        vol = read_dicom(p, series_uid=series_uid, max_bytes=max_bytes)
    elif fmt in ("png", "tiff", "npy"):
        from iconet.data import images

        reader = {"png": images.read_png, "tiff": images.read_tiff, "npy": images.read_npy}[fmt]
        vol = reader(p, max_bytes=max_bytes, spacing=spacing)
        _check_single_frame(p, frame)
    elif fmt == "hdf5":
        from iconet.data.fastmri import read_fastmri

        vol = read_fastmri(p, max_bytes=max_bytes, spacing=spacing)
        _check_single_frame(p, frame)
    else:  # pragma: no cover - detect_format only returns the formats above
        raise DataError(p, f"unsupported format {fmt}")
    if series_uid is not None and fmt not in ("dicom", "folder"):
        raise DataError(p, "--series-uid (series_uid=) only applies to DICOM input")
    return finish(vol, nan_policy=nan_policy, require_3d=require_3d)


def _check_single_frame(path: Path, frame: int | None) -> None:
    if frame not in (None, 0):
        raise DataError(path, f"has 1 frame, frame={frame} does not exist (valid: 0)")


def finish(vol: Volume, *, nan_policy: str = "error", require_3d: bool = False) -> Volume:
    """The checks every reader's output goes through: finite voxels, not all zero, 3-D."""
    data, n_bad = check_finite(vol.data, vol.source, nan_policy)
    if n_bad:
        vol.data = data
        vol.meta["nonfinite_replaced"] = n_bad
    check_not_empty(vol.data, vol.source)
    if require_3d:
        require_volume(vol)
    return vol


def write_volume(
    volume: Volume,
    path: str | Path,
    *,
    reference: Volume | None = None,
    description: str = DEFAULT_DESCRIPTION,
    scale: str | tuple[float, float] | None = None,
) -> Path:
    """Write ``volume`` in the format its path names; returns the path written.

    * ``.nii`` / ``.nii.gz``: NIfTI-1 (NIfTI-2 when the reference is NIfTI-2 or a side exceeds
      32767), source dtype kept, qform/sform codes from ``reference`` (else from the volume's
      own metadata, else 1 = scanner).
    * a folder (an existing folder, or a path without an extension): a DICOM series, one file
      per slice; ``.dcm``: a single-slice DICOM file. Patient/study identity comes from
      ``reference`` only; UIDs of the series and instances are new.
    * ``.png``: one 2-D slice, 8 or 16 bit; values it cannot hold exactly are refused unless
      ``scale="minmax"`` or ``scale=(low, high)`` says how to map them (recorded in the file).
    * ``.tif`` / ``.tiff``: grayscale pages (one per slice), dtype kept.
    * ``.npy``: the array as is (geometry is not stored: a warning says so).

    ``description`` goes into the header (NIfTI ``descrip``, DICOM DerivationDescription and
    SeriesDescription, PNG/TIFF description text).
    """
    if not isinstance(volume, Volume):
        raise TypeError(f"write_volume needs a Volume, got {type(volume).__name__}")
    p = Path(path)
    ext = extension(p)
    if scale is not None and ext != ".png":
        raise DataError(p, "scale= only applies to PNG output; other formats keep the values")
    if ext in (".nii", ".nii.gz"):
        from iconet.data.nifti import write_nifti

        return write_nifti(volume, p, reference=reference, description=description)
    if ext == ".dcm" or (ext == "" or p.is_dir()):
        from iconet.data.dicom_write import write_dicom_series

        return write_dicom_series(volume, p, reference=reference, description=description)
    if ext in (".png", ".npy", ".tif", ".tiff"):
        from iconet.data import images

        if ext == ".png":
            return images.write_png(volume, p, scale=scale, description=description)
        if ext == ".npy":
            return images.write_npy(volume, p)
        return images.write_tiff(volume, p, description=description)
    raise DataError(p, f"cannot write extension {ext!r}; use one of {', '.join(WRITE_EXTENSIONS)} "
                       "or a folder (DICOM series)")

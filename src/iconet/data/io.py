"""Read and write medical images as :class:`~iconet.data.volume.Volume` with exact geometry.

``read_volume`` recognises a file by its content (and checks that the extension agrees):
NIfTI-1/2 (``.nii``, ``.nii.gz``), DICOM (a file, an enhanced multi-frame file, or a folder
holding a series), PNG / TIFF (grayscale), NPY, fastMRI HDF5. ``write_volume`` picks the format
from the output path. Format modules are imported on demand, so a missing optional package
(e.g. ``tifffile``) only matters to the format that needs it.

Writers never leave a half-written output: they write under a temporary name in the target's
folder and rename at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from iconet.data.errors import DataError
from iconet.data.validate import (
    check_finite,
    check_not_empty,
    detect_format,
    extension,
    require_volume,
)
from iconet.data.volume import Volume

__all__ = ["read_volume", "write_volume", "atomic_output", "WRITE_EXTENSIONS", "DataNote", "GeometryNotStored",
           "geometry_note"]

#: Output extensions :func:`write_volume` understands (a path without one is a DICOM folder).
WRITE_EXTENSIONS: tuple[str, ...] = (".nii", ".nii.gz", ".dcm", ".png", ".npy", ".tif", ".tiff")

DEFAULT_DESCRIPTION = "iconet derived image"


class DataNote(UserWarning):
    """Something the user should know about data that was read or written, though nothing
    failed. A Python caller sees it once per message (the default warnings filter); the
    command line prints it as one ``note: <message>`` line, without Python's source location."""


class GeometryNotStored(DataNote):
    """A volume was written to PNG, TIFF or NPY, which store no geometry: the message
    (:func:`geometry_note`) gives the volume's own spacing, which is not written."""


def geometry_note(volume: Volume, path: str | Path) -> str | None:
    """What writing ``volume`` to ``path`` (a format without geometry) leaves out, in one line,
    or ``None`` when nothing is lost: the volume had no geometry either (read from PNG, TIFF or
    NPY without ``spacing=``, ``meta["geometry"] == "none"``; its unit spacing is not a
    measurement) or an identity affine.

    A single slice (``(H, W, 1)``) gives ``"<path> stores no geometry; the 0.5 x 0.5 mm pixel
    spacing (4 mm slice), orientation and position are not written"``; a volume gives its
    three voxel sizes. Geometry the source lacked and that was defaulted is named.
    """
    if volume.meta.get("geometry") == "none" or np.allclose(volume.affine, np.eye(4)):
        return None
    sp = [f"{v:.4g}" for v in volume.spacing]
    if volume.shape[2] == 1:
        what = f"the {sp[0]} x {sp[1]} mm pixel spacing ({sp[2]} mm slice)"
    else:
        what = f"the {' x '.join(sp)} mm voxel spacing"
    missing = volume.meta.get("geometry_missing")
    defaulted = f" (the source had no {', '.join(map(str, missing))}: those values are defaults)" if missing else ""
    return f"{path} stores no geometry; {what}, orientation and position are not written{defaulted}"


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
        from iconet.data.dicom import read_dicom

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
        from iconet.data.dicom import write_dicom_series

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


@contextmanager
def atomic_output(path: str | Path, *, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    The temporary name keeps the extension (``.nii.gz`` included), so libraries that choose
    the encoding from the name still do the right thing. On error the temporary output is
    removed and ``path`` is left as it was. ``folder=True`` creates a temporary folder; an
    existing target folder must be empty (it is replaced), a file is replaced atomically.
    """
    p = Path(path)
    if p.exists() and p.is_dir() != folder:
        kind = "a folder" if p.is_dir() else "a file"
        raise DataError(p, f"exists and is {kind}; refusing to replace it")
    if folder and p.is_dir() and any(p.iterdir()):
        raise DataError(p, "folder exists and is not empty; write a series into a new or empty "
                           "folder (mixing series in one folder makes them ambiguous)")
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(p, f"cannot create its folder: {e.strerror or e}") from e
    ext = extension(p)
    stem = p.name[: len(p.name) - len(ext)] if ext else p.name
    tmp = parent / f".{stem}.tmp-{uuid.uuid4().hex[:12]}{ext}"
    try:
        if folder:
            tmp.mkdir()
        yield tmp
        if folder and p.is_dir():
            p.rmdir()  # empty (checked above)
        os.replace(tmp, p)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def as_native(a: np.ndarray) -> np.ndarray:
    """``a`` in native byte order (same kind and size): big-endian files are common."""
    if a.dtype.byteorder not in ("=", "|") and a.dtype.byteorder != ("<" if np.little_endian else ">"):
        return a.astype(a.dtype.newbyteorder("="))
    return a


def float_dtype_for(source: np.dtype) -> np.dtype:
    """Float type that holds a rescaled ``source``: float32 for <= 16-bit, else float64."""
    source = np.dtype(source)
    if source.kind == "f":
        return np.dtype(np.float64) if source.itemsize >= 8 else np.dtype(np.float32)
    return np.dtype(np.float32) if source.itemsize <= 2 else np.dtype(np.float64)

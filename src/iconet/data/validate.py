"""Checks shared by the readers: what a file really is, and whether its voxels are usable.

Every failure is a :class:`~iconet.data.errors.DataError` whose message is one line,
``"<path>: <problem>"``.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from iconet.data.errors import DataError
from iconet.data.volume import Volume

NAN_POLICIES: tuple[str, ...] = ("error", "zero")

#: Human names of the formats :func:`sniff` recognises.
FORMAT_NAMES: dict[str, str] = {
    "nifti": "NIfTI file",
    "nifti.gz": "gzip-compressed NIfTI file",
    "dicom": "DICOM file",
    "png": "PNG image",
    "tiff": "TIFF image",
    "npy": "NumPy .npy array",
    "hdf5": "HDF5 file",
    "gzip": "gzip file that does not hold NIfTI",
    "jpeg": "JPEG image",
    "gif": "GIF image",
    "bmp": "BMP image",
    "zip": "zip archive",
    "npz": "NumPy .npz archive",
    "nifti-pair": "NIfTI/Analyze header (.hdr/.img pair)",
    "text": "text file",
    "empty": "empty file (0 bytes)",
    "unknown": "file of unknown format",
}

#: Which content each extension promises.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    ".nii.gz": ("nifti.gz",),
    ".nii": ("nifti",),
    ".dcm": ("dicom",),
    ".dicom": ("dicom",),
    ".ima": ("dicom",),
    ".png": ("png",),
    ".tif": ("tiff",),
    ".tiff": ("tiff",),
    ".npy": ("npy",),
    ".h5": ("hdf5",),
    ".hdf5": ("hdf5",),
}


def extension(path: str | Path) -> str:
    """The extension that decides the format: ``.nii.gz`` counts as one; lower case."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def check_exists(path: str | Path) -> Path:
    """The path as a :class:`Path`, or a DataError if it is missing or unreadable."""
    p = Path(path)
    if not p.exists():
        parent = p.parent
        hint = "" if parent.exists() else f" (its folder {parent} does not exist either)"
        raise DataError(p, f"no such file or folder{hint}")
    if not os.access(p, os.R_OK):
        raise DataError(p, "not readable (permission denied)")
    return p


def _nifti_magic(head: bytes) -> str | None:
    """``"nifti"`` when ``head`` (>= 352 bytes) starts a NIfTI-1/2 header, ``"nifti-pair"``, else None."""
    if len(head) >= 348:
        for order in ("<", ">"):
            size1 = int(np.frombuffer(head[:4], dtype=f"{order}i4")[0])
            if size1 == 348 and head[344:348] == b"n+1\x00":
                return "nifti"
            if size1 == 348 and head[344:348] == b"ni1\x00":
                return "nifti-pair"
            if size1 == 540 and head[4:8] == b"n+2\x00":
                return "nifti"
            if size1 == 540 and head[4:8] == b"ni2\x00":
                return "nifti-pair"
    return None


def sniff(path: str | Path) -> str:
    """Recognise a file by its content (never by its name). Returns a key of FORMAT_NAMES.

    A folder is ``"folder"``. Gzip files are opened far enough to see a NIfTI header.
    """
    p = Path(path)
    if p.is_dir():
        return "folder"
    with open(p, "rb") as f:
        head = f.read(1024)
    if not head:
        return "empty"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(p, "rb") as g:
                inner = g.read(544)
        except (OSError, EOFError, zlib.error):
            return "gzip"
        return "nifti.gz" if _nifti_magic(inner) == "nifti" else "gzip"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] in (b"GIF8",):
        return "gif"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"PK\x03\x04":
        return "npz" if p.suffix.lower() == ".npz" else "zip"
    magic = _nifti_magic(head)
    if magic is not None:
        return magic
    # HDF5 files may carry a user block of 512, 1024, 2048, ... bytes.
    if p.stat().st_size > 520:
        with open(p, "rb") as f:
            for off in (512, 1024, 2048, 4096):
                f.seek(off)
                if f.read(8) == b"\x89HDF\r\n\x1a\n":
                    return "hdf5"
    if _looks_like_text(head):
        return "text"
    if _dicom_without_preamble(p):
        return "dicom"
    return "unknown"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # A cut in the middle of a multi-byte character at the end of the block is fine.
        try:
            head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _dicom_without_preamble(p: Path) -> bool:
    """Old DICOM files (ACR-NEMA style) lack the 128-byte preamble and 'DICM'."""
    try:
        import pydicom

        ds = pydicom.dcmread(p, force=True, stop_before_pixels=True, specific_tags=[
            (0x0008, 0x0016), (0x0028, 0x0010), (0x0028, 0x0011)])
    except Exception:  # noqa: BLE001 - anything pydicom cannot parse is not DICOM to us
        return False
    return "Rows" in ds and "Columns" in ds


def detect_format(path: str | Path) -> str:
    """The format to read ``path`` with, checked against what its extension promises.

    Returns one of ``"folder"``, ``"nifti"``, ``"nifti.gz"``, ``"dicom"``, ``"png"``,
    ``"tiff"``, ``"npy"``, ``"hdf5"``; anything else is a DataError.
    """
    p = check_exists(path)
    kind = sniff(p)
    ext = extension(p)
    expected = EXTENSIONS.get(ext)
    if kind == "folder":
        return kind
    if kind == "empty":
        raise DataError(p, "is empty (0 bytes)")
    if expected is not None and kind not in expected:
        want = FORMAT_NAMES[expected[0]]
        got = FORMAT_NAMES.get(kind, kind)
        if kind == "nifti" and ext == ".nii.gz":
            raise DataError(p, "is an uncompressed NIfTI file named .nii.gz; rename it to .nii")
        if kind == "nifti.gz" and ext == ".nii":
            raise DataError(p, "is a gzip-compressed NIfTI file named .nii; rename it to .nii.gz")
        if kind == "gzip" and ext == ".nii.gz":
            raise DataError(p, "is not a valid .nii.gz: the gzip stream is truncated or corrupt, "
                               "or does not start with a NIfTI header")
        raise DataError(p, f"is {_a(got)}, not {_a(want)} as its extension {ext} says")
    if kind in ("nifti", "nifti.gz", "dicom", "png", "tiff", "npy", "hdf5"):
        return kind
    if kind == "nifti-pair":
        raise DataError(p, "NIfTI/Analyze .hdr/.img pairs are not supported; convert to .nii.gz")
    raise DataError(p, f"is {_a(FORMAT_NAMES.get(kind, kind))}; iconet reads NIfTI (.nii, .nii.gz), "
                       "DICOM (file or series folder), PNG, TIFF, NPY and fastMRI HDF5")


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" or noun.startswith("HDF") else f"a {noun}"


def check_size(path: str | Path | None, nbytes: int, max_bytes: int | None) -> None:
    """Refuse a volume whose voxels would take more than ``max_bytes`` in memory."""
    if max_bytes is not None and nbytes > max_bytes:
        raise DataError(path, f"volume needs {_human(nbytes)} in memory, more than the limit "
                              f"max_bytes={max_bytes} ({_human(max_bytes)})")


def _human(n: int) -> str:
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if x < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{n} B"  # pragma: no cover


def check_finite(data: np.ndarray, path: str | Path | None, nan_policy: str = "error"
                 ) -> tuple[np.ndarray, int]:
    """Refuse NaN/Inf voxels (``"error"``) or set them to 0 (``"zero"``).

    Returns the (possibly repaired) array and how many voxels were replaced.
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if not np.issubdtype(data.dtype, np.inexact):
        return data, 0
    bad = ~np.isfinite(data)
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        return data, 0
    if nan_policy == "error":
        n_nan = int(np.count_nonzero(np.isnan(data)))
        raise DataError(path, f"has {n_nan} NaN and {n_bad - n_nan} infinite voxels out of "
                              f"{data.size}; pass nan_policy='zero' to replace them with 0")
    data = np.array(data, copy=True)
    data[bad] = 0
    return data, n_bad


def check_not_empty(data: np.ndarray, path: str | Path | None) -> None:
    """Refuse an array without voxels or whose voxels are all 0."""
    if data.size == 0:
        raise DataError(path, f"has no voxels (shape {tuple(data.shape)})")
    if not np.any(data):
        raise DataError(path, f"all {data.size} voxels are 0 (an empty image)")


def require_volume(volume: Volume, *, min_slices: int = 2) -> Volume:
    """Refuse a 2-D image: a volume needs at least ``min_slices`` along its third axis.

    Use where an operation needs a true volume (e.g. through-plane processing).
    """
    shape = volume.shape
    if shape[2] < min_slices:
        raise DataError(volume.source, f"is a 2-D image (shape {shape}), but a 3-D volume with "
                                       f"at least {min_slices} slices is needed here")
    return volume


def check_ndim(shape: tuple[int, ...], path: str | Path | None, *, what: str = "array") -> None:
    """Refuse arrays that are not 2-D or 3-D (after dropping trailing singleton axes)."""
    core = tuple(shape)
    while len(core) > 3 and core[-1] == 1:
        core = core[:-1]
    if len(core) not in (2, 3):
        raise DataError(path, f"is a {len(core)}-D {what} of shape {tuple(shape)}; "
                              "only 2-D images and 3-D volumes are supported")

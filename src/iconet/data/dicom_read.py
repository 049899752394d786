"""Reading DICOM: single files, enhanced multi-frame files, series folders.

Geometry. A DICOM slice has ``Rows x Columns`` pixels; ImageOrientationPatient gives the
direction of a row (increasing column index) then of a column (increasing row index) in
patient LPS+; PixelSpacing is ``[between rows, between columns]``. iconet's Volume puts the
column index on array axis 0, the row index on axis 1 and the slice on axis 2 (as dcm2niix
does), so ``data[i, j, k] = pixel_array_k[j, i]`` and, in LPS::

    affine_lps[:3, 0] = row_cosine * PixelSpacing[1]
    affine_lps[:3, 1] = col_cosine * PixelSpacing[0]
    affine_lps[:3, 2] = (IPP_last - IPP_first) / (n - 1)   (n slices sorted along the normal)
    affine_lps[:3, 3] = IPP_first

then ``affine_ras = diag(-1, -1, 1, 1) @ affine_lps``. Slices are ordered by the projection of
ImagePositionPatient on the normal ``row_cosine x col_cosine``, never by file name or
InstanceNumber. Gantry tilt (positions not along the normal) is kept as a sheared affine.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iconet.data.dtypes import as_native
from iconet.data.errors import DataError
from iconet.data.geometry import lps_to_ras
from iconet.data.validate import check_size, sniff
from iconet.data.volume import Volume
from iconet.data.writing import GeometryDefaulted

__all__ = ["read_dicom", "read_dicom_file", "read_dicom_series", "list_series", "decoder_hint", "KEEP"]

# Position / orientation tolerances (mm, cosine units).
_ORIENT_TOL = 1e-4
_POS_REL_TOL = 1e-2

#: Attributes kept in ``meta["dicom"]`` (patient / study identity, acquisition context).
KEEP = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "StudyDescription",
    "AccessionNumber", "ReferringPhysicianName", "SeriesInstanceUID", "SeriesNumber",
    "SeriesDescription", "SeriesDate", "SeriesTime", "FrameOfReferenceUID", "Modality",
    "SOPClassUID", "SOPInstanceUID", "Manufacturer", "ManufacturerModelName", "BodyPartExamined",
    "PatientPosition", "SliceThickness", "SpacingBetweenSlices", "RescaleType", "Units",
    "ScanningSequence", "SequenceVariant", "MRAcquisitionType", "EchoTime", "RepetitionTime",
    "MagneticFieldStrength", "KVP", "ConvolutionKernel", "PhotometricInterpretation",
    "TransferSyntaxUID",
)


# What to install for each compressed transfer syntax (pydicom 3 plugins).
_LIBJPEG = "pip install pylibjpeg pylibjpeg-libjpeg"
_OPENJPEG = "pip install pylibjpeg pylibjpeg-openjpeg"
_HINTS = {
    "1.2.840.10008.1.2.4.50": f"{_LIBJPEG} (or pip install pillow)",
    "1.2.840.10008.1.2.4.51": _LIBJPEG,
    "1.2.840.10008.1.2.4.57": _LIBJPEG,
    "1.2.840.10008.1.2.4.70": _LIBJPEG,
    "1.2.840.10008.1.2.4.80": f"{_LIBJPEG} (or pip install pyjpegls)",
    "1.2.840.10008.1.2.4.81": f"{_LIBJPEG} (or pip install pyjpegls)",
    "1.2.840.10008.1.2.4.90": f"{_OPENJPEG} (or pip install pillow built with OpenJPEG)",
    "1.2.840.10008.1.2.4.91": f"{_OPENJPEG} (or pip install pillow built with OpenJPEG)",
    "1.2.840.10008.1.2.4.201": _OPENJPEG,
    "1.2.840.10008.1.2.4.202": _OPENJPEG,
    "1.2.840.10008.1.2.4.203": _OPENJPEG,
    "1.2.840.10008.1.2.5": "pip install pylibjpeg pylibjpeg-rle",
}
_DEFAULT_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm)"


def decoder_hint(transfer_syntax: str) -> str:
    """The ``pip install ...`` line that adds a decoder for ``transfer_syntax``."""
    return _HINTS.get(str(transfer_syntax), _DEFAULT_HINT)


def _pydicom():
    import pydicom

    return pydicom


def _dcmread(path: Path, *, headers_only: bool = False) -> Any:
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        try:
            return pydicom.dcmread(path, stop_before_pixels=headers_only)
        except InvalidDicomError:
            # Old files without the 128-byte preamble: accept only if they look like images.
            ds = pydicom.dcmread(path, stop_before_pixels=headers_only, force=True)
            if "Rows" not in ds:
                raise
            return ds
    except InvalidDicomError as e:
        raise DataError(path, "not a DICOM file (no 'DICM' marker)") from e
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
        raise DataError(path, f"unreadable DICOM file: {type(e).__name__}: {e}") from e


def _check_image(ds: Any, path: Path) -> None:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds \
            and "Rows" not in ds:
        sop = getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID", "unknown"))
        raise DataError(path, f"holds no image (no pixel data; SOP class {sop})")
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if spp != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(path, f"is a colour image (SamplesPerPixel {spp}, "
                              f"PhotometricInterpretation {photometric}); only grayscale "
                              "(MONOCHROME1/2) DICOM images are supported")


def _pixels(ds: Any, path: Path) -> np.ndarray:
    """Decoded stored values, ``(frames, rows, cols)`` or ``(rows, cols)``, native byte order."""
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    compressed = bool(ts is not None and ts.is_compressed)
    if compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(ts)
        except NotImplementedError as e:
            raise DataError(path, f"pixel data is compressed as {ts.name} ({ts}), which pydicom "
                                  "cannot decode") from e
        if not decoder.is_available:
            raise DataError(path, f"pixel data is compressed as {ts.name} ({ts}) and no decoder "
                                  f"is installed; install one: {decoder_hint(ts)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. excess padding, which pydicom removes
            arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001
        msg = f"{type(e).__name__}: {e}"
        if compressed:
            raise DataError(path, f"cannot decode {ts.name} pixel data ({msg}); a decoder that "
                                  f"handles it: {decoder_hint(ts)}") from e
        raise DataError(path, f"corrupt or truncated pixel data ({msg})") from e
    return as_native(np.asarray(arr))


def _floats(v: Any, n: int, what: str, path: Path) -> np.ndarray:
    try:
        vals = list(v) if hasattr(v, "__iter__") and not isinstance(v, (str, bytes)) else [v]
        a = np.asarray([float(x) for x in vals], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(path, f"invalid {what} {v!r}") from e
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise DataError(path, f"invalid {what} {v!r} (expected {n} numbers)")
    return a


def _plain(v: Any) -> Any:
    """A DICOM value as plain Python (str, float, int, list); bytes and sequences are dropped."""
    if v is None or isinstance(v, (bytes, bytearray)):
        return None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return [_plain(x) for x in v]
    if type(v).__name__ == "Sequence":
        return None
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)


def _dicom_meta(ds: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw in KEEP:
        if kw == "TransferSyntaxUID":
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            if ts is not None:
                out[kw] = str(ts)
            continue
        if kw in ds:
            v = _plain(ds[kw].value)
            if v is not None and v != "":
                out[kw] = v
    return out


@dataclass
class _Frame:
    """One 2-D slice: where it is, and how to get its stored values."""

    position: np.ndarray      # LPS, mm
    orientation: np.ndarray   # 6 cosines
    spacing: np.ndarray       # [between rows, between columns]
    slope: float
    intercept: float
    label: str                # file name or "frame n"
    pixels: Callable[[], np.ndarray]
    thickness: float | None = None


def _fg_value(groups: Any, seq: str, attr: str) -> Any:
    if groups is None or seq not in groups:
        return None
    items = groups[seq].value
    if not items or attr not in items[0]:
        return None
    return items[0][attr].value


def _enhanced_value(ds: Any, per_frame: Any, seq: str, attr: str) -> Any:
    """An attribute from the per-frame group, else the shared group, else the top level."""
    v = _fg_value(per_frame, seq, attr)
    if v is None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        v = _fg_value(shared[0] if shared else None, seq, attr)
    if v is None and attr in ds:
        v = ds[attr].value
    return v


def _frames_of_file(ds: Any, path: Path) -> tuple[list[_Frame], list[str]]:
    """The frames of one DICOM file; the second value lists geometry that was missing."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame_groups = ds.get("PerFrameFunctionalGroupsSequence")
    cache: dict[str, np.ndarray] = {}

    def all_pixels() -> np.ndarray:
        if "a" not in cache:
            a = _pixels(ds, path)
            cache["a"] = a.reshape((n,) + a.shape[-2:]) if a.ndim >= 2 else a
        return cache["a"]

    missing: list[str] = []
    frames: list[_Frame] = []
    enhanced = per_frame_groups is not None or "SharedFunctionalGroupsSequence" in ds
    gfov = ds.get("GridFrameOffsetVector")
    for f in range(n):
        pf = per_frame_groups[f] if per_frame_groups is not None and f < len(per_frame_groups) else None
        if enhanced:
            ipp = _enhanced_value(ds, pf, "PlanePositionSequence", "ImagePositionPatient")
            iop = _enhanced_value(ds, pf, "PlaneOrientationSequence", "ImageOrientationPatient")
            ps = _enhanced_value(ds, pf, "PixelMeasuresSequence", "PixelSpacing")
            th = _enhanced_value(ds, pf, "PixelMeasuresSequence", "SpacingBetweenSlices") or \
                _enhanced_value(ds, pf, "PixelMeasuresSequence", "SliceThickness")
            slope = _enhanced_value(ds, pf, "PixelValueTransformationSequence", "RescaleSlope")
            inter = _enhanced_value(ds, pf, "PixelValueTransformationSequence", "RescaleIntercept")
        else:
            ipp = ds.get("ImagePositionPatient")
            iop = ds.get("ImageOrientationPatient")
            ps = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
            th = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
            slope, inter = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        if iop is None:
            missing.append("ImageOrientationPatient")
            iop = [1, 0, 0, 0, 1, 0]
        if ps is None:
            missing.append("PixelSpacing")
            ps = [1, 1]
        iop_a = _floats(iop, 6, "ImageOrientationPatient", path)
        if ipp is None:
            missing.append("ImagePositionPatient")
            base = np.zeros(3)
            normal = np.cross(iop_a[:3], iop_a[3:])
            step = float(th) if th not in (None, "") else 1.0
            if gfov is not None and n > 1:
                ipp_a = base + normal * (float(gfov[f]) - float(gfov[0]))
            else:
                ipp_a = base + normal * step * f
        else:
            ipp_a = _floats(ipp, 3, "ImagePositionPatient", path)
            if not enhanced and n > 1:
                normal = np.cross(iop_a[:3], iop_a[3:])
                if gfov is not None and len(gfov) == n:
                    ipp_a = ipp_a + normal * (float(gfov[f]) - float(gfov[0]))
                elif th not in (None, ""):
                    ipp_a = ipp_a + normal * float(th) * f
                else:
                    raise DataError(path, f"multi-frame file with {n} frames gives no per-frame "
                                          "positions (no functional groups, GridFrameOffsetVector "
                                          "or SpacingBetweenSlices)")
        frames.append(_Frame(
            position=ipp_a,
            orientation=iop_a,
            spacing=_floats(ps, 2, "PixelSpacing", path),
            slope=1.0 if slope in (None, "") else float(slope),
            intercept=0.0 if inter in (None, "") else float(inter),
            label=f"{path.name} frame {f}" if n > 1 else path.name,
            pixels=(lambda f=f: all_pixels()[f]),
            thickness=None if th in (None, "") else float(th),
        ))
    return frames, sorted(set(missing))


def _assemble(frames: Sequence[_Frame], where: Path, rows: int, cols: int,
              stored_dtype: np.dtype, max_bytes: int | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sort frames along the slice normal, check the spacing, stack, rescale; LPS affine."""
    o0 = frames[0].orientation
    row_cos, col_cos = o0[:3], o0[3:]
    for fr in frames[1:]:
        if np.max(np.abs(fr.orientation - o0)) > _ORIENT_TOL:
            raise DataError(where, f"slices have different orientations ({frames[0].label}: "
                                   f"{np.round(o0, 4).tolist()}, {fr.label}: "
                                   f"{np.round(fr.orientation, 4).tolist()}); not one volume")
        if np.max(np.abs(fr.spacing - frames[0].spacing)) > 1e-4 * max(1.0, frames[0].spacing.max()):
            raise DataError(where, f"slices have different PixelSpacing ({frames[0].label}: "
                                   f"{frames[0].spacing.tolist()}, {fr.label}: {fr.spacing.tolist()})")
    if abs(np.dot(row_cos, col_cos)) > 1e-3:
        raise DataError(where, f"ImageOrientationPatient {o0.tolist()} has non-orthogonal row "
                               "and column directions")
    normal = np.cross(row_cos, col_cos)
    n = len(frames)
    proj = np.array([np.dot(fr.position, normal) for fr in frames])
    order = np.argsort(proj, kind="stable")
    frames = [frames[i] for i in order]
    proj = proj[order]
    if n > 1:
        gaps = np.diff(proj)
        typical = float(np.median(np.abs(gaps)))
        dup = int(np.count_nonzero(np.abs(gaps) <= max(1e-3, 1e-3 * typical)))
        if dup:
            raise DataError(where, f"slices share a position along the slice normal ({n} slices "
                                   f"at {n - dup} positions: several echoes, phases or time points "
                                   "in one series?); split the series first")
        step = (frames[-1].position - frames[0].position) / (n - 1)
        expected = frames[0].position[None, :] + np.arange(n)[:, None] * step[None, :]
        actual = np.stack([fr.position for fr in frames])
        dev = np.linalg.norm(actual - expected, axis=1)
        tol = _POS_REL_TOL * float(np.linalg.norm(step)) + 1e-3
        if dev.max() > tol:
            wide = np.flatnonzero(np.abs(gaps) > 1.5 * typical)
            if wide.size:  # name the first hole: the slices on either side of it
                i = int(wide[0])
                lost = max(1, int(round(abs(gaps[i]) / typical)) - 1)
                raise DataError(where, f"slice positions are not evenly spaced: {lost} slice(s) missing "
                                       f"between {frames[i].label} and "
                                       f"{frames[i + 1].label} (gap {abs(gaps[i]):.4g} mm where the "
                                       f"slices are {typical:.4g} mm apart)")
            raise DataError(where, f"slice positions are not evenly spaced (gaps from "
                                   f"{gaps.min():.4g} to {gaps.max():.4g} mm; missing slices?)")
    else:
        th = frames[0].thickness if frames[0].thickness else 1.0
        step = normal * th

    ps = frames[0].spacing
    aff = np.eye(4)
    aff[:3, 0] = row_cos * ps[1]
    aff[:3, 1] = col_cos * ps[0]
    aff[:3, 2] = step
    aff[:3, 3] = frames[0].position

    rescale = any(fr.slope != 1.0 or fr.intercept != 0.0 for fr in frames)
    out_dtype = np.dtype(np.float32) if rescale and stored_dtype.itemsize <= 2 else (
        np.dtype(np.float64) if rescale else stored_dtype)
    check_size(where, rows * cols * n * out_dtype.itemsize, max_bytes)
    data = np.empty((cols, rows, n), dtype=out_dtype)
    for k, fr in enumerate(frames):
        px = fr.pixels()
        if px.shape != (rows, cols):
            raise DataError(where, f"{fr.label} has {px.shape[0]}x{px.shape[1]} pixels, "
                                   f"expected {rows}x{cols}")
        if rescale:
            data[:, :, k] = (px.astype(np.float64) * fr.slope + fr.intercept).T
        else:
            data[:, :, k] = px.T
    meta: dict[str, Any] = {"n_slices": n}
    if rescale:
        slopes = sorted({fr.slope for fr in frames})
        inters = sorted({fr.intercept for fr in frames})
        meta["rescale"] = {"slope": slopes[0] if len(slopes) == 1 else slopes,
                           "intercept": inters[0] if len(inters) == 1 else inters}
    return data, aff, meta


def _volume(ds: Any, data: np.ndarray, aff_lps: np.ndarray, meta: dict, source: Path,
            missing: list[str]) -> Volume:
    modality = str(ds.get("Modality", "")).strip() or None
    m = {"format": "dicom", "dicom": _dicom_meta(ds), **meta}
    if modality == "CT":
        m["units"] = "HU"  # CT Image Storage: stored values rescale to Hounsfield units
    elif modality == "PT" and "Units" in ds:
        m["units"] = str(ds.Units)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        m["photometric"] = "MONOCHROME1"  # values unchanged; displays inverted
    if missing:
        m["geometry_missing"] = missing
        warnings.warn(f"{source}: no {', '.join(missing)}; geometry defaulted (unit spacing / "
                      "axial orientation)", GeometryDefaulted, stacklevel=3)
    return Volume(data=data, affine=lps_to_ras(aff_lps), modality=modality, meta=m, source=source)


def read_dicom_file(path: str | Path, *, series_uid: str | None = None,
                    max_bytes: int | None = None) -> Volume:
    """Read one DICOM file: a single slice, or all frames of a (enhanced) multi-frame file."""
    p = Path(path)
    ds = _dcmread(p)
    _check_image(ds, p)
    if series_uid is not None and str(ds.get("SeriesInstanceUID", "")) != series_uid:
        raise DataError(p, f"belongs to series {ds.get('SeriesInstanceUID')}, not {series_uid}")
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames, missing = _frames_of_file(ds, p)
    check_size(p, rows * cols * len(frames) * max(1, int(ds.get("BitsAllocated", 16)) // 8),
               max_bytes)
    stored = _stored_dtype(ds)
    data, aff, meta = _assemble(frames, p, rows, cols, stored, max_bytes)
    if len(frames) > 1:
        meta["n_frames"] = len(frames)
    return _volume(ds, data, aff, meta, p, missing)


def _stored_dtype(ds: Any) -> np.dtype:
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if "FloatPixelData" in ds:
        return np.dtype(np.float32)
    if "DoubleFloatPixelData" in ds:
        return np.dtype(np.float64)
    if bits == 1:
        return np.dtype(np.uint8)
    size = {8: 1, 16: 2, 32: 4}.get(bits, 2)
    return np.dtype(f"{'i' if signed else 'u'}{size}")


def list_series(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The DICOM image series in ``folder`` (not recursive), by SeriesInstanceUID.

    Each value has ``description``, ``modality``, ``number`` and ``files`` (sorted paths).
    Files that are not DICOM images (DICOMDIR, notes, hidden files) are skipped.
    """
    series = _scan(Path(folder))
    for s in series.values():
        s.pop("headers")
    return series


def _scan(folder: Path) -> dict[str, dict[str, Any]]:
    """Like :func:`list_series`, with the parsed headers kept under ``"headers"``."""
    series: dict[str, dict[str, Any]] = defaultdict(lambda: {"files": [], "headers": []})
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        try:
            if sniff(f) != "dicom":
                continue
        except OSError:
            continue
        try:
            ds = _dcmread(f, headers_only=True)
        except DataError:
            continue
        if "Rows" not in ds:  # DICOMDIR, SR, presentation state, ...
            continue
        uid = str(ds.get("SeriesInstanceUID", "")) or "(no SeriesInstanceUID)"
        s = series[uid]
        s["files"].append(f)
        s["headers"].append(ds)
        s.setdefault("description", str(ds.get("SeriesDescription", "")).strip())
        s.setdefault("modality", str(ds.get("Modality", "")).strip())
        s.setdefault("number", _plain(ds.get("SeriesNumber")))
    return dict(series)


def _describe(series: dict[str, dict[str, Any]]) -> str:
    """``UID ('description', modality, N slices in M files); ...`` for an error message."""
    parts = []
    for uid, s in series.items():
        desc = s.get("description") or "no description"
        n_files = len(s["files"])
        n_slices = sum(int(h.get("NumberOfFrames", 1) or 1) for h in s.get("headers", [])) or n_files
        parts.append(f"{uid} ({desc!r}, {s.get('modality') or '?'}, {n_slices} slice{'s' * (n_slices != 1)} "
                     f"in {n_files} file{'s' * (n_files != 1)})")
    return "; ".join(parts)


#: how to pick a series, for the command line and for Python (the one message serves both)
CHOOSE_SERIES = "choose one with --series-uid UID (Python: read_volume(folder, series_uid='UID'))"


def read_dicom_series(folder: str | Path, *, series_uid: str | None = None,
                      max_bytes: int | None = None) -> Volume:
    """Read the DICOM series in ``folder`` (``series_uid`` picks one when there are several)."""
    d = Path(folder)
    series = _scan(d)
    if not series:
        n_files = sum(1 for f in d.iterdir() if f.is_file())
        n_dirs = sum(1 for f in d.iterdir() if f.is_dir())
        hint = " (point at the folder that holds the .dcm files)" if n_dirs else ""
        raise DataError(d, f"holds no DICOM images ({n_files} files, {n_dirs} subfolders){hint}")
    if series_uid is None:
        if len(series) > 1:
            raise DataError(d, f"holds {len(series)} DICOM series; {CHOOSE_SERIES}: {_describe(series)}")
        uid = next(iter(series))
    else:
        if series_uid not in series:
            raise DataError(d, f"has no series {series_uid}; it holds: {_describe(series)}")
        uid = series_uid
    files, headers = series[uid]["files"], series[uid]["headers"]
    first = headers[0]
    for f, h in zip(files, headers):
        _check_image(h, f)
    multi = [f.name for f, h in zip(files, headers) if int(h.get("NumberOfFrames", 1) or 1) > 1]
    if multi:
        if len(files) == 1:
            vol = read_dicom_file(files[0], max_bytes=max_bytes)
            vol.meta["series_files"] = 1
            return vol
        raise DataError(d, f"series {uid} mixes {len(multi)} multi-frame files with other files "
                           f"(e.g. {multi[0]}); read the multi-frame files one by one")
    rows, cols = int(first.Rows), int(first.Columns)
    for f, h in zip(files, headers):
        if (int(h.Rows), int(h.Columns)) != (rows, cols):
            raise DataError(d, f"{f.name} has {h.Rows}x{h.Columns} pixels, {files[0].name} has "
                               f"{rows}x{cols}; not one volume")
    stored = _stored_dtype(first)
    check_size(d, rows * cols * len(files) * stored.itemsize, max_bytes)
    frames: list[_Frame] = []
    missing_all: set[str] = set()
    for f, h in zip(files, headers):
        fr, missing = _frames_of_file(h, f)
        if missing and len(files) > 1 and "ImagePositionPatient" in missing:
            raise DataError(f, "has no ImagePositionPatient; cannot order the series' slices")
        missing_all.update(missing)

        def load(f: Path = f) -> np.ndarray:
            return _pixels(_dcmread(f), f)

        fr[0].pixels = load
        frames.extend(fr)
    data, aff, meta = _assemble(frames, d, rows, cols, stored, max_bytes)
    meta["series_files"] = len(files)
    return _volume(first, data, aff, meta, d, sorted(missing_all))


def read_dicom(path: str | Path, *, series_uid: str | None = None,
               max_bytes: int | None = None) -> Volume:
    """A DICOM file (single or multi-frame) or a folder holding a series."""
    p = Path(path)
    if p.is_dir():
        return read_dicom_series(p, series_uid=series_uid, max_bytes=max_bytes)
    return read_dicom_file(p, series_uid=series_uid, max_bytes=max_bytes)

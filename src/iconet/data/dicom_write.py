"""Writing a volume as a derived DICOM series (one file per slice) or a single-slice file.

The geometry is the inverse of the reader's (:mod:`iconet.data.dicom_read` states the
convention): the volume's array axis 0 runs along a row (the column index), axis 1 down a
column, axis 2 across slices, so ``ImageOrientationPatient`` is the LPS direction of axes 0
and 1, ``PixelSpacing`` is ``[axis-1 step, axis-0 step]`` and slice ``k`` sits at
``ImagePositionPatient = origin + k * axis-2 step``. Reading the series back gives the
volume's affine and values (``tests/test_io_dicom.py``).
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iconet.data.errors import DataError
from iconet.data.geometry import ras_to_lps
from iconet.data.validate import extension
from iconet.data.volume import Volume
from iconet.data.writing import DEFAULT_DESCRIPTION, atomic_output

__all__ = ["write_dicom_series"]

# Copied from a reference into a derived series (patient, study, frame of reference).
_IDENTITY = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "StudyDescription",
    "AccessionNumber", "ReferringPhysicianName", "FrameOfReferenceUID", "BodyPartExamined",
    "PatientPosition",
)


@dataclass
class _Encoding:
    stored: np.ndarray        # (I, J, K) integers, uint8 / uint16 / int16
    slope: float
    intercept: float
    bits_allocated: int
    bits_stored: int
    signed: bool


def _encode(data: np.ndarray, path: Path, force_rescale: bool = False) -> _Encoding:
    """Integers that fit 16 bits are stored exactly; anything else is mapped linearly to uint16
    with RescaleSlope/Intercept (the quantisation step is the slope)."""
    if data.dtype.kind == "c":
        raise DataError(path, "complex voxels cannot be written to DICOM; take the magnitude")
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if data.dtype.kind == "f":
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        if n_bad:
            raise DataError(path, f"has {n_bad} NaN/Inf voxels, which DICOM cannot store")
    lo = float(data.min())
    hi = float(data.max())
    integral = data.dtype.kind in "iu" or bool(np.all(data == np.round(data)))
    if data.dtype == np.uint8:
        return _Encoding(data, 1.0, 0.0, 8, 8, False)
    if integral and lo >= 0 and hi <= 65535:
        bits = max(1, int(hi).bit_length())
        return _Encoding(data.astype(np.uint16), 1.0, 0.0, 16, max(bits, 8), False)
    if integral and lo >= -32768 and hi <= 32767:
        bits = max(int(-lo - 1).bit_length() if lo < 0 else 0, int(hi).bit_length()) + 1
        return _Encoding(data.astype(np.int16), 1.0, 0.0, 16, max(bits, 8), True)
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    if integral:  # integers that do not fit 16 bits: say that they lose precision
        warnings.warn(f"{path}: integer values {lo:g}..{hi:g} do not fit 16 bits; stored with "
                      f"RescaleSlope {slope:.6g} (values rounded to that step)", stacklevel=3)
    stored = np.rint((data.astype(np.float64) - lo) / slope)
    return _Encoding(np.clip(stored, 0, 65535).astype(np.uint16), slope, lo, 16, 16, False)


def _ds(v: float) -> Any:
    from pydicom.valuerep import DSfloat

    return DSfloat(float(v), auto_format=True)


def _sop_class(modality: str) -> str:
    from pydicom.uid import CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage

    return {"MR": MRImageStorage, "CT": CTImageStorage}.get(modality, SecondaryCaptureImageStorage)


def write_dicom_series(volume: Volume, path: str | Path, *, reference: Volume | None = None,
                       description: str = DEFAULT_DESCRIPTION) -> Path:
    """Write ``volume`` as a DICOM series (one file per slice) into the folder ``path``.

    ``path`` ending in ``.dcm`` writes a single-slice volume as one file. Patient and study
    identity (StudyInstanceUID, FrameOfReferenceUID, patient fields) come from
    ``reference.meta["dicom"]`` when a reference read from DICOM is given; otherwise a new
    study is made. SeriesInstanceUID and SOPInstanceUIDs are always new. Integers that fit 16
    bits are stored exactly; other values are stored as uint16 with RescaleSlope/Intercept.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    p = Path(path)
    single = extension(p) == ".dcm"
    data = np.asarray(volume.data)
    I, J, K = data.shape
    if single and K != 1:
        raise DataError(p, f"a .dcm path holds one slice, the volume has {K}; give a folder "
                           "path to write a series")
    if max(I, J) > 65535:
        raise DataError(p, f"slices of {I}x{J} pixels exceed DICOM's 65535 Rows/Columns")
    enc = _encode(data, p)

    aff = ras_to_lps(volume.affine)
    di, dj = np.linalg.norm(aff[:3, 0]), np.linalg.norm(aff[:3, 1])
    if di == 0 or dj == 0:
        raise DataError(p, "affine has a zero-length in-plane axis")
    row_cos, col_cos = aff[:3, 0] / di, aff[:3, 1] / dj
    if abs(np.dot(row_cos, col_cos)) > 1e-6:
        raise DataError(p, "affine shears the slice plane (in-plane axes not orthogonal); DICOM "
                           "cannot represent it")
    normal = np.cross(row_cos, col_cos)
    step = aff[:3, 2]
    between = abs(float(np.dot(step, normal)))
    if K > 1 and between < 1e-6:
        raise DataError(p, "slice axis lies in the slice plane; DICOM cannot represent it")
    if K == 1:
        between = float(np.linalg.norm(step)) or 1.0

    ref_dicom: dict[str, Any] = dict(reference.meta.get("dicom", {})) if reference is not None else {}
    modality = (volume.modality or (reference.modality if reference is not None else None)
                or ref_dicom.get("Modality") or "OT")
    sop_class = _sop_class(modality)
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    study_uid = ref_dicom.get("StudyInstanceUID") or generate_uid()
    for_uid = ref_dicom.get("FrameOfReferenceUID") or generate_uid()
    series_uid = generate_uid()
    ref_number = ref_dicom.get("SeriesNumber")
    series_number = (int(ref_number) + 1000) if isinstance(ref_number, (int, float)) else 1001
    thickness = ref_dicom.get("SliceThickness")
    if not isinstance(thickness, (int, float)) or abs(float(thickness) - between) > 1e-3 * between:
        thickness = between  # the reference's no longer describes these slices
    lo = float(enc.stored.min()) * enc.slope + enc.intercept
    hi = float(enc.stored.max()) * enc.slope + enc.intercept
    rescale_needed = enc.slope != 1.0 or enc.intercept != 0.0 or modality == "CT"
    desc = " ".join(description.split())

    def dataset(k: int) -> Any:
        sop_uid = generate_uid()
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = sop_class
        fm.MediaStorageSOPInstanceUID = sop_uid
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = fm
        ds.preamble = b"\x00" * 128
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
        ds.ContentDate, ds.ContentTime = date, time
        ds.SeriesDate, ds.SeriesTime = date, time
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                   "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
            setattr(ds, kw, "")  # type 2: present, possibly empty
        if not ref_dicom:
            ds.StudyDate, ds.StudyTime = date, time
        for kw in _IDENTITY:
            if kw in ref_dicom and kw not in ("StudyInstanceUID", "FrameOfReferenceUID"):
                setattr(ds, kw, ref_dicom[kw])
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        ds.Modality = modality
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = desc[:64]
        ds.DerivationDescription = desc[:1024]
        ds.Manufacturer = "iconet"
        if sop_class == _sop_class("OT") and modality not in ("MR", "CT"):
            ds.ConversionType = "WSD"
        if modality == "MR":
            ds.ScanningSequence = ref_dicom.get("ScanningSequence", "RM")
            ds.SequenceVariant = ref_dicom.get("SequenceVariant", "NONE")
            ds.ScanOptions = ""
            ds.MRAcquisitionType = ref_dicom.get("MRAcquisitionType", "")
            ds.EchoTrainLength = ""
            for kw in ("EchoTime", "RepetitionTime", "MagneticFieldStrength"):
                if kw in ref_dicom:
                    setattr(ds, kw, ref_dicom[kw])
        if modality == "CT":
            ds.KVP = ref_dicom.get("KVP", "")
            ds.RescaleType = "HU"
        pos = aff[:3, 3] + k * step
        ds.ImagePositionPatient = [_ds(v) for v in pos]
        ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([row_cos, col_cos])]
        ds.PixelSpacing = [_ds(dj), _ds(di)]
        ds.SliceThickness = _ds(float(thickness))
        ds.SpacingBetweenSlices = _ds(between)
        ds.SliceLocation = _ds(float(np.dot(pos, normal)))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = J, I
        ds.BitsAllocated = enc.bits_allocated
        ds.BitsStored = enc.bits_stored
        ds.HighBit = enc.bits_stored - 1
        ds.PixelRepresentation = 1 if enc.signed else 0
        if rescale_needed:
            ds.RescaleSlope = _ds(enc.slope)
            ds.RescaleIntercept = _ds(enc.intercept)
            if modality != "CT":
                ds.RescaleType = "US"  # unspecified units
        ds.WindowCenter = _ds((lo + hi) / 2)
        ds.WindowWidth = _ds(max(hi - lo, 1.0))
        ds.BurnedInAnnotation = "NO"
        ds.PixelData = np.ascontiguousarray(enc.stored[:, :, k].T).tobytes()
        return ds

    if single:
        with atomic_output(p) as tmp:
            pydicom.dcmwrite(tmp, dataset(0), enforce_file_format=True)
        return p
    with atomic_output(p, folder=True) as tmp:
        width = max(4, len(str(K)))
        for k in range(K):
            pydicom.dcmwrite(tmp / f"slice_{k + 1:0{width}d}.dcm", dataset(k),
                             enforce_file_format=True)
    return p

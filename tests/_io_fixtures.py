"""Helpers for the I/O tests: real test files shipped with nibabel / pydicom, tiny writers.

Nothing here is copied into the repository: the files are looked up in the installed packages
and every derived file is written into pytest's ``tmp_path``.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from nibabel.affines import apply_affine

from iconet.data.io import read_volume, write_volume
from iconet.data.volume import Volume


def nib_data(name: str) -> Path:
    from nibabel.testing import data_path

    p = Path(data_path) / name
    if not p.exists():
        pytest.skip(f"nibabel test file {name} is not installed")
    return p


def dicom_data(name: str) -> Path:
    """A file of pydicom's test data; never downloads (pydicom-data files are skipped)."""
    from pydicom.data import get_testdata_file

    p = get_testdata_file(name, download=False)
    if p is None:
        pytest.skip(f"{name} is not in the installed pydicom test data "
                    "(it ships with the optional 'pydicom-data' package)")
    return Path(p)


def anatomical() -> Volume:
    """The real big-endian T1 slab of nibabel (33 x 41 x 25, 2 mm, LAS)."""
    return read_volume(nib_data("anatomical.nii"))


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A rotation matrix (radians about x, then y, then z)."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique(affine: np.ndarray, angles: tuple[float, float, float] = (0.3, -0.2, 0.5),
            shift: tuple[float, float, float] = (11.5, -7.25, 3.0)) -> np.ndarray:
    """``affine`` rotated about the world origin and shifted: an oblique acquisition."""
    r = np.eye(4)
    r[:3, :3] = rotation(*angles)
    r[:3, 3] = shift
    return r @ affine


def write_series_shuffled(volume: Volume, folder: Path, *, seed: int = 0, prefix: str = "",
                          **kwargs) -> list[str]:
    """Write ``volume`` as a DICOM series, then rename its files to shuffled meaningless names
    (so that name order says nothing about slice order). Returns the new names."""
    tmp = folder.parent / f".{folder.name}-{prefix}staging"
    write_volume(volume, tmp, **kwargs)
    files = sorted(tmp.iterdir())
    names = [f"{prefix}IM{i:03d}" for i in range(len(files))]
    random.Random(seed).shuffle(names)
    folder.mkdir(parents=True, exist_ok=True)
    for f, n in zip(files, names):
        shutil.move(str(f), str(folder / n))
    tmp.rmdir()
    return names


def assert_same_world(src: Volume, dst: Volume, atol_mm: float = 1e-4) -> None:
    """Every voxel of ``dst`` sits at the world position of a voxel of ``src`` with the same
    value (checked with nibabel's affine maths), and the volumes hold the same voxel count."""
    assert int(np.prod(src.shape)) == int(np.prod(dst.shape))
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in dst.shape], indexing="ij"), -1).reshape(-1, 3)
    world = apply_affine(dst.affine, ijk)
    src_ijk = apply_affine(np.linalg.inv(src.affine), world)
    rounded = np.rint(src_ijk)
    # positions agree to atol_mm (converted to voxels of the source)
    err_mm = np.linalg.norm((src_ijk - rounded) * np.asarray(src.spacing), axis=1)
    assert err_mm.max() < atol_mm, err_mm.max()
    idx = rounded.astype(int)
    assert np.all(idx >= 0) and np.all(idx < np.asarray(src.shape))
    np.testing.assert_array_equal(src.data[idx[:, 0], idx[:, 1], idx[:, 2]],
                                  dst.data.reshape(-1))


def enhanced_mr(volume: Volume, path: Path, *, slope: float = 2.0, intercept: float = -5.0,
                seed: int = 0) -> None:
    """Write ``volume`` (integer data) as an Enhanced MR Image Storage multi-frame file whose
    frames are in shuffled order, with geometry only in the functional groups (positions per
    frame, orientation / spacing / rescale shared), as scanners write them. Stored values are
    ``(data - intercept) / slope`` so the reader must apply the rescale to get ``data`` back."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid
    import pydicom

    from iconet.data.geometry import ras_to_lps

    data = np.asarray(volume.data).astype(np.float64)
    stored = np.rint((data - intercept) / slope).astype(np.int16)
    aff = ras_to_lps(volume.affine)
    di, dj = np.linalg.norm(aff[:3, 0]), np.linalg.norm(aff[:3, 1])
    rc, cc = aff[:3, 0] / di, aff[:3, 1] / dj
    I, J, K = stored.shape
    order = list(range(K))
    random.Random(seed).shuffle(order)

    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = EnhancedMRImageStorage
    fm.MediaStorageSOPInstanceUID = generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.preamble = b"\x00" * 128
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = fm.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "MR"
    ds.SeriesDescription = "enhanced test"
    ds.NumberOfFrames = K
    ds.Rows, ds.Columns = J, I
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1

    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [f"{dj:.10g}", f"{di:.10g}"]
    pm.SliceThickness = f"{np.linalg.norm(aff[:3, 2]):.10g}"
    po = Dataset()
    po.ImageOrientationPatient = [f"{v:.12g}" for v in np.concatenate([rc, cc])]
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = f"{slope:g}", f"{intercept:g}", "US"
    shared.PixelMeasuresSequence = Sequence([pm])
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for k in order:
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [f"{v:.12g}" for v in aff[:3, 3] + k * aff[:3, 2]]
        item.PlanePositionSequence = Sequence([pp])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    frames = np.stack([stored[:, :, k].T for k in order])
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def numpy_rss(kspace: np.ndarray) -> np.ndarray:
    """Independent reference (NumPy): RSS of the centred orthonormal inverse FFT, (c, H, W)."""
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"),
                          axes=(-2, -1))
    return np.sqrt((np.abs(img) ** 2).sum(axis=0))


def file_size(p: Path) -> int:
    return os.stat(p).st_size

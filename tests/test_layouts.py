"""Public data-set layouts, written as tiny files in their exact on-disk form."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from iconet.data.errors import DataError
from iconet.data.layouts import Case, find_cases, find_fastmri, find_hecktor, find_ixi, find_plain


def _nii(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full((8, 8, 4), value, dtype=np.float32), np.eye(4)), path)
    return path


def test_ixi(tmp_path):
    for sid in ("IXI002-Guys-0828", "IXI012-HH-1211"):
        for c in ("T1", "T2", "PD"):
            _nii(tmp_path / f"IXI-{c}" / f"{sid}-{c}.nii.gz")
    _nii(tmp_path / "IXI-T2" / "IXI013-HH-1212-T2.nii.gz")  # T2 only
    cases = find_ixi(tmp_path, "T2")
    assert [c.subject for c in cases] == ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212"]
    assert cases[0].images == {"T2": tmp_path / "IXI-T2" / "IXI002-Guys-0828-T2.nii.gz"}
    assert cases[0].label is None
    both = find_ixi(tmp_path, ["T1", "PD"])
    assert [c.subject for c in both] == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    assert set(both[1].images) == {"T1", "PD"}
    assert nib.load(both[1].images["PD"]).shape == (8, 8, 4)


def test_brats2021(tmp_path):
    for sid in ("BraTS2021_00000", "BraTS2021_00002"):
        for c in ("t1", "t1ce", "t2", "flair", "seg"):
            _nii(tmp_path / "RSNA_ASNR_MICCAI_BraTS2021_TrainingData" / sid / f"{sid}_{c}.nii.gz")
    (tmp_path / "RSNA_ASNR_MICCAI_BraTS2021_TrainingData" / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz").unlink()
    cases = find_cases(tmp_path, "brats2021")
    assert [c.subject for c in cases] == ["BraTS2021_00000", "BraTS2021_00002"]
    c0 = cases[0]
    assert set(c0.images) == {"t1", "t1ce", "t2", "flair"}
    assert c0.images["t1"].name == "BraTS2021_00000_t1.nii.gz"
    assert c0.images["t1ce"].name == "BraTS2021_00000_t1ce.nii.gz"  # _t1 must not swallow _t1ce
    assert c0.label is not None and c0.label.name == "BraTS2021_00000_seg.nii.gz"
    assert cases[1].label is None
    only_t2 = find_cases(tmp_path, "brats2021", contrasts="t2")
    assert set(only_t2[0].images) == {"t2"}


def test_hecktor(tmp_path):
    for sid in ("CHUM-001", "MDA-010"):
        _nii(tmp_path / "imagesTr" / f"{sid}__CT.nii.gz", -1000.0)
        _nii(tmp_path / "imagesTr" / f"{sid}__PT.nii.gz", 2.5)
    _nii(tmp_path / "labelsTr" / "CHUM-001.nii.gz", 1.0)
    cases = find_hecktor(tmp_path)
    assert [c.subject for c in cases] == ["CHUM-001", "MDA-010"]
    assert set(cases[0].images) == {"CT", "PT"}
    assert cases[0].label == tmp_path / "labelsTr" / "CHUM-001.nii.gz"
    assert cases[1].label is None
    assert float(nib.load(cases[1].images["PT"]).get_fdata().max()) == 2.5
    assert set(find_hecktor(tmp_path, "PT")[0].images) == {"PT"}


def test_fastmri_singlecoil(tmp_path):
    for name in ("file1000001.h5", "file1000007.h5"):
        with h5py.File(tmp_path / name, "w") as f:
            f.create_dataset("kspace", data=np.zeros((4, 8, 8), dtype=np.complex64))
            f.create_dataset("reconstruction_esc", data=np.zeros((4, 8, 8), dtype=np.float32))
            f.attrs["acquisition"] = "CORPD_FBK"
    cases = find_fastmri(tmp_path)
    assert [c.subject for c in cases] == ["file1000001", "file1000007"]
    assert cases[0].images == {"kspace": tmp_path / "file1000001.h5"}
    assert cases[0].meta["kspace_shape"] == (4, 8, 8) and cases[0].meta["acquisition"] == "CORPD_FBK"
    with h5py.File(tmp_path / "file1000009.h5", "w") as f:
        f.create_dataset("kspace", data=np.zeros((4, 2, 8, 8), dtype=np.complex64))
    with pytest.raises(DataError, match="multi-coil"):
        find_fastmri(tmp_path)


def test_plain_nifti_and_dicom(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    _nii(tmp_path / "sub1" / "T1.nii.gz")
    _nii(tmp_path / "b.nii")
    series = tmp_path / "series1"
    series.mkdir()
    src = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for i in range(2):
        src.InstanceNumber = i + 1
        src.save_as(series / f"IM{i:04d}")  # extension-less, as scanners write them
    (tmp_path / "notes.txt").write_text("not an image")
    cases = find_plain(tmp_path)
    assert [c.subject for c in cases] == ["b", "series1", "sub1/T1"]
    dicom = cases[1]
    assert dicom.images == {"image": series}
    assert dicom.meta["n_files"] == 2 and dicom.meta["series_uids"] == [str(src.SeriesInstanceUID)]


def test_empty_and_missing_roots(tmp_path):
    with pytest.raises(DataError) as err:
        find_ixi(tmp_path, "T2")
    msg = str(err.value)
    assert str(tmp_path) in msg and "IXI T2" in msg and "IXI*-T2.nii.gz" in msg
    with pytest.raises(DataError, match="folder not found"):
        find_cases(tmp_path / "nope", "hecktor")
    expected = {"brats2021": "no BraTS2021 t1/t1ce/t2/flair files", "hecktor": "no HECKTOR CT/PT files",
                "fastmri": "no fastMRI files", "plain": "no plain-folder image files"}
    for layout, words in expected.items():
        with pytest.raises(DataError, match=words):
            find_cases(tmp_path, layout)
    _nii(tmp_path / "IXI-T1" / "IXI002-Guys-0828-T1.nii.gz")
    with pytest.raises(DataError, match="no IXI T2 files"):
        find_ixi(tmp_path, "T2")
    with pytest.raises(ValueError, match="unknown layout"):
        find_cases(tmp_path, "oasis")
    assert isinstance(find_ixi(tmp_path, "T1")[0], Case)


def test_find_volumes_takes_the_formats_asked_for_and_skips_hidden_folders(tmp_path):
    from iconet.data.layouts import VOLUME_FORMATS, find_volumes

    _nii(tmp_path / "a.nii.gz")
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "b.npy", np.zeros((4, 4)))
    (tmp_path / "sub" / "c.PNG").write_bytes(b"")  # endings match whatever the case
    (tmp_path / "sub" / "d.tiff").write_bytes(b"")
    _nii(tmp_path / ".ipynb_checkpoints" / "a.nii.gz")
    (tmp_path / "notes.txt").write_text("not an image")
    # the plain layout keeps to NIfTI and DICOM unless asked for more
    assert [c.subject for c in find_plain(tmp_path)] == ["a"]
    cases = find_volumes(tmp_path, VOLUME_FORMATS)
    assert [c.subject for c in cases] == ["a", "sub/b", "sub/c", "sub/d"]
    assert cases[2].images == {"image": tmp_path / "sub" / "c.PNG"}
    assert [c.subject for c in find_cases(tmp_path, "plain", formats=(".npy",))] == ["sub/b"]
    with pytest.raises(DataError, match=r"no infer-folder image files \(\*\.h5 or folders of DICOM files\)"):
        find_volumes(tmp_path, (".h5",), layout="infer")

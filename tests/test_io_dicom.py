"""DICOM: pydicom's real test files, and series written from a real NIfTI slab."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from nibabel.affines import apply_affine

from iconet.data.dicom_read import read_dicom_series
from iconet.data.errors import DataError
from iconet.data.io import read_volume, write_volume
from iconet.data.volume import Volume

from _io_fixtures import (
    anatomical,
    assert_same_world,
    dicom_data,
    enhanced_mr,
    oblique,
    write_series_shuffled,
)


def _lps_to_ras(x):
    return np.asarray(x, dtype=float) * np.array([-1.0, -1.0, 1.0])


def test_mr_small_geometry_from_header():
    p = dicom_data("MR_small.dcm")
    ds = pydicom.dcmread(p)
    v = read_volume(p)
    assert v.shape == (64, 64, 1) and v.modality == "MR" and v.data.dtype == np.int16
    # data[i, j] is pixel (row j, column i)
    np.testing.assert_array_equal(v.data[:, :, 0], ds.pixel_array.T)
    ipp = np.array(ds.ImagePositionPatient, float)
    iop = np.array(ds.ImageOrientationPatient, float)
    dr, dc = (float(x) for x in ds.PixelSpacing)
    r, c = 5, 17
    lps = ipp + iop[:3] * dc * c + iop[3:] * dr * r
    np.testing.assert_allclose(apply_affine(v.affine, [c, r, 0]), _lps_to_ras(lps), atol=1e-9)
    assert v.meta["dicom"]["SeriesInstanceUID"] == ds.SeriesInstanceUID


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_encodings_give_same_voxels(name):
    ref = read_volume(dicom_data("MR_small.dcm"))
    v = read_volume(dicom_data(name))
    assert v.data.dtype.isnative
    np.testing.assert_array_equal(v.data, ref.data)
    np.testing.assert_allclose(v.affine, ref.affine)


def test_ct_small_in_hounsfield_units():
    p = dicom_data("CT_small.dcm")
    ds = pydicom.dcmread(p)
    v = read_volume(p)
    assert v.modality == "CT" and v.meta["units"] == "HU" and v.data.dtype == np.float32
    expected = ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(v.data[:, :, 0], expected)
    assert float(ds.RescaleIntercept) == -1024 and v.data.min() < 0  # air is negative HU
    assert v.meta["rescale"] == {"slope": 1.0, "intercept": -1024.0}


def test_emri_small_enhanced_multiframe():
    v = read_volume(dicom_data("emri_small.dcm"))  # skipped unless pydicom-data is installed
    assert v.shape[2] > 1 and v.modality == "MR"


def test_real_enhanced_single_frame_seg():
    p = dicom_data("liver_1frame.dcm")  # Segmentation IOD: geometry only in functional groups
    ds = pydicom.dcmread(p)
    v = read_volume(p)
    ipp = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    np.testing.assert_allclose(apply_affine(v.affine, [0, 0, 0]), _lps_to_ras(ipp), atol=1e-6)
    sp = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    np.testing.assert_allclose(v.spacing[:2], [float(sp[1]), float(sp[0])])


def test_enhanced_multiframe_per_frame_positions(tmp_path):
    src = anatomical()
    truth = src.with_data(src.data.astype(np.float32) * 2 - 5)  # stored = src, rescaled = truth
    truth.affine = oblique(src.affine)
    p = tmp_path / "enh.dcm"
    enhanced_mr(truth, p, slope=2.0, intercept=-5.0, seed=3)
    v = read_volume(p)
    assert v.modality == "MR" and v.data.dtype == np.float32
    assert_same_world(truth, v)


@pytest.mark.parametrize("geometry", ["slab", "oblique"])
def test_series_round_trip_world_coordinates(tmp_path, geometry):
    src = anatomical()
    if geometry == "oblique":
        src.affine = oblique(src.affine)
    write_series_shuffled(src, tmp_path / "series", seed=7, description="SR x2 test")
    v = read_volume(tmp_path / "series")
    assert v.data.dtype == src.data.dtype
    assert v.modality == "OT"  # unknown modality is written as "other"
    assert_same_world(src, v)
    assert v.meta["series_files"] == 25


def test_series_sorting_ignores_file_names(tmp_path):
    src = anatomical()
    src.modality = "MR"
    a, b = tmp_path / "a", tmp_path / "b"
    write_series_shuffled(src, a, seed=1)
    write_series_shuffled(src, b, seed=2)
    # also scramble InstanceNumber: order must come from the positions only
    for i, f in enumerate(sorted(b.iterdir())):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = (i * 7) % 25 + 1
        ds.save_as(f)
    va, vb = read_volume(a), read_volume(b)
    np.testing.assert_array_equal(va.data, vb.data)
    np.testing.assert_allclose(va.affine, vb.affine)
    assert va.modality == "MR"


def test_written_headers(tmp_path):
    src = anatomical()
    src.modality = "MR"
    out = write_volume(src, tmp_path / "derived", description="ICONet 2x super-resolution")
    files = sorted(out.iterdir())
    assert len(files) == 25
    dss = [pydicom.dcmread(f) for f in files]
    d0 = dss[0]
    assert list(d0.ImageType) == ["DERIVED", "SECONDARY"]
    assert d0.DerivationDescription == "ICONet 2x super-resolution"
    assert (d0.Rows, d0.Columns) == (41, 33)
    assert [float(x) for x in d0.PixelSpacing] == [2.0, 2.0]
    assert float(d0.SpacingBetweenSlices) == 2.0 and float(d0.SliceThickness) == 2.0
    assert d0.PixelRepresentation == 1 or src.data.min() >= 0
    assert d0.BitsStored <= 16 and d0.HighBit == d0.BitsStored - 1
    assert len({d.SOPInstanceUID for d in dss}) == 25
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    assert len({tuple(d.ImagePositionPatient) for d in dss}) == 25


def test_reference_keeps_study_new_series(tmp_path):
    ref = read_volume(dicom_data("CT_small.dcm"))
    out = write_volume(ref.with_data(ref.data), tmp_path / "ct", reference=ref)
    ds = pydicom.dcmread(next(out.iterdir()))
    d = ref.meta["dicom"]
    assert ds.StudyInstanceUID == d["StudyInstanceUID"]
    assert ds.FrameOfReferenceUID == d["FrameOfReferenceUID"]
    assert ds.SeriesInstanceUID != d["SeriesInstanceUID"]
    assert ds.SOPInstanceUID != d["SOPInstanceUID"]
    assert str(ds.PatientName) == d["PatientName"] and ds.Modality == "CT"
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, ref.data)  # HU exactly
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-6)


def test_no_reference_new_study(tmp_path):
    src = anatomical()
    out = write_volume(src, tmp_path / "s")
    ds = pydicom.dcmread(next(out.iterdir()))
    assert ds.StudyInstanceUID.startswith("1.2.826.0.1.3680043.8.498")  # pydicom's root


def test_float_data_uses_rescale(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.random((8, 6, 3)) * 3.7 - 1.2).astype(np.float32)
    v = Volume(data, oblique(np.diag([0.5, 0.6, 1.5, 1.0])), modality="MR")
    back = read_volume(write_volume(v, tmp_path / "f"))
    ds = pydicom.dcmread(next((tmp_path / "f").iterdir()))
    slope = float(ds.RescaleSlope)
    assert slope > 0 and ds.BitsStored == 16
    assert_close = np.abs(back.data - data).max()
    assert assert_close <= slope / 2 + 1e-6
    np.testing.assert_allclose(back.affine, v.affine, atol=1e-6)


def test_wide_integers_warn_about_quantisation(tmp_path):
    v = Volume(np.array([[[0], [100000]], [[5], [7]]], dtype=np.int32), modality="MR")
    with pytest.warns(UserWarning, match="RescaleSlope"):
        back = read_volume(write_volume(v, tmp_path / "wide"))
    assert np.abs(back.data - v.data).max() <= 100000 / 65535 / 2 + 1e-3


def test_gantry_tilt_round_trip(tmp_path):
    a = np.diag([-0.8, 0.8, 2.0, 1.0])
    a[1, 2] = 0.5  # slices step sideways: a tilted CT gantry
    v = Volume(np.arange(1, 5 * 4 * 6 + 1, dtype=np.int16).reshape(5, 4, 6), a, modality="CT")
    back = read_volume(write_volume(v, tmp_path / "tilt"))
    assert_same_world(v, back)


def test_single_slice_dcm(tmp_path):
    v = Volume(np.arange(1, 13, dtype=np.uint16).reshape(3, 4, 1), np.diag([0.5, 0.5, 3, 1]))
    out = write_volume(v, tmp_path / "one.dcm")
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, v.data)
    np.testing.assert_allclose(back.affine, v.affine, atol=1e-9)
    with pytest.raises(DataError, match="one slice"):
        write_volume(anatomical(), tmp_path / "many.dcm")


def test_refuses_non_empty_folder(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        write_volume(anatomical(), tmp_path / "s")


def test_two_series_in_one_folder(tmp_path):
    src = anatomical()
    slab1 = src.with_data(np.ascontiguousarray(src.data[:, :, :10]))
    slab2 = src.with_data(np.ascontiguousarray(src.data[:, :, 10:16]))
    mixed = tmp_path / "mixed"
    write_series_shuffled(slab1, mixed, seed=1, prefix="a", description="first slab")
    write_series_shuffled(slab2, mixed, seed=2, prefix="b", description="second slab")
    (mixed / "notes.txt").write_text("not DICOM")
    uids = {pydicom.dcmread(f).SeriesInstanceUID: f.name[0] for f in mixed.iterdir()
            if f.suffix != ".txt"}
    assert len(uids) == 2
    with pytest.raises(DataError) as e:
        read_volume(mixed)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(mixed))
    for uid in uids:
        assert uid in msg
    assert "'first slab'" in msg and "10 files" in msg and "'second slab'" in msg and "6 files" in msg
    uid_b = next(u for u, pfx in uids.items() if pfx == "b")
    v = read_volume(mixed, series_uid=uid_b)
    assert v.shape == (33, 41, 6)
    assert_same_world(slab2, v)
    with pytest.raises(DataError, match="has no series 1.2.3"):
        read_volume(mixed, series_uid="1.2.3")


def test_missing_slice_and_duplicates(tmp_path):
    src = anatomical()
    folder = tmp_path / "gap"
    write_series_shuffled(src, folder, seed=0)
    victim = next(f for f in folder.iterdir()
                  if int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) == 12)
    victim.unlink()
    with pytest.raises(DataError, match="not evenly spaced"):
        read_volume(folder)
    dup = tmp_path / "dup"
    write_series_shuffled(src, dup, seed=0)
    f = sorted(dup.iterdir())[0]
    shutil.copy(f, dup / "copy_of_one")
    ds = pydicom.dcmread(dup / "copy_of_one")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(dup / "copy_of_one")
    with pytest.raises(DataError, match="share a position"):
        read_dicom_series(dup)


def test_rgb_refused():
    p = dicom_data("SC_rgb_small_odd.dcm")
    with pytest.raises(DataError, match="SamplesPerPixel 3"):
        read_volume(p)


def test_missing_decoder_names_package():
    from pydicom.pixels import get_decoder

    p = dicom_data("MR_small_jpeg_ls_lossless.dcm")
    ts = pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if get_decoder(ts).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(DataError, match=r"pip install pylibjpeg pylibjpeg-libjpeg"):
        read_volume(p)


def test_undecodable_12bit_jpeg_names_package():
    p = dicom_data("JPEG-lossy.dcm")
    try:
        read_volume(p)
    except DataError as e:
        assert "pip install" in str(e)
    else:  # pragma: no cover - a capable decoder is installed
        pytest.skip("a 12-bit JPEG decoder is installed here")


def test_not_an_image():
    with pytest.raises(DataError, match="holds no image .*RT Plan"):
        read_volume(dicom_data("rtplan.dcm"))


def test_truncated_pixel_data():
    with pytest.raises(DataError, match="truncated"):
        read_volume(dicom_data("MR_truncated.dcm"))


def test_max_bytes_before_decoding(tmp_path):
    out = write_volume(anatomical(), tmp_path / "s")
    with pytest.raises(DataError, match="max_bytes"):
        read_volume(out, max_bytes=1000)


def test_a_slice_without_position_tags_is_read_with_one_note_line(tmp_path, capsys):
    """CT_small without ImagePositionPatient/ImageOrientationPatient: read with unit-spacing
    axial geometry, announced as a GeometryDefaulted note, which the command line prints as one
    ``note:`` line naming the file (not Python's warning with a source location)."""
    import warnings

    import pydicom
    from pydicom.data import get_testdata_file

    from iconet.cli import main
    from iconet.data.io import GeometryDefaulted, read_volume

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.ImagePositionPatient
    del ds.ImageOrientationPatient
    path = tmp_path / "no_position.dcm"
    ds.save_as(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = read_volume(path)
    assert [w.category for w in caught] == [GeometryDefaulted]
    assert str(path) in str(caught[0].message) and "ImagePositionPatient" in str(caught[0].message)
    assert vol.meta["geometry_missing"]
    assert main(["data", "info", str(path)]) == 0
    err = capsys.readouterr().err
    notes = [ln for ln in err.splitlines() if "geometry defaulted" in ln]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "Warning" not in err

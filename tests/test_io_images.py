"""PNG, TIFF, NPY and fastMRI HDF5."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from iconet.data.errors import DataError
from iconet.data.io import read_volume, write_volume
from iconet.data.volume import Volume

from _io_fixtures import anatomical, numpy_rss


def _slice() -> np.ndarray:
    return anatomical().data[:, :, 12]  # int16, real anatomy


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_exact(tmp_path, dtype):
    plane = np.clip(_slice(), 0, np.iinfo(dtype).max).astype(dtype)
    if dtype == np.uint16:
        plane = plane * np.uint16(20)  # use the 16-bit range
    out = write_volume(Volume(plane), tmp_path / "s.png")
    v = read_volume(out)
    assert v.shape == plane.shape + (1,) and v.data.dtype == dtype
    np.testing.assert_array_equal(v.data[:, :, 0], plane)
    np.testing.assert_array_equal(v.affine, np.eye(4))
    assert v.meta["geometry"] == "none"


def test_png_refuses_what_it_cannot_hold(tmp_path):
    with pytest.raises(DataError, match="scale='minmax'"):
        write_volume(Volume(np.linspace(0, 1, 12).reshape(3, 4)), tmp_path / "f.png")
    with pytest.raises(DataError, match=r"range -3\.\.5"):
        write_volume(Volume(np.arange(-3, 6).reshape(3, 3)), tmp_path / "n.png")
    with pytest.raises(DataError, match="25 slices"):
        write_volume(anatomical(), tmp_path / "vol.png")
    assert not list(tmp_path.iterdir())


def test_png_scaling_is_recorded(tmp_path):
    data = np.linspace(-1.0, 3.0, 20).reshape(4, 5)
    out = write_volume(Volume(data), tmp_path / "f.png", scale="minmax")
    with Image.open(out) as im:
        text = im.text["iconet-scaling"]
    v = read_volume(out)
    assert v.data.dtype == np.uint16 and "png_scaling" in v.meta
    slope = 4.0 / 65535
    assert f"{slope!r}" in text and "-1.0" in text
    np.testing.assert_allclose(v.data[:, :, 0] * slope - 1.0, data, atol=slope)


def test_rgb_png_refused(tmp_path):
    p = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(p)
    with pytest.raises(DataError, match="colour"):
        read_volume(p)


def test_tiff_stack_round_trip(tmp_path):
    src = anatomical()
    with pytest.warns(UserWarning, match="no geometry"):
        out = write_volume(src, tmp_path / "stack.tif")
    v = read_volume(out, spacing=(2.0, 2.0, 2.0))
    assert v.data.dtype == np.int16
    np.testing.assert_array_equal(v.data, src.data)
    np.testing.assert_array_equal(v.spacing, (2.0, 2.0, 2.0))


def test_tiff_8bit_single_page_and_rgb(tmp_path):
    import tifffile

    p = tmp_path / "one.tiff"
    tifffile.imwrite(p, np.arange(1, 13, dtype=np.uint8).reshape(3, 4), photometric="minisblack")
    v = read_volume(p)
    assert v.shape == (3, 4, 1) and v.data.dtype == np.uint8
    q = tmp_path / "rgb.tif"
    tifffile.imwrite(q, np.ones((4, 5, 3), np.uint8), photometric="rgb")
    with pytest.raises(DataError, match="colour TIFF"):
        read_volume(q)


def test_npy(tmp_path):
    src = anatomical()
    with pytest.warns(UserWarning, match="no geometry"):
        out = write_volume(src, tmp_path / "a.npy")
    v = read_volume(out)
    np.testing.assert_array_equal(v.data, src.data)
    p2 = tmp_path / "two.npy"
    np.save(p2, np.ones((3, 4), np.float32))
    assert read_volume(p2).shape == (3, 4, 1)
    p5 = tmp_path / "five.npy"
    np.save(p5, np.ones((2, 3, 4, 5, 6), np.float32))
    with pytest.raises(DataError, match="5-D"):
        read_volume(p5)


# ---------------------------------------------------------------- fastMRI ------------

def _kspace_from(images: np.ndarray) -> np.ndarray:
    """Centred orthonormal FFT (NumPy), the inverse of numpy_rss's transform."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1)), norm="ortho"),
                           axes=(-2, -1)).astype(np.complex64)


HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>32</x><y>24</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280.0</x><y>140.0</y><z>4.5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>320</x><y>320</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140.0</x><y>140.0</y><z>4.5</z></fieldOfView_mm></reconSpace>
  </encoding>
</ismrmrdHeader>"""


def _write_fastmri(path, kspace, recon=None, header=True):
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        if recon is not None:
            f.create_dataset("reconstruction_esc", data=recon)
        if header:
            f.create_dataset("ismrmrd_header", data=HEADER.encode())
        f.attrs["max"] = float(recon.max()) if recon is not None else 1.0
        f.attrs["norm"] = 0.5
        f.attrs["acquisition"] = "CORPD_FBK"


def test_fastmri_singlecoil_reconstruction_and_kspace(tmp_path):
    rng = np.random.default_rng(0)
    slab = anatomical().data[:32, :24, 5:8].astype(np.float32)  # real anatomy, (H, W, slices)
    ks = _kspace_from(np.moveaxis(slab, -1, 0) + 0.01j * rng.standard_normal((3, 32, 24)))
    recon = rng.random((3, 320, 320)).astype(np.float32)
    p = tmp_path / "file1000001.h5"
    _write_fastmri(p, ks, recon)
    v = read_volume(p)
    assert v.shape == (320, 320, 3) and v.data.dtype == np.float32 and v.modality == "MR"
    np.testing.assert_array_equal(v.data, np.moveaxis(recon, 0, -1))
    assert v.meta["fastmri_dataset"] == "reconstruction_esc"
    assert v.meta["acquisition"] == "CORPD_FBK" and v.meta["norm"] == 0.5
    np.testing.assert_allclose(v.spacing, (140 / 320, 140 / 320, 4.5))

    q = tmp_path / "file1000002.h5"  # test-set layout: k-space only, no header
    _write_fastmri(q, ks, header=False)
    w = read_volume(q)
    assert w.shape == (32, 24, 3) and w.meta["fastmri_dataset"] == "kspace"
    for s in range(3):
        ref = numpy_rss(ks[s][None])  # float64 reference; iconet computes in complex64
        np.testing.assert_allclose(w.data[:, :, s], ref, rtol=1e-5, atol=1e-6 * ref.max())
    np.testing.assert_allclose(w.data, np.abs(slab + 0j), atol=0.2)  # |image| recovered


def test_fastmri_multicoil_rss(tmp_path):
    rng = np.random.default_rng(1)
    ks = (rng.standard_normal((2, 4, 16, 12)) + 1j * rng.standard_normal((2, 4, 16, 12)))
    ks = ks.astype(np.complex64)
    p = tmp_path / "multicoil.h5"
    _write_fastmri(p, ks)
    v = read_volume(p)
    assert v.shape == (16, 12, 2) and v.meta["multicoil"]
    np.testing.assert_allclose(v.spacing, (280 / 16, 140 / 12, 4.5))
    for s in range(2):
        ref = numpy_rss(ks[s])
        np.testing.assert_allclose(v.data[:, :, s], ref, rtol=1e-5, atol=1e-6 * ref.max())


def test_hdf5_that_is_not_fastmri(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["image"] = np.ones((3, 3))
    with pytest.raises(DataError, match="not a fastMRI file.*image"):
        read_volume(p)

"""The ecosystem's image types through iconet.super_resolve, and the plain predictor (issue 18, item 8).

Every ecosystem path is compared with the Volume (or file path) path on the same voxels and
affine: the same numbers and the same SR affine must come out. The images are crops of the
package sample (Colin27, 1 x 1 x 4 mm); the shipped models run on them where the model
matters (the plane a MetaTensor is sliced in, the plain predictor), the parameter-free bicubic
peer where only the conversion does.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

import iconet
from iconet.data.geometry import ras_to_lps
from iconet.data.io import read_volume
from iconet.data.samples import sample_path
from iconet.data.volume import Volume
from iconet.hub import available_models

MODEL = "iconet-t1-x2-fast"  # the cheapest shipped model
#: the conversions do not depend on the model: most tests compare two paths with the parameter-free peer
PEER = "bicubic"
# Every call passes tile=0 (whole slices): the crops are small, and it spares the memory probe.

shipped = pytest.mark.skipif(not {MODEL, "iconet-t1-x2"} <= set(available_models()), reason="models not shipped")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: more threads only contend on a shared CPU (3-4x slower on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def slab() -> tuple[np.ndarray, np.ndarray]:
    """A 64 x 64 x 4 crop of the sample (uint8) and its affine (1 x 1 x 4 mm, RAS)."""
    img = nib.load(sample_path())
    data = np.asarray(img.dataobj)[60:124, 70:134, 2:6]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ (60, 70, 2) + img.affine[:3, 3]
    return data, affine


@pytest.fixture(scope="module")
def coronal(slab):
    """The crop with its 4 mm axis moved to array axis 1: spacing (1, 4, 1), float32; and the
    Volume path's SR of it by the peer."""
    data, affine = slab
    x = np.ascontiguousarray(data.transpose(0, 2, 1)).astype(np.float32)
    a = affine[:, [0, 2, 1, 3]]
    return x, a, iconet.super_resolve(Volume(x, a), PEER, tile=0)


@shipped
def test_metatensor_with_spacing_1_4_1_is_sliced_along_axis_1(coronal):
    from monai.data import MetaTensor

    x, a, _ = coronal
    x, a = x[16:48, :, 16:48], a.copy()  # the central 32 x 32 of every slice: the model's cost
    a[:3, 3] += a[:3, :3] @ (16, 0, 16)
    ref = iconet.super_resolve(Volume(x, a), MODEL, tile=0)
    out = iconet.super_resolve(MetaTensor(torch.from_numpy(x), affine=torch.from_numpy(a)), MODEL, tile=0)
    assert isinstance(out, MetaTensor) and tuple(out.shape) == (64, 4, 64) and out.dtype == torch.float32
    np.testing.assert_allclose(out.affine.numpy(), ref.affine, atol=1e-9)
    assert ref.spacing == pytest.approx((0.5, 4.0, 0.5))
    np.testing.assert_array_equal(out.numpy(), ref.data)
    # the plane is the anatomy's: the same slices as the axial crop super-resolved, transposed
    axial = iconet.super_resolve(Volume(np.ascontiguousarray(x.transpose(0, 2, 1)), a[:, [0, 2, 1, 3]]), MODEL, tile=0)
    np.testing.assert_allclose(out.numpy(), axial.data.transpose(0, 2, 1), rtol=1e-5, atol=1e-3)


def test_channel_first_metatensor_in_lps_space_keeps_its_layout_and_space(coronal):
    from monai.data import MetaTensor

    x, a, ref = coronal
    image = MetaTensor(torch.from_numpy(x)[None], affine=torch.from_numpy(ras_to_lps(a)),
                       meta={"space": "LPS", "filename_or_obj": "scan.nii.gz"})
    out = iconet.super_resolve(image, PEER, tile=0)
    assert tuple(out.shape) == (1, 128, 4, 128) and out.meta["space"] == "LPS"
    assert out.meta["filename_or_obj"] == "scan.nii.gz"
    np.testing.assert_allclose(out.affine.numpy(), ras_to_lps(ref.affine), atol=1e-9)
    np.testing.assert_array_equal(out[0].numpy(), ref.data)


def test_torchio_scalar_image_and_subject_round_trip(coronal):
    tio = pytest.importorskip("torchio")
    x, a, ref = coronal
    image = tio.ScalarImage(tensor=torch.from_numpy(x)[None], affine=a)
    out = iconet.super_resolve(image, PEER, tile=0)
    assert isinstance(out, tio.ScalarImage) and out.spacing == pytest.approx((0.5, 4.0, 0.5))
    np.testing.assert_array_equal(out.data[0].numpy(), ref.data)
    np.testing.assert_allclose(out.affine, ref.affine, atol=1e-9)

    subject = iconet.super_resolve(tio.Subject(t1=image, age=71), PEER, tile=0)
    assert isinstance(subject, tio.Subject) and subject["age"] == 71
    np.testing.assert_array_equal(subject["t1"].data[0].numpy(), ref.data)

    with pytest.raises(ValueError, match="Subject with 2 images"):
        iconet.super_resolve(tio.Subject(t1=image, t2=image), PEER, tile=0)
    with pytest.raises(ValueError, match="LabelMap"):
        iconet.super_resolve(tio.LabelMap(tensor=torch.zeros(1, 8, 8, 8, dtype=torch.int16)), PEER, tile=0)


@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_nibabel_image_in_same_class_out_equals_the_path_api(slab, tmp_path, klass):
    data, affine = slab
    img = klass(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    path = tmp_path / "crop.nii.gz"
    nib.save(img, path)
    by_path = iconet.super_resolve(str(path), PEER, tile=0)
    out = iconet.super_resolve(nib.load(path), PEER, tile=0)
    assert type(out) is klass and out.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(out.dataobj), by_path.data)
    np.testing.assert_allclose(out.affine, by_path.affine, atol=1e-9)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (1, 2)
    nib.save(out, tmp_path / "sr.nii.gz")  # and it is a valid file iconet reads back the same
    back = read_volume(tmp_path / "sr.nii.gz")
    np.testing.assert_array_equal(back.data, by_path.data)
    np.testing.assert_allclose(back.affine, by_path.affine, atol=1e-5)


def test_a_single_slice_is_super_resolved_in_its_own_plane_whatever_its_spacing(slab):
    """A 2 x 2 mm slice 1 mm thick: its coarsest axes are in-plane, its plane is still its plane."""
    img = nib.Nifti1Image(slab[0][:, :, 2:3], np.diag([2.0, 2.0, 1.0, 1.0]))
    out = iconet.super_resolve(img, PEER, tile=0)
    assert out.shape == (128, 128, 1) and out.header.get_zooms() == pytest.approx((1.0, 1.0, 1.0))


def test_types_it_cannot_read_are_refused_by_name():
    sitk = pytest.importorskip("SimpleITK")
    with pytest.raises(TypeError, match="cannot read a SimpleITK.*takes a NumPy array.*MONAI MetaTensor"):
        iconet.super_resolve(sitk.Image(8, 8, sitk.sitkFloat32), PEER, tile=0)
    from monai.data import MetaTensor

    with pytest.raises(ValueError, match="spacing= and affine= only apply to arrays"):
        iconet.super_resolve(MetaTensor(torch.zeros(8, 8, 8)), PEER, spacing=(1, 1, 1))


@shipped
def test_sliding_window_inference_over_the_predictor_on_a_real_slice(slab):
    """The plain predictor: its whole-slice output is super_resolve's (pad="none"), and MONAI's
    sliding window over it (32-pixel tiles, overlap 0.25) stays above 30 dB PSNR against that:
    not equal, as tiles of a model with a Fourier branch see other borders."""
    from monai.inferers import sliding_window_inference

    lr = slab[0][:, :, 2].astype(np.float32)  # 64 x 64 of a real slice
    predictor = iconet.load_predictor("iconet-t1-x2", reference=lr)
    assert isinstance(predictor, iconet.SRPredictor) and predictor.info.name == "iconet"
    x = torch.from_numpy(lr)[None, None]
    with torch.no_grad():
        whole = predictor(x)
        tiled = sliding_window_inference(x, roi_size=(32, 32), sw_batch_size=4, predictor=predictor,
                                         overlap=0.25, mode="gaussian", padding_mode="replicate")
    assert tuple(whole.shape) == tuple(tiled.shape) == (1, 1, 128, 128)
    reference = iconet.super_resolve(lr, "iconet-t1-x2", pad="none", device="cpu", tile=0)
    np.testing.assert_allclose(whole[0, 0].numpy(), reference, atol=1e-3 * float(reference.max()))
    data_range = float(whole.max() - whole.min())
    psnr = 10 * np.log10(data_range**2 / float(((tiled - whole) ** 2).mean()))
    assert psnr > 30.0

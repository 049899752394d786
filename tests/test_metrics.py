"""Metrics protocol (docs/design.md §3) checked against scikit-image on the shipped real Colin27 slab."""

from __future__ import annotations

import dataclasses
import math

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from iconet.config import from_dict
from iconet.data.samples import sample_path
from iconet.evaluation.metrics import (
    FASTMRI,
    MetricProtocol,
    aggregate,
    ct_protocol,
    evaluate_volume,
    foreground_mask,
    format_mean_std,
    nmse,
    psnr,
    ssim,
)

REL = 1e-12


@pytest.fixture(scope="module")
def hr_uint8() -> np.ndarray:
    """The real slab, (181, 217, 8) uint8, slices along the last axis."""
    return np.asarray(nib.load(sample_path()).dataobj)


@pytest.fixture(scope="module")
def pair(hr_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pred, ref) float64: the HR and a blurred + noisy copy of it."""
    ref = hr_uint8.astype(np.float64)
    rng = np.random.default_rng(0)
    pred = gaussian_filter(ref, sigma=(1.2, 1.2, 0)) + rng.normal(0, 4.0, ref.shape)
    return pred, ref


def test_sample_is_the_real_slab(hr_uint8: np.ndarray) -> None:
    assert hr_uint8.shape == (181, 217, 8) and hr_uint8.dtype == np.uint8 and hr_uint8.max() == 190


def test_psnr_equals_skimage_over_stacked_volume(pair) -> None:
    pred, ref = pair
    expected = peak_signal_noise_ratio(ref, pred, data_range=ref.max())
    assert psnr(pred, ref, FASTMRI) == pytest.approx(expected, rel=REL)
    assert psnr(pred, ref) == pytest.approx(expected, rel=REL)  # None → FASTMRI


def test_ssim_2d_equals_mean_of_skimage_slices(pair) -> None:
    pred, ref = pair
    expected = np.mean(
        [
            structural_similarity(ref[..., i], pred[..., i], data_range=ref.max(), win_size=7)
            for i in range(ref.shape[-1])
        ]
    )
    assert ssim(pred, ref, FASTMRI) == pytest.approx(expected, rel=REL)


def test_ssim_3d_equals_skimage_volume(pair) -> None:
    pred, ref = pair
    r, p = np.moveaxis(ref, -1, 0), np.moveaxis(pred, -1, 0)
    expected = structural_similarity(r, p, data_range=ref.max(), win_size=7)
    got = ssim(pred, ref, MetricProtocol(ssim_mode="3d"))
    assert got == pytest.approx(expected, rel=REL)
    assert got != pytest.approx(ssim(pred, ref, FASTMRI), abs=1e-3)


def test_reproduces_fastmri_evaluate_py(pair) -> None:
    """fastMRI's evaluate.py on (slices, H, W) arrays, reproduced with slice_axis=0."""
    pred, ref = pair
    gt, pr = np.ascontiguousarray(np.moveaxis(ref, -1, 0)), np.ascontiguousarray(np.moveaxis(pred, -1, 0))

    def fm_nmse(gt, pred):
        return np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2

    def fm_psnr(gt, pred):
        return peak_signal_noise_ratio(gt, pred, data_range=gt.max())

    def fm_ssim(gt, pred):
        maxval = gt.max()
        s = 0.0
        for i in range(gt.shape[0]):
            s += structural_similarity(gt[i], pred[i], data_range=maxval)
        return s / gt.shape[0]

    proto = dataclasses.replace(FASTMRI, slice_axis=0)
    got = evaluate_volume(pr, gt, proto)
    assert got["psnr"] == pytest.approx(fm_psnr(gt, pr), rel=REL)
    assert got["ssim"] == pytest.approx(fm_ssim(gt, pr), rel=REL)
    assert got["nmse"] == pytest.approx(fm_nmse(gt, pr), rel=1e-10)
    # the NIfTI layout with the default slice_axis=-1 gives the same numbers
    same = evaluate_volume(pred, ref, FASTMRI)
    for k in got:
        assert same[k] == pytest.approx(got[k], rel=1e-10)


def test_slice_peak_differs_from_volume_peak(pair) -> None:
    pred, ref = pair
    vol = MetricProtocol()
    per_slice = MetricProtocol(data_range="slice_max")
    expected = np.mean(
        [
            peak_signal_noise_ratio(ref[..., i], pred[..., i], data_range=ref[..., i].max())
            for i in range(ref.shape[-1])
        ]
    )
    assert psnr(pred, ref, per_slice) == pytest.approx(expected, rel=REL)
    expected_ssim = np.mean(
        [
            structural_similarity(ref[..., i], pred[..., i], data_range=ref[..., i].max(), win_size=7)
            for i in range(ref.shape[-1])
        ]
    )
    assert ssim(pred, ref, per_slice) == pytest.approx(expected_ssim, rel=REL)
    # the protocol matters: same images, different numbers
    assert abs(psnr(pred, ref, vol) - psnr(pred, ref, per_slice)) > 0.1
    # and the volume range (a fixed range bigger than the HR max, e.g. the dtype's 255) moves it more
    fixed = MetricProtocol(data_range="fixed", data_range_value=255.0)
    assert psnr(pred, ref, fixed) - psnr(pred, ref, vol) == pytest.approx(20 * math.log10(255 / 190), rel=1e-9)


def test_centre_crop_equals_cropping_first(pair) -> None:
    pred, ref = pair
    top, left = (181 - 160) // 2, (217 - 192) // 2
    rc, pc = ref[top : top + 160, left : left + 192], pred[top : top + 160, left : left + 192]
    cropped = evaluate_volume(pred, ref, MetricProtocol(crop=(160, 192)))
    first = evaluate_volume(pc, rc, FASTMRI)
    assert cropped == pytest.approx(first, rel=REL)
    assert cropped["psnr"] != pytest.approx(psnr(pred, ref), abs=1e-3)
    with pytest.raises(ValueError, match="larger than the slices"):
        psnr(pred, ref, MetricProtocol(crop=(200, 192)))


def test_foreground_mask_by_hand(pair) -> None:
    pred, ref = pair
    proto = MetricProtocol(mask="foreground")
    m = ref > 0.05 * ref.max()
    assert 0.3 < m.mean() < 0.95  # a real head: background and anatomy
    assert np.array_equal(foreground_mask(ref, proto), np.moveaxis(m, -1, 0))
    mse = np.mean((ref[m] - pred[m]) ** 2)
    assert psnr(pred, ref, proto) == pytest.approx(10 * math.log10(ref.max() ** 2 / mse), rel=REL)
    assert nmse(pred, ref, proto) == pytest.approx(np.sum((ref[m] - pred[m]) ** 2) / np.sum(ref[m] ** 2), rel=1e-10)
    # SSIM: the full=True maps averaged over foreground pixels, outside skimage's 3-pixel border strip
    vals = []
    for i in range(ref.shape[-1]):
        _, smap = structural_similarity(ref[..., i], pred[..., i], data_range=ref.max(), win_size=7, full=True)
        vals.append(smap[3:-3, 3:-3][m[3:-3, 3:-3, i]])
    assert ssim(pred, ref, proto) == pytest.approx(np.concatenate(vals).mean(), rel=1e-10)
    # masking changes the figures (the background is easy)
    assert psnr(pred, ref, proto) != pytest.approx(psnr(pred, ref), abs=0.05)


def test_all_foreground_mask_gives_unmasked_ssim(pair) -> None:
    pred, ref = pair
    r, p = ref + 1.0, pred + 1.0  # every HR voxel > 0 = threshold
    proto = MetricProtocol(mask="foreground", mask_threshold=0.0)
    assert ssim(p, r, proto) == pytest.approx(ssim(p, r, FASTMRI), rel=1e-10)
    assert psnr(p, r, proto) == pytest.approx(psnr(p, r, FASTMRI), rel=REL)


def test_ct_protocol_fixed_window_and_hu_mask(pair) -> None:
    pred, ref = pair
    hu_ref, hu_pred = ref / 190 * 2000 - 1000, pred / 190 * 2000 - 1000  # pseudo-CT in HU
    proto = ct_protocol()
    assert proto.data_range == "fixed" and proto.data_range_value == 2000 and proto.mask == "foreground"
    m = hu_ref > -900
    assert m.mean() > 0.5
    mse = np.mean((hu_ref[m] - hu_pred[m]) ** 2)
    assert psnr(hu_pred, hu_ref, proto) == pytest.approx(10 * math.log10(2000**2 / mse), rel=REL)
    assert "2000" in proto.describe() and "-900" in proto.describe()


def test_nmse_by_hand(pair) -> None:
    pred, ref = pair
    assert nmse(pred, ref) == pytest.approx(np.sum((ref - pred) ** 2) / np.sum(ref**2), rel=1e-10)


def test_uint8_and_torch_inputs_equal_float(hr_uint8: np.ndarray, pair) -> None:
    import torch

    pred_u8 = np.clip(np.rint(pair[0]), 0, 255).astype(np.uint8)
    ref_f, pred_f = hr_uint8.astype(np.float64), pred_u8.astype(np.float64)
    expected = evaluate_volume(pred_f, ref_f, FASTMRI)
    assert evaluate_volume(pred_u8, hr_uint8, FASTMRI) == pytest.approx(expected, rel=REL)  # no uint8 wrap-around
    assert evaluate_volume(torch.from_numpy(pred_u8), torch.from_numpy(hr_uint8), FASTMRI) == pytest.approx(
        expected, rel=REL
    )
    t32 = evaluate_volume(torch.from_numpy(pred_f).float(), torch.from_numpy(ref_f).float(), FASTMRI)
    assert t32 == pytest.approx(expected, rel=REL)  # integer values are exact in float32


def test_2d_input_is_one_slice(pair) -> None:
    pred, ref = pair
    r, p = ref[..., 3], pred[..., 3]
    assert psnr(p, r) == pytest.approx(peak_signal_noise_ratio(r, p, data_range=r.max()), rel=REL)
    assert ssim(p, r) == pytest.approx(structural_similarity(r, p, data_range=r.max(), win_size=7), rel=REL)


def test_identical_images_give_inf_psnr_and_aggregate_survives(pair) -> None:
    _, ref = pair
    same = evaluate_volume(ref.copy(), ref, FASTMRI)
    assert same["psnr"] == math.inf and same["ssim"] == pytest.approx(1.0) and same["nmse"] == 0.0
    agg = aggregate([same, {"psnr": 30.0, "ssim": 0.9, "nmse": 0.01}])
    assert agg["psnr"][0] == math.inf and math.isnan(agg["psnr"][1])
    assert format_mean_std(*agg["psnr"]) == "inf"
    assert agg["nmse"] == pytest.approx((0.005, np.std([0.0, 0.01], ddof=1)))


def test_aggregate_sample_std_and_format() -> None:
    rows = [{"psnr": 30.0, "ssim": 0.90}, {"psnr": 31.0, "ssim": 0.92}, {"psnr": 33.0, "ssim": 0.91}]
    agg = aggregate(rows)
    assert agg["psnr"] == pytest.approx((np.mean([30, 31, 33]), np.std([30, 31, 33], ddof=1)))
    assert aggregate(rows[:1])["psnr"] == (30.0, 0.0)
    assert format_mean_std(*agg["psnr"], digits=2) == "31.33 ± 1.53"
    assert format_mean_std(0.9123, 0.0101, 3) == "0.912 ± 0.010"
    with pytest.raises(ValueError):
        aggregate([])
    with pytest.raises(ValueError, match="row 1"):
        aggregate([{"psnr": 1.0}, {"ssim": 1.0}])


def test_shape_mismatch_names_both_shapes(pair) -> None:
    pred, ref = pair
    with pytest.raises(ValueError, match=r"\(181, 217, 7\).*\(181, 217, 8\)"):
        psnr(pred[..., :7], ref)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        psnr(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="slice_axis"):
        psnr(pred, ref, MetricProtocol(slice_axis=3))
    with pytest.raises(ValueError, match="NaN"):
        psnr(np.full_like(ref, np.nan), ref)
    with pytest.raises(ValueError, match="max"):
        psnr(ref, np.zeros_like(ref))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"data_range": "volume"}, "data_range must be one of"),
        ({"data_range": "fixed"}, "needs data_range_value"),
        ({"data_range": "fixed", "data_range_value": 0.0}, "> 0"),
        ({"data_range_value": 1.0}, "only used with data_range='fixed'"),
        ({"ssim_mode": "4d"}, "ssim_mode"),
        ({"ssim_win": 6}, "odd integer"),
        ({"ssim_win": 1}, "odd integer"),
        ({"crop": (0, 10)}, "crop"),
        ({"crop": (10,)}, "crop"),
        ({"mask": "background"}, "mask must be one of"),
        ({"mask_threshold": 1.0}, "mask_threshold"),
        ({"mask_threshold": -0.1}, "mask_threshold"),
        ({"data_range": "slice_max", "ssim_mode": "3d"}, "slice_max"),
        ({"range_low": -1000.0}, "range_low"),
    ],
)
def test_bad_protocol_values_raise(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        MetricProtocol(**kwargs)


def test_ct_protocol_rejects_bad_window() -> None:
    with pytest.raises(ValueError, match="greater than low"):
        ct_protocol((1000, -1000))


def test_from_dict_builds_and_validates() -> None:
    proto = from_dict(MetricProtocol, {"crop": [160, 192], "mask": "foreground", "slice_axis": 0})
    assert proto.crop == (160, 192) and proto.mask == "foreground"
    with pytest.raises(ValueError):
        from_dict(MetricProtocol, {"ssim_mode": "2.5d"})


def test_describe_states_range_and_ssim_mode() -> None:
    d = FASTMRI.describe()
    assert "max(HR volume)" in d and "mean of 2-D SSIMs over slices" in d and "7×7" in d and "float64" in d
    assert "ddof=1" in d
    assert "max(HR slice)" in MetricProtocol(data_range="slice_max").describe()
    assert "3-D SSIM" in MetricProtocol(ssim_mode="3d").describe()
    assert "foreground" in MetricProtocol(mask="foreground").describe()
    assert "centre crop 160×192" in MetricProtocol(crop=(160, 192)).describe()

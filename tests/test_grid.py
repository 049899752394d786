"""Sampling-grid upsamplers (iconet.ops.grid): where LR pixels land on the HR grid."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from iconet.ops.fft import centre_crop_2d, fft2c, ifft2c
from iconet.ops.grid import band_weight, low_band, replace_low_band, upsample, zero_fill_upsample

GRIDS = ("kspace", "centre")


def smooth_image(h: int, w: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A smooth, asymmetric test image ``(1, 1, h, w)``: three blobs that fade out before the
    borders (so periodic sinc and border-replicating bicubic see the same image)."""
    y = torch.arange(h, dtype=dtype)[:, None]
    x = torch.arange(w, dtype=dtype)[None, :]
    img = torch.zeros(h, w, dtype=dtype)
    for cy, cx, sig, amp in ((0.45, 0.4, 0.12, 1.0), (0.6, 0.62, 0.09, -0.6), (0.35, 0.65, 0.08, 0.5)):
        img += amp * torch.exp(-((y / h - cy) ** 2 + (x / w - cx) ** 2) / (2 * sig**2))
    return img[None, None]


def kspace_truncate(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """LR = ifft2c(centre_crop(fft2c(HR), (H/s, W/s))).real / s (intensity-preserving)."""
    H, W = hr.shape[-2:]
    return ifft2c(centre_crop_2d(fft2c(hr), (H // scale, W // scale))).real / scale


def psnr(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.max() ** 2 / ((a - ref) ** 2).mean()))


@pytest.fixture(scope="module")
def mr_slice() -> torch.Tensor:
    """A real MR slice (nibabel's test volume), 32x40, with a mild PSF blur; max 1."""
    nibabel = pytest.importorskip("nibabel")
    from nibabel.testing import data_path
    from scipy.ndimage import gaussian_filter

    vol = nibabel.load(os.path.join(data_path, "anatomical.nii")).get_fdata()
    sl = gaussian_filter(vol[:32, :40, 12], 0.7, mode="wrap")
    return torch.from_numpy(sl / sl.max())[None, None]


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "nearest"])
def test_centre_grid_is_align_corners_false(scale: int, mode: str) -> None:
    x = torch.randn(2, 3, 7, 10, dtype=torch.float64)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    ref = F.interpolate(x, scale_factor=scale, mode=mode, **kwargs)
    torch.testing.assert_close(upsample(x, scale, "centre", mode=mode), ref)


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kspace_grid_interpolates_through_samples(scale: int, dtype: torch.dtype) -> None:
    x = torch.randn(2, 1, 9, 12, dtype=dtype)
    up = upsample(x, scale, "kspace")
    assert up.shape == (2, 1, 9 * scale, 12 * scale) and up.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(up[..., ::scale, ::scale], x, atol=tol, rtol=0)
    # ...and in between it really interpolates (it is not a nearest-neighbour copy)
    assert (up[..., 1::scale, ::scale] - x).abs().max() > 1e-2


def test_kspace_grid_bf16_keeps_sample_positions() -> None:
    # Coordinates computed in bf16 would be off by up to a pixel on a 128-wide image.
    x = torch.randn(1, 1, 128, 128).cumsum(-1).cumsum(-2)
    x = x / x.abs().max()
    ref = upsample(x, 2, "kspace")
    out = upsample(x.bfloat16(), 2, "kspace")
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.02


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("shape", [(8, 12), (7, 9)])
def test_constant_stays_constant(grid: str, shape: tuple[int, int]) -> None:
    x = torch.full((1, 2, *shape), 0.37, dtype=torch.float64)
    for up in (upsample(x, 4, grid), upsample(x, 4, grid, mode="bilinear"), zero_fill_upsample(x, 4, grid)):
        torch.testing.assert_close(up, torch.full_like(up, 0.37), atol=1e-12, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("shape", [(16, 20), (17, 21)])
def test_zero_fill_kspace_interpolates_through_samples(scale: int, shape: tuple[int, int]) -> None:
    x = torch.randn(1, 1, *shape, dtype=torch.float64)  # any real image, Nyquist content included
    up = zero_fill_upsample(x, scale, "kspace")
    torch.testing.assert_close(up[..., ::scale, ::scale], x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_zero_fill_then_kspace_crop_returns_input(scale: int) -> None:
    # Remove the (one-sided) Nyquist row/column: the real part of a zero-filled image splits
    # it into +-N/2 halves, and a plain crop keeps only one half of it.
    x = torch.randn(1, 2, 16, 20, dtype=torch.float64)
    k = fft2c(x)
    k[..., 0, :] = 0
    k[..., :, 0] = 0
    x = ifft2c(k).real
    hr = zero_fill_upsample(x, scale, "kspace")
    torch.testing.assert_close(kspace_truncate(hr, scale), x, atol=1e-12, rtol=0)
    # A band-limited HR is recovered everywhere, not only at s·m.
    torch.testing.assert_close(zero_fill_upsample(kspace_truncate(hr, scale), scale, "kspace"), hr)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("shape", [(40, 48), (41, 47)])
def test_zero_fill_grids_agree_with_bicubic_grids(scale: int, shape: tuple[int, int]) -> None:
    """The sign of the centre-grid shift (and the odd-side offset) is right: on a smooth image
    sinc and bicubic agree on the same grid and differ clearly across grids."""
    x = smooth_image(*shape)
    b = 3 * scale  # compare away from the borders (periodic vs replicated)
    inner = (..., slice(b, -b), slice(b, -b))
    for grid in GRIDS:
        zf, bc = zero_fill_upsample(x, scale, grid), upsample(x, scale, grid)
        other = upsample(x, scale, "centre" if grid == "kspace" else "kspace")
        same = (zf - bc)[inner].abs().max()
        cross = (zf - other)[inner].abs().max()
        assert same < 0.02, (grid, float(same))  # bicubic's own error on this image
        assert cross > 4 * same, (grid, float(same), float(cross))


@pytest.mark.parametrize("scale", [2, 4])
def test_wrong_grid_costs_psnr(mr_slice: torch.Tensor, scale: int) -> None:
    """Centred k-space truncation: the kspace grid wins by several dB over the centre grid."""
    hr = mr_slice
    lr = kspace_truncate(hr, scale)
    margin = 4.0 if scale == 2 else 3.0
    for up in (upsample, zero_fill_upsample):
        right, wrong = psnr(up(lr, scale, "kspace"), hr), psnr(up(lr, scale, "centre"), hr)
        assert right > wrong + margin, (up.__name__, right, wrong)
    if scale == 2:  # and the right grid is good in absolute terms (docs/design.md §7: ~34 dB)
        assert psnr(upsample(lr, 2, "kspace"), hr) > 30


def test_centre_grid_wins_on_area_downsampling() -> None:
    """The converse: for area (block-mean) downsampling the centre grid is the right one."""
    hr = smooth_image(64, 80)
    lr = F.avg_pool2d(hr, 2)
    right, wrong = psnr(upsample(lr, 2, "centre"), hr), psnr(upsample(lr, 2, "kspace"), hr)
    assert right > wrong + 5, (right, wrong)


def test_bad_grid_raises() -> None:
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="grid"):
        upsample(x, 2, "pixel")
    with pytest.raises(ValueError, match="grid"):
        zero_fill_upsample(x, 2, "pixel")
    with pytest.raises(ValueError):
        upsample(x[0], 2, "kspace")


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (2, 3)])
def test_kspace_upsample_handles_images_smaller_than_the_kernel(size):
    x = torch.rand(1, 1, *size, dtype=torch.float64)
    y = upsample(x, 2, "kspace")
    assert y.shape == (1, 1, 2 * size[0], 2 * size[1])
    assert torch.allclose(y[..., ::2, ::2], x)


def _without_nyquist(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its (one-sided) Nyquist row and column removed: a real image whose spectrum
    is symmetric, so a k-space crop of a zero-filled copy gives it back exactly."""
    k = fft2c(x)
    k[..., 0, :] = 0
    k[..., :, 0] = 0
    return ifft2c(k).real


@pytest.mark.parametrize("scale", [2, 4])
def test_replace_low_band_puts_the_lr_spectrum_in_and_keeps_the_rest(scale: int) -> None:
    lr = _without_nyquist(torch.randn(2, 1, 12, 16, dtype=torch.float64))
    hr = torch.randn(2, 1, 12 * scale, 16 * scale, dtype=torch.float64)
    out = replace_low_band(hr, lr, scale)
    # The k-space truncation of the result is the LR (up to the LR's Nyquist lines, which the
    # band leaves to HR): the band the LR was cut from is the LR's ...
    torch.testing.assert_close(_without_nyquist(kspace_truncate(out, scale)), lr, atol=1e-12, rtol=0)
    assert (_without_nyquist(kspace_truncate(hr, scale)) - lr).abs().max() > 0.1
    # ... and outside the band's interior nothing changed.
    k = fft2c(out - hr)
    H, W = out.shape[-2:]
    inside = torch.zeros(H, W, dtype=torch.bool)
    inside[H // 2 - 5 : H // 2 + 6, W // 2 - 7 : W // 2 + 8] = True  # |f| < h/2, w/2
    assert k[..., ~inside].abs().max() < 1e-12
    # A projection: applying it twice changes nothing.
    torch.testing.assert_close(replace_low_band(out, lr, scale), out, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(16, 20), (17, 21)])
def test_replace_low_band_follows_the_kspace_grid_for_odd_sides(shape: tuple[int, int]) -> None:
    """Sinc interpolation already has the LR's band (on the same grid, odd sides included):
    replacing it changes nothing, and a shifted copy is pulled back onto the grid."""
    lr = torch.randn(1, 1, *shape, dtype=torch.float64)
    up = zero_fill_upsample(lr, 2, "kspace")
    torch.testing.assert_close(replace_low_band(up, lr, 2), up, atol=1e-12, rtol=0)
    shifted = torch.roll(up, shifts=1, dims=-1)
    assert (replace_low_band(shifted, lr, 2) - up).abs().max() < (shifted - up).abs().max() / 2


def test_replace_low_band_keeps_dtype_and_gradients_and_checks_sizes() -> None:
    lr = torch.rand(1, 1, 8, 8, requires_grad=True)
    hr = torch.rand(1, 1, 16, 16, requires_grad=True)
    out = replace_low_band(hr, lr, 2)
    assert out.dtype == torch.float32 and out.shape == hr.shape
    out.square().sum().backward()
    assert lr.grad is not None and lr.grad.abs().sum() > 0
    assert hr.grad is not None and hr.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not 2x"):
        replace_low_band(hr, torch.rand(1, 1, 8, 7), 2)


@pytest.mark.parametrize("shape", [((32, 24), (16, 12)), ((34, 22), (17, 11))])
def test_band_weight_is_the_band_when_hard_and_fades_out_to_its_edge_when_tapered(shape) -> None:
    (H, W), (h, w) = shape
    band = low_band(H, W, h, w)
    torch.testing.assert_close(band_weight(H, W, h, w, 0.0), band.to(torch.float64), atol=0, rtol=0)
    soft = band_weight(H, W, h, w, 0.5)
    assert soft[~band].abs().max() == 0  # nothing outside the band
    assert soft[H // 2, W // 2] == 1 and soft.max() == 1 and soft.min() == 0
    # the weight falls monotonically from the centre to the edge along each axis ...
    row = soft[H // 2, W // 2 :]
    assert (row[1:] <= row[:-1]).all() and 0 < row[(w + 1) // 2 - 1] < 1
    # ... and is symmetric about the centre (a real image stays real)
    torch.testing.assert_close(soft[H // 2, W // 2 - (w - 1) // 2 : W // 2], soft[H // 2, W // 2 + 1 : W // 2 + (w + 1) // 2].flip(0))
    assert (soft <= band.to(soft.dtype)).all()
    with pytest.raises(ValueError, match="taper"):
        band_weight(H, W, h, w, 1.5)


def test_tapered_band_swap_blends_at_the_edge_and_equals_the_hard_swap_deep_inside() -> None:
    torch.manual_seed(0)
    lr = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    hr = torch.randn(1, 1, 32, 32, dtype=torch.float64)
    hard, soft = replace_low_band(hr, lr, 2), replace_low_band(hr, lr, 2, taper=0.5)
    k_hard, k_soft, k_hr = fft2c(hard), fft2c(soft), fft2c(hr)
    w = band_weight(32, 32, 16, 16, 0.5)
    torch.testing.assert_close(k_soft, w * k_hard + (1 - w) * k_hr, atol=1e-10, rtol=0)
    assert soft.dtype == hr.dtype and (ifft2c(k_soft).imag.abs().max() < 1e-12)
    # an SR estimate whose band is already the prior's is left alone by either swap
    up = zero_fill_upsample(lr, 2, "kspace")
    torch.testing.assert_close(replace_low_band(up, lr, 2, taper=0.5), up, atol=1e-12, rtol=0)

"""Degradations: k-space truncation, masks, seeds, bicubic, noise, stage targets."""

from __future__ import annotations

import math

import pytest
import torch

from iconet.config import ConfigError, from_dict
from iconet.data.degrade import (
    Degradation,
    bicubic_downsample,
    cartesian_mask,
    crop_to_multiple,
    fastmri_random_mask,
    gaussian_noise,
    kspace_truncate,
    pad_to_multiple,
    poisson_noise,
    seed_from_name,
    stage_targets,
    truncate_kspace,
    undersample,
)
from iconet.ops.fft import ifft2c


def _bandlimited(H: int, W: int, max_freq: int, seed: int = 0) -> torch.Tensor:
    """A positive real image with frequencies |f| <= max_freq (cycles per field of view)."""
    g = torch.Generator().manual_seed(seed)
    fy, fx = torch.meshgrid(torch.arange(-max_freq, max_freq + 1), torch.arange(0, max_freq + 1), indexing="ij")
    fy, fx = fy.reshape(-1, 1, 1).double(), fx.reshape(-1, 1, 1).double()
    amp, phase = torch.rand(2, fy.shape[0], 1, 1, generator=g, dtype=torch.float64)
    y = torch.arange(H, dtype=torch.float64)[:, None]
    x = torch.arange(W, dtype=torch.float64)[None, :]
    waves = amp * torch.cos(2 * math.pi * (fy * y / H + fx * x / W + phase))
    return waves.sum(0) + fy.shape[0] + 1.0


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


# ----------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("scale", [2, 4])
def test_constant_preserved_by_truncation(scale):
    hr = torch.full((2, 32, 48), 3.5, dtype=torch.float64)
    clean, k = kspace_truncate(hr, scale, return_kspace=True)
    assert clean.shape == (2, 32 // scale, 48 // scale)
    assert k.shape == clean.shape and k.is_complex()
    torch.testing.assert_close(clean, torch.full_like(clean, 3.5))


@pytest.mark.parametrize("scale", [2, 4])
def test_lr_pixel_m_sits_on_hr_pixel_sm(scale):
    H, W = 48, 64
    hr = _bandlimited(H, W, max_freq=H // (2 * scale) - 1)
    clean = kspace_truncate(hr, scale)
    torch.testing.assert_close(clean, hr[::scale, ::scale], atol=1e-9, rtol=0)


def test_odd_lr_sides_refused_with_reason():
    with pytest.raises(ValueError, match="multiples of 2\\*scale = 4"):
        kspace_truncate(torch.zeros(30, 32), 2)  # LR side 15 would be odd
    with pytest.raises(ValueError, match="crop_to_multiple"):
        Degradation(scale=4).degrade(torch.zeros(1, 36, 40), "v")


def test_crop_and_pad_to_multiple():
    img = torch.arange(37 * 45, dtype=torch.float32).reshape(1, 37, 45)
    c = crop_to_multiple(img, 8)
    assert c.shape == (1, 32, 40)
    assert c[0, 0, 0] == img[0, 2, 2]  # (37 - 32) // 2 = 2, (45 - 40) // 2 = 2
    p = pad_to_multiple(img, 8)
    assert p.shape == (1, 40, 48)
    assert p[0, 1, 1] == img[0, 0, 0] and p[0, 0, 0] == 0


# ----------------------------------------------------------------------------- masks


def test_cartesian_mask_exact_count_every_width():
    for width in range(16, 301):
        n = _half_up(0.30 * width)
        n_c = _half_up(0.15 * width)
        for pattern in ("random", "equispaced"):
            m = cartesian_mask(width, pattern=pattern, seed=width)
            assert m.dtype == torch.bool and m.shape == (width,)
            assert int(m.sum()) == n, (width, pattern)
            start = width // 2 - n_c // 2
            assert bool(m[start : start + n_c].all()), (width, pattern)
            assert bool(m[width // 2]), "DC line sampled"


def test_cartesian_mask_clamps():
    assert int(cartesian_mask(10, sampled_fraction=0.0, centre_fraction=0.0, seed=0).sum()) == 1
    assert int(cartesian_mask(10, sampled_fraction=0.2, centre_fraction=0.9, seed=0).sum()) == 2
    assert bool(cartesian_mask(10, sampled_fraction=1.0, seed=0).all())
    with pytest.raises(ValueError):
        cartesian_mask(10, sampled_fraction=1.5)
    with pytest.raises(ValueError):
        cartesian_mask(10, pattern="spiral")  # type: ignore[arg-type]


def test_equispaced_lines_evenly_spread():
    m = cartesian_mask(200, sampled_fraction=0.25, centre_fraction=0.05, pattern="equispaced", seed=3)
    idx = torch.nonzero(m).flatten()
    outer = idx[(idx < 95) | (idx >= 105)]
    gaps = torch.diff(outer[outer < 95])
    assert int(gaps.max() - gaps.min()) <= 1


def test_same_seed_same_mask_and_names_differ():
    s = seed_from_name("IXI002-Guys-0828-T2")
    assert torch.equal(cartesian_mask(128, seed=s), cartesian_mask(128, seed=s))
    masks = {tuple(cartesian_mask(128, seed=seed_from_name(f"vol{i}")).tolist()) for i in range(20)}
    assert len(masks) == 20


def test_seed_from_name_is_stable():
    # computed once; must never change (hashlib, not the per-process salted hash())
    assert seed_from_name("colin27_T1") == 8928429052077490810
    assert seed_from_name("IXI002-Guys-0828-T2") == 7328799373755474394
    assert 0 <= seed_from_name("x") < 2**63
    # and the mask drawn from it is pinned too (Python's random() stream is guaranteed stable)
    m = cartesian_mask(54, seed=seed_from_name("colin27_T1"))
    assert torch.nonzero(m).flatten().tolist() == [3, 5, 18, 23, 24, 25, 26, 27, 28, 29, 30, 31, 37, 39, 40, 52]


def test_fastmri_mask_probability_based():
    width = 320
    counts = [int(fastmri_random_mask(width, 4, 0.08, seed=s).sum()) for s in range(200)]
    assert len(set(counts)) > 5  # counts vary from draw to draw
    assert abs(sum(counts) / len(counts) - width / 4) < 3
    m = fastmri_random_mask(width, 4, 0.08, seed=1)
    n_c = _half_up(width * 0.08)
    assert bool(m[width // 2 - n_c // 2 : width // 2 - n_c // 2 + n_c].all())
    assert torch.equal(m, fastmri_random_mask(width, 4, 0.08, seed=1))


def test_fully_sampled_mask_gives_clean():
    hr = torch.rand(1, 32, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    clean, k = kspace_truncate(hr, 2, return_kspace=True)
    full = ifft2c(undersample(k, torch.ones(k.shape[-1], dtype=torch.bool))).abs()
    torch.testing.assert_close(full, clean)
    out = Degradation(scale=2, sampled_fraction=1.0).degrade(hr, "v")
    torch.testing.assert_close(out["lr"], out["clean"])
    assert out["params"]["mask_lines"] == 20


def test_undersample_axis():
    k = torch.ones(4, 6, dtype=torch.complex64)
    mask = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    u = undersample(k, mask, axis=-2)
    assert torch.equal(u[:, 0].real, mask.float())
    with pytest.raises(ValueError, match="lines"):
        undersample(k, mask, axis=-1)


# ----------------------------------------------------------------------------- bicubic, noise


def test_bicubic_downsample_of_constant_is_constant():
    hr = torch.full((3, 32, 48), 0.7, dtype=torch.float32)
    lr = bicubic_downsample(hr, 4)
    assert lr.shape == (3, 8, 12) and lr.dtype == torch.float32
    torch.testing.assert_close(lr, torch.full_like(lr, 0.7))


def test_bicubic_downsample_pixel_centre_grid():
    # a linear ramp along x: the LR pixel value is the ramp at the centre of its s-block
    x = torch.arange(64, dtype=torch.float64)
    hr = x[None, :].repeat(64, 1)
    lr = bicubic_downsample(hr, 4)
    expected = 4 * torch.arange(16, dtype=torch.float64) + 1.5
    torch.testing.assert_close(lr[8, 2:-2], expected[2:-2])


def test_noise_statistics():
    img = torch.full((256, 256), 0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    n = gaussian_noise(img, 0.1, g) - img
    assert abs(float(n.mean())) < 0.002 and abs(float(n.std()) - 0.1) < 0.002
    p = poisson_noise(img, dose=200.0, generator=torch.Generator().manual_seed(1))
    assert abs(float(p.mean()) - 0.5) < 0.003
    assert abs(float(p.var()) - 0.5 / 200) < 0.0002  # variance = value / dose
    same = poisson_noise(img, dose=200.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(p, same)


# ----------------------------------------------------------------------------- config, degrade


def test_degradation_config_and_grid():
    cfg = from_dict(Degradation, {"kind": "bicubic", "scale": 4})
    assert cfg.grid == "centre" and cfg.stages == 2
    assert Degradation().grid == "kspace"
    with pytest.raises(ConfigError):
        from_dict(Degradation, {"kind": "blur"})
    with pytest.raises(ConfigError, match="power of two"):
        from_dict(Degradation, {"scale": 3})


def test_degrade_kspace_seeded_vs_random():
    hr = torch.rand(1, 48, 64, generator=torch.Generator().manual_seed(0))
    d = Degradation(scale=2)
    a, b = d.degrade(hr, "volA"), d.degrade(hr, "volA")
    assert torch.equal(a["lr"], b["lr"])
    assert a["params"]["seed"] == seed_from_name("volA")
    assert a["params"]["mask_lines"] == _half_up(0.3 * 32) and a["params"]["mask_width"] == 32
    assert a["lr"].shape == a["clean"].shape == (1, 24, 32)
    assert not torch.equal(a["lr"], d.degrade(hr, "volB")["lr"])
    r = Degradation(scale=2, mask_mode="random")
    g = torch.Generator().manual_seed(5)
    x, y = r.degrade(hr, "volA", g), r.degrade(hr, "volA", g)
    assert x["params"]["seed"] != y["params"]["seed"]
    # the recorded seed rebuilds the sample
    m = r.make_mask(32, x["params"]["seed"])
    k = truncate_kspace(hr, 2)
    torch.testing.assert_close(ifft2c(undersample(k, m)).abs(), x["lr"])
    # mask along the other axis
    c = Degradation(scale=2, mask_axis=-2).degrade(hr, "volA")
    assert c["params"]["mask_width"] == 24


def test_degrade_other_kinds():
    hr = torch.full((1, 32, 32), 0.5)
    for kind in ("bicubic", "gaussian", "poisson"):
        d = Degradation(kind=kind, scale=2)
        out = d.degrade(hr, "v", noise_key="axis2/slice3")
        assert out["lr"].shape == (1, 16, 16) and d.grid == "centre"
        torch.testing.assert_close(out["clean"], torch.full((1, 16, 16), 0.5))
        again = d.degrade(hr, "v", noise_key="axis2/slice3")
        assert torch.equal(out["lr"], again["lr"])  # seeded noise
    g = Degradation(kind="gaussian", scale=2)
    assert not torch.equal(g.degrade(hr, "v", noise_key="a")["lr"], g.degrade(hr, "v", noise_key="b")["lr"])


# ----------------------------------------------------------------------------- stage targets


@pytest.mark.parametrize("kind", ["kspace", "bicubic"])
def test_stage_targets_sizes_and_reading(kind):
    hr = torch.rand(1, 64, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = stage_targets(hr, 8, kind)
    assert [tuple(x.shape[-2:]) for x in t["hr"]] == [(16, 12), (32, 24), (64, 48)]
    assert [tuple(x.shape[-2:]) for x in t["clean"]] == [(8, 6), (16, 12), (32, 24)]
    assert t["hr"][-1] is hr
    assert torch.equal(t["clean"][1], t["hr"][0]) and torch.equal(t["clean"][2], t["hr"][1])
    op = kspace_truncate if kind == "kspace" else bicubic_downsample
    torch.testing.assert_close(t["clean"][0], op(hr, 8))
    torch.testing.assert_close(t["hr"][1], op(hr, 2))
    d = Degradation(kind=kind, scale=8, sampled_fraction=1.0)
    torch.testing.assert_close(d.degrade(hr, "v")["clean"], t["clean"][0])


def test_stage_targets_scale_2():
    hr = torch.rand(1, 16, 16, dtype=torch.float64)
    t = stage_targets(hr, 2, "kspace")
    assert len(t["hr"]) == 1 and t["hr"][0] is hr and t["clean"][0].shape == (1, 8, 8)

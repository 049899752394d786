"""ICONet: shapes, gradients, ablation switches, determinism, bad input."""

from __future__ import annotations

import pytest
import torch

from iconet.models import build_model
from iconet.models.iconet import ICONet, ICONetConfig
from iconet.models.rscfl import ConvFeedForward
from iconet.models.summary import count_parameters
from iconet.ops.grid import replace_low_band, upsample, zero_fill_upsample

TINY = dict(width=8, heads=2, groups_per_stage=1, blocks_per_group=1)


def tiny(**kw) -> ICONet:
    torch.manual_seed(0)
    return build_model({"name": "iconet", **TINY, **kw})


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_shapes_at_every_scale_for_odd_sizes(scale):
    model = tiny(scale=scale, in_channels=2)
    out = model(torch.rand(2, 2, 37, 50))
    stages = {2: 1, 4: 2, 8: 3}[scale]
    assert set(out) == {"sr", "rec"}
    assert [tuple(t.shape) for t in out["sr"]] == [(2, 2, 37 * 2**k, 50 * 2**k) for k in range(1, stages + 1)]
    assert [tuple(t.shape) for t in out["rec"]] == [(2, 2, 37 * 2**k, 50 * 2**k) for k in range(stages)]


def test_default_config_builds_and_runs():
    model = build_model("iconet", scale=4).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 24, 20))
    assert out["sr"][-1].shape == (1, 1, 96, 80)


@pytest.mark.parametrize("zero_tails", [False, True])
def test_every_parameter_receives_a_gradient(zero_tails):
    model = tiny(scale=4, zero_tails=zero_tails)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(2, 1, 12, 10)
    # zeroed tails pass no gradient to the layers before them until they have moved once
    for _ in range(2 if zero_tails else 1):
        opt.zero_grad()
        out = model(x)
        loss = sum(t.mean() for ts in out.values() for t in ts)
        loss.backward()
        opt.step()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())


def test_fixed_seed_gives_bit_identical_outputs():
    x = torch.rand(1, 1, 16, 12)
    a, b = tiny(scale=4)(x), tiny(scale=4)(x)
    for key in ("sr", "rec"):
        for ta, tb in zip(a[key], b[key]):
            assert torch.equal(ta, tb)


def _module_types(model):
    return {type(m).__name__ for m in model.modules()}


def test_rec_branch_off_removes_branch_prior_and_fusion():
    full, off = tiny(scale=4), tiny(scale=4, rec_branch=False)
    assert off.head_rec is None
    assert "SRRecFusion" not in _module_types(off)
    assert not any("rec" in n or "embed" in n for n, _ in off.named_parameters())
    out = off(torch.rand(1, 1, 8, 8))
    assert out["rec"] == [] and len(out["sr"]) == 2
    assert count_parameters(off) < count_parameters(full)


def test_fusion_switches():
    gated, add, none = (tiny(fusion=f) for f in ("gated", "add", "none"))
    assert "SRRecFusion" not in _module_types(none)
    gate_params = sum(p.numel() for n, p in gated.named_parameters() if "fusions" in n and ".gate." in n)
    assert gate_params == 2 * 8 * 8 + 8  # one 1x1 conv 2C -> C per group
    assert count_parameters(gated) - count_parameters(add) == gate_params
    fuse_params = sum(p.numel() for n, p in add.named_parameters() if "fusions" in n)
    assert count_parameters(add) - count_parameters(none) == fuse_params == 2 * (8 * 8 + 8)


def test_gated_fusion_is_input_dependent_and_add_is_not():
    from iconet.models.fusion import SRRecFusion

    torch.manual_seed(0)
    fuse = SRRecFusion(4, gated=True)
    f_sr, f_rec = torch.rand(1, 4, 5, 5), torch.rand(1, 4, 5, 5)
    out_sr, out_rec = fuse(f_sr, f_rec)
    g = torch.sigmoid(fuse.gate(torch.cat([f_sr, f_rec], 1)))
    assert torch.allclose(out_sr, f_sr + g * fuse.rec_to_sr(f_rec))
    assert torch.allclose(out_rec, f_rec + (1 - g) * fuse.sr_to_rec(f_sr))
    assert g.std() > 0  # weights vary with the input


@pytest.mark.parametrize("switch", ["spatial_branch", "channel_branch"])
def test_rscfl_branch_switches_remove_their_modules(switch):
    full, off = tiny(), tiny(**{switch: False})
    kind = {"spatial_branch": "SpatialAttention", "channel_branch": "ChannelAttention"}[switch]
    assert kind in _module_types(full) and kind not in _module_types(off)
    assert count_parameters(off) < count_parameters(full)
    assert off(torch.rand(1, 1, 9, 7))["sr"][-1].shape == (1, 1, 18, 14)


def test_last_stage_supervision_exposes_last_outputs_only():
    x = torch.rand(1, 1, 8, 6)
    full, last = tiny(scale=8), tiny(scale=8, supervision="last")
    a, b = full(x), last(x)
    assert len(b["sr"]) == 1 and len(b["rec"]) == 1
    assert torch.equal(a["sr"][-1], b["sr"][0]) and torch.equal(a["rec"][-1], b["rec"][0])
    assert count_parameters(full) == count_parameters(last)


def test_untrained_output_is_a_residual_on_the_sampling_grid():
    # With zeroed tails (the default initialisation), sr_1 = upsample(rec_1) and rec_1 = x:
    # the untrained network is its interpolation baseline on the configured grid.
    for grid in ("kspace", "centre"):
        model = tiny(grid=grid, scale=4)
        x = torch.rand(1, 1, 10, 12)
        out = model(x)
        assert torch.equal(out["rec"][0], x)
        assert torch.allclose(out["sr"][0], upsample(x, 2, grid), atol=1e-6)
        assert torch.allclose(out["sr"][1], upsample(upsample(x, 2, grid), 2, grid), atol=1e-6)
    legacy = tiny(zero_tails=False)
    assert legacy.stages[0].tail_sr.weight.abs().sum() > 0


def test_channel_attention_gradients_stay_finite_on_an_empty_patch():
    # An all-zero MRI background patch made 1/||q|| gradients explode in bf16 training.
    from iconet.models.rscfl import ChannelAttention

    torch.manual_seed(0)
    attn = ChannelAttention(8, heads=2)
    torch.nn.init.zeros_(attn.q.bias)
    x = torch.zeros(1, 8, 12, 12, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x + 1e-9 * torch.randn_like(x)).float().square().sum().backward()
    grads = [p.grad for p in attn.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() and g.abs().max() < 1e3 for g in grads)


def test_spatial_attention_bf16_gradients_match_fp32_on_cpu():
    # Guards the fp32 fallback of the dilated depth-wise conv (a oneDNN bf16 bug on CPU).
    from iconet.models.rscfl import SpatialAttention

    torch.manual_seed(0)
    attn = SpatialAttention(8).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 32, 32).contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 8, 32, 32)
    (attn(x) * g).sum().backward()
    ref = attn.wide.weight.grad.clone()
    attn.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x)
    (out.float() * g).sum().backward()
    err = (attn.wide.weight.grad - ref).abs().max() / ref.abs().max()
    assert err < 0.05


def test_channel_attention_sees_the_whole_image():
    # Changing one far-away pixel changes the output everywhere: global, not local.
    from iconet.models.rscfl import ChannelAttention

    torch.manual_seed(0)
    attn = ChannelAttention(8, heads=2)
    x = torch.rand(1, 8, 40, 40)
    y = x.clone()
    y[..., 39, 39] += 5.0
    diff = (attn(x) - attn(y)).abs()
    assert diff[..., 0, 0].max() > 1e-6


def test_channel_attention_matches_the_textbook_formula():
    # Restormer-style MDTA written plainly: normalise q, k along space, softmax(q k^T τ) v.
    from iconet.models.rscfl import ChannelAttention

    torch.manual_seed(0)
    attn = ChannelAttention(4, heads=2).double()
    with torch.no_grad():
        attn.temperature.copy_(torch.tensor([0.7, 2.0]).reshape(2, 1, 1))
    x = torch.rand(2, 4, 3, 5, dtype=torch.float64)
    q, k = attn.q(x), attn.k(x)
    v = attn.v(x)
    q, k, v = (t.reshape(2, 2, 2, 15) for t in (q, k, v))
    # cosine with the documented floor on the norms: ||q||² + eps·N
    q, k = (t / (t.square().sum(-1, keepdim=True) + attn.eps * 15).sqrt() for t in (q, k))
    ref = (torch.softmax(q @ k.transpose(-2, -1) * attn.temperature, -1) @ v).reshape(2, 4, 3, 5)
    assert torch.allclose(attn(x), ref, atol=1e-12)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(attn(cl), ref, atol=1e-12)


@pytest.mark.parametrize("scale", [3, 0, -2])
def test_wrong_scale_is_a_value_error(scale):
    with pytest.raises(ValueError, match="scale must be one of"):
        ICONetConfig(scale=scale)
    with pytest.raises(ValueError, match="scale"):
        build_model("iconet", scale=scale)


def test_non_4d_input_and_wrong_channels_are_value_errors():
    model = tiny()
    with pytest.raises(ValueError, match="4-D"):
        model(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="configured for 1 channel"):
        model(torch.rand(1, 3, 8, 8))


def test_bad_config_values_name_the_field():
    with pytest.raises(ValueError, match="fusion"):
        ICONetConfig(fusion="concat")
    with pytest.raises(ValueError, match="divisible by heads"):
        ICONetConfig(width=10, heads=4)
    with pytest.raises(ValueError, match="prior_upsampler"):
        ICONetConfig(prior_upsampler="lanczos")
    with pytest.raises(ValueError, match="band_consistency needs the k-space grid"):
        ICONetConfig(band_consistency=True, grid="centre")
    with pytest.raises(ValueError, match="band_consistency needs the k-space grid"):
        ICONetConfig(band_consistency=True, rec_branch=False)
    with pytest.raises(ValueError, match="band_taper needs band_consistency"):
        ICONetConfig(band_taper=0.25)
    with pytest.raises(ValueError, match="band_taper must lie"):
        ICONetConfig(band_consistency=True, band_taper=-0.1)


@pytest.mark.parametrize("grid", ["kspace", "centre"])
def test_fourier_prior_upsampler_makes_the_untrained_network_sinc_interpolation(grid):
    model = tiny(grid=grid, scale=4, prior_upsampler="fourier")
    x = torch.rand(1, 1, 10, 13)
    out = model(x)
    torch.testing.assert_close(out["sr"][0], zero_fill_upsample(x, 2, grid))
    torch.testing.assert_close(out["sr"][1], zero_fill_upsample(zero_fill_upsample(x, 2, grid), 2, grid))
    # only the global residual changed: same parameters as the bicubic one
    assert count_parameters(model) == count_parameters(tiny(grid=grid, scale=4))


@pytest.mark.parametrize("scale", [2, 4])
def test_band_consistency_gives_each_sr_estimate_the_prior_low_band(scale):
    torch.manual_seed(1)
    model = tiny(scale=scale, band_consistency=True, zero_tails=False)  # tails non-zero: sr != upsample(rec)
    x = torch.rand(2, 1, 11, 12)
    out = model(x)
    for sr, rec in zip(out["sr"], out["rec"]):
        torch.testing.assert_close(replace_low_band(sr, rec, 2), sr, atol=1e-5, rtol=0)
    free = tiny(scale=scale, zero_tails=False)
    free.load_state_dict(model.state_dict())
    sr_free = free(x)["sr"][0]
    assert (sr_free - out["sr"][0]).abs().max() > 1e-3  # the switch changes the output
    torch.testing.assert_close(replace_low_band(sr_free, out["rec"][0], 2), out["sr"][0], atol=1e-5, rtol=0)


def test_groups_per_stage_can_differ_between_stages():
    light = tiny(scale=4, groups_per_stage=[2, 1])
    assert [len(s.sr_groups) for s in light.stages] == [2, 1]
    assert [len(s.rec_groups) for s in light.stages] == [2, 1]
    assert [len(s.fusions) for s in light.stages] == [2, 1]
    same = tiny(scale=4, groups_per_stage=[2, 2])
    assert count_parameters(same) > count_parameters(light)
    assert count_parameters(same) == count_parameters(tiny(scale=4, groups_per_stage=2))
    assert light(torch.rand(1, 1, 9, 11))["sr"][-1].shape == (1, 1, 36, 44)
    with pytest.raises(ValueError, match="lists 1 count"):
        tiny(scale=4, groups_per_stage=[2])
    # a later stage may have no groups: prior and estimate from the upsampled features alone
    bare = tiny(scale=4, groups_per_stage=[2, 0])
    assert [len(s.sr_groups) for s in bare.stages] == [2, 0] and len(bare.stages[1].fusions) == 0
    assert count_parameters(bare) < count_parameters(light)
    out = bare(torch.rand(1, 1, 9, 11))
    assert [t.shape[-2:] for t in out["sr"]] == [(18, 22), (36, 44)] and out["rec"][1].shape[-2:] == (18, 22)
    for bad in ([0, 2], [2, -1]):
        with pytest.raises(ValueError, match="non-negative integers, the first stage at least 1"):
            tiny(scale=4, groups_per_stage=bad)
    with pytest.raises(ValueError, match="fusion must be one of"):
        tiny(scale=2, fusion="bogus")


def test_layer_scale_adds_one_learned_scale_per_residual_branch():
    plain, scaled = tiny(), tiny(layer_scale=0.1)
    blocks = sum(1 for m in scaled.modules() if m.__class__.__name__ == "RSCFLBlock")
    assert count_parameters(scaled) - count_parameters(plain) == blocks * 2 * 8  # two (C,) scales, C=8
    block = next(m for m in scaled.modules() if m.__class__.__name__ == "RSCFLBlock")
    assert torch.equal(block.scale_ffn, torch.full((1, 8, 1, 1), 0.1))
    # with the scales at 1 the block is the unscaled block
    ref = next(m for m in plain.modules() if m.__class__.__name__ == "RSCFLBlock")
    block.load_state_dict({**ref.state_dict(), "scale_mix": torch.ones(1, 8, 1, 1), "scale_ffn": torch.ones(1, 8, 1, 1)})
    x = torch.rand(1, 8, 9, 7)
    assert torch.allclose(block(x), ref(x), atol=1e-6)


def test_mix_norm_switch_removes_the_pre_norm_only():
    with_norm, without = tiny(), tiny(mix_norm=False)
    norms = [m for m in with_norm.modules() if m.__class__.__name__ == "ChannelLayerNorm"]
    assert norms and not [m for m in without.modules() if m.__class__.__name__ == "ChannelLayerNorm"]
    assert count_parameters(with_norm) - count_parameters(without) == sum(count_parameters(n) for n in norms)
    assert without(torch.rand(1, 1, 10, 12))["sr"][0].shape == (1, 1, 20, 24)


def test_rec_blocks_per_group_sets_the_reconstruction_branch_depth_only():
    default = tiny(scale=4, blocks_per_group=2)
    light = tiny(scale=4, blocks_per_group=2, rec_blocks_per_group=1)
    for stage_d, stage_l in zip(default.stages, light.stages):
        assert [len(g.blocks) for g in stage_l.sr_groups] == [len(g.blocks) for g in stage_d.sr_groups] == [2]
        assert [len(g.blocks) for g in stage_l.rec_groups] == [1]
    one_block = sum(count_parameters(m) for m in default.stages[0].rec_groups[0].blocks[:1])
    assert count_parameters(default) - count_parameters(light) == 2 * one_block  # one block fewer per stage
    # None means "as the SR branch": the same model, weight for weight
    same = tiny(scale=4, blocks_per_group=2, rec_blocks_per_group=2)
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), same.state_dict().values()))
    assert light(torch.rand(1, 1, 9, 11))["rec"][-1].shape == (1, 1, 18, 22)
    with pytest.raises(ValueError, match="rec_blocks_per_group"):
        ICONetConfig(rec_blocks_per_group=0)


def test_ffn_activation_switches_gelu_for_relu_and_nothing_else():
    gelu = tiny(scale=2, ffn_activation="gelu")  # tiny() seeds: both start from the same weights
    relu = tiny(scale=2, ffn_activation="relu")
    # the same parameters (an activation has none), weight for weight
    assert all(torch.equal(a, b) for a, b in zip(gelu.state_dict().values(), relu.state_dict().values()))
    ffn = relu.stages[0].sr_groups[0].blocks[0].ffn
    x = torch.randn(1, ffn.expand.in_channels, 5, 6)
    torch.testing.assert_close(ffn(x), ffn.project(torch.relu(ffn.expand(x))))
    with torch.no_grad():
        for m in (gelu, relu):
            for p in m.parameters():
                p.normal_(0, 0.1)  # non-zero tails, so the activation shows in the output
    relu.load_state_dict(gelu.state_dict())
    x = torch.rand(1, 1, 12, 12)
    assert not torch.allclose(gelu(x)["sr"][-1], relu(x)["sr"][-1])
    with pytest.raises(ValueError, match="ffn_activation"):
        ICONetConfig(ffn_activation="swish")


def test_relu_feed_forward_in_place_gives_the_out_of_place_values_and_gradients():
    torch.manual_seed(0)
    ffn = ConvFeedForward(6, activation="relu")
    x = torch.randn(2, 6, 7, 5, requires_grad=True)
    ffn(x).square().sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in ffn.parameters()]
    x.grad = None
    ffn.zero_grad()
    reference = ffn.project(torch.relu(ffn.expand(x)))  # out of place
    torch.testing.assert_close(ffn(x), reference)
    reference.square().sum().backward()
    for got, want in zip(grads, [x.grad] + [p.grad for p in ffn.parameters()]):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("scale", [2, 4])
def test_band_taper_blends_the_prior_band_into_the_free_sr_estimate(scale):
    torch.manual_seed(2)
    model = tiny(scale=scale, band_consistency=True, band_taper=0.25, zero_tails=False)
    free = tiny(scale=scale, zero_tails=False)
    free.load_state_dict(model.state_dict())  # same parameters: the taper adds none
    x = torch.rand(2, 1, 11, 12)
    out = model(x)
    torch.testing.assert_close(replace_low_band(free(x)["sr"][0], out["rec"][0], 2, taper=0.25), out["sr"][0],
                               atol=1e-5, rtol=0)
    hard = tiny(scale=scale, band_consistency=True, zero_tails=False)
    hard.load_state_dict(model.state_dict())
    assert (hard(x)["sr"][-1] - out["sr"][-1]).abs().max() > 1e-4  # the taper changes the output


def test_spectral_mixing_is_global_along_rows_and_local_across_them():
    from iconet.models.rscfl import SpectralMixing

    torch.manual_seed(3)
    mix = SpectralMixing(4)
    x = torch.randn(1, 4, 6, 23)  # odd width: irfft must give the width back
    y = mix(x)
    assert y.shape == x.shape
    poked = x.clone()
    poked[0, :, 2, 0] += 1.0
    diff = (mix(poked) - y).abs().amax(dim=(0, 1))  # (H, W)
    # a change at one pixel reaches the far end of its row (no local kernel does) ...
    assert diff[2, 12:].min() > 0
    # ... and no other row (1-D transform along the phase-encoding axis only)
    assert diff[[0, 1, 3, 4, 5]].max() == 0
    # bf16 autocast: computed in float32, returned in the input's dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yb = mix(x.to(torch.bfloat16))
    assert yb.dtype == torch.bfloat16 and (yb.float() - y).abs().max() < 0.1


@pytest.mark.parametrize("width", [10, 23])
def test_spectral_mixing_as_dft_matmuls_equals_its_fft_form(width):
    """The matrix form that bf16 CPU inference takes is the FFT form's maths (fp32, both parities
    of the width, channels_last in and out)."""
    from iconet.models.rscfl import SpectralMixing

    torch.manual_seed(4)
    mix = SpectralMixing(6).eval()
    x = torch.randn(2, 6, 5, width).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fft, dft = mix(x), mix._forward_dft(x)
    torch.testing.assert_close(dft, fft, atol=1e-5, rtol=1e-5)
    assert dft.is_contiguous(memory_format=torch.channels_last)


def test_bf16_inference_of_a_shipped_model_takes_the_dft_form_and_stays_as_close_to_fp32(monkeypatch):
    """On real slices (the shipped sample), a shipped model's bf16 inference runs the Fourier
    branch as DFT matmuls, and its output is as close to the fp32 output as the FFT form's."""
    import numpy as np

    from iconet.data.io import read_volume
    from iconet.data.samples import sample_path
    from iconet.hub import load_model
    from iconet.models.rscfl import SpectralMixing

    net = load_model("iconet-t1-x2-fast")[0].to(memory_format=torch.channels_last)
    vol = read_volume(sample_path()).data.astype(np.float32)
    hr = torch.from_numpy(np.moveaxis(vol, 2, 0)[:, None] / np.percentile(vol, 99.5))
    lr = hr[..., : hr.shape[-2] // 2 * 2 : 2, : hr.shape[-1] // 2 * 2 : 2].contiguous(memory_format=torch.channels_last)
    calls = []
    original = SpectralMixing._forward_dft
    monkeypatch.setattr(SpectralMixing, "_forward_dft", lambda self, x: calls.append(1) or original(self, x))
    with torch.inference_mode():
        ref = net(lr)["sr"][-1]
        assert not calls  # fp32 keeps the FFTs
        with torch.autocast("cpu", dtype=torch.bfloat16):
            dft = net(lr)["sr"][-1].float()
            assert len(calls) == sum(isinstance(m, SpectralMixing) for m in net.modules())
            monkeypatch.setattr(SpectralMixing, "dft_in_bf16", False)
            fft = net(lr)["sr"][-1].float()

    def psnr(a: torch.Tensor) -> float:
        return float(10 * torch.log10(ref.max() ** 2 / ((a - ref) ** 2).mean()))

    assert psnr(fft) > 45 and psnr(dft) > psnr(fft) - 0.5


def test_spectral_branch_goes_where_asked_and_keeps_iconet_under_edsr_size():
    from iconet.models.edsr import EDSR, EDSRConfig

    def spectral(model):
        stage = model.stages[0]
        return (sum(b.spectral is not None for g in stage.sr_groups for b in g.blocks),
                sum(b.spectral is not None for g in stage.rec_groups for b in g.blocks))

    two = dict(scale=2, groups_per_stage=2, blocks_per_group=2)  # 4 blocks per branch
    assert spectral(tiny(**two)) == (0, 0)
    assert spectral(tiny(**two, spectral_branch="rec")) == (0, 4)
    assert spectral(tiny(**two, spectral_branch="both")) == (4, 4)
    # zero tails: the untrained network is still its interpolation baseline
    x = torch.rand(1, 1, 10, 13)
    torch.testing.assert_close(tiny(scale=2, spectral_branch="rec")(x)["sr"][0], tiny(scale=2)(x)["sr"][0])
    shipped = ICONet(ICONetConfig(scale=2, width=56, groups_per_stage=3, spectral_branch="rec"))
    assert count_parameters(shipped) < count_parameters(EDSR(EDSRConfig(scale=2)))
    with pytest.raises(ValueError, match="spectral_branch must be one of"):
        ICONetConfig(spectral_branch="kspace")
    with pytest.raises(ValueError, match="needs the reconstruction branch"):
        ICONetConfig(spectral_branch="rec", rec_branch=False)


def test_spectral_gate_can_switch_the_fourier_branch_off_locally():
    from iconet.models.rscfl import SpectralMixing

    torch.manual_seed(4)
    gated, plain = SpectralMixing(4), SpectralMixing(4, gated=False)
    plain.load_state_dict(gated.state_dict(), strict=False)  # same mixing weights
    x = torch.randn(1, 4, 5, 16)
    with torch.no_grad():
        gated.gate.weight.zero_()
        gated.gate.bias.fill_(20.0)  # gate open everywhere: the ungated branch
        torch.testing.assert_close(gated(x), plain(x), atol=1e-6, rtol=0)
        gated.gate.bias.fill_(-20.0)  # gate shut: nothing passes
        assert gated(x).abs().max() < 1e-6
    assert plain.gate is None


def test_a_saved_fourier_branch_without_the_gate_key_loads_ungated():
    from iconet.models.registry import saved_model_config

    saved = {"name": "iconet", "scale": 2, "width": 8, "heads": 2, "groups_per_stage": 1, "blocks_per_group": 1,
             "ffn_activation": "relu", "spectral_branch": "rec"}  # the first, ungated runs spelt no gate
    old = build_model(saved_model_config(saved))
    new = build_model(saved_model_config({**saved, "spectral_gate": True}))
    assert old.cfg.spectral_gate is False and new.cfg.spectral_gate is True
    assert count_parameters(new) > count_parameters(old)
    assert build_model("iconet", spectral_branch="rec").cfg.spectral_gate is True


@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_nonnegative_clamps_every_output_at_the_inputs_floor_and_changes_nothing_else(offset):
    """Floor 0 for a non-negative (magnitude) input; the input's own minimum for a signed one
    (``offset`` > 0: LR pixels down to -0.3), so a signed input's negative values survive."""
    torch.manual_seed(5)
    model = tiny(scale=4, nonnegative=True, zero_tails=False)
    free = tiny(scale=4, zero_tails=False)
    free.load_state_dict(model.state_dict())
    x = torch.rand(1, 1, 12, 12) - offset
    floor = min(float(x.min()), 0.0)
    with torch.no_grad():
        out, ref = model(x), free(x)
    assert min(float(t.min()) for t in ref["sr"] + ref["rec"]) < floor  # the untrained outputs undershoot
    for t in out["sr"] + out["rec"]:
        assert t.min() >= floor
    # stage 1 is the free stage clamped; stage 2 then starts from the clamped estimate
    torch.testing.assert_close(out["sr"][0], ref["sr"][0].clamp_min(floor))
    torch.testing.assert_close(out["rec"][0], ref["rec"][0].clamp_min(floor))
    assert count_parameters(model) == count_parameters(free)


@pytest.mark.parametrize("dilation", [1, 3])
def test_depthwise_as_dense_equals_the_depthwise_conv_and_its_gradients(dilation):
    """The dense block-diagonal form of a depth-wise conv (bf16 CPU training) gives the conv's
    output and the gradients of its input, weight and bias (fp32, to rounding)."""
    from iconet.models.rscfl import depthwise_as_dense

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 6, 5, padding=2 * dilation, dilation=dilation, groups=6)
    x = torch.randn(2, 6, 20, 24, requires_grad=True)
    g = torch.randn(2, 6, 20, 24)
    (conv(x) * g).sum().backward()
    ref = [t.grad.clone() for t in (x, conv.weight, conv.bias)]
    out_ref = conv(x).detach()
    for t in (x, conv.weight, conv.bias):
        t.grad = None
    out = depthwise_as_dense(conv, x)
    (out * g).sum().backward()
    torch.testing.assert_close(out.detach(), out_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip((x.grad, conv.weight.grad, conv.bias.grad), ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_spatial_attention_bf16_dense_training_matches_the_depthwise_form():
    """Under bf16 autocast on a CPU, training takes the dense form; its output and weight
    gradients stay within bf16 rounding of the depth-wise form's."""
    from iconet.models.rscfl import SpatialAttention

    torch.manual_seed(0)
    attn = SpatialAttention(8).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 32, 32).contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 8, 32, 32)
    got = {}
    for dense in (False, True):
        attn.dense_training = dense
        attn.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attn(x)
        (out.float() * g).sum().backward()
        got[dense] = (out.detach().float(), attn.local.weight.grad.clone(), attn.wide.weight.grad.clone())
    del attn.dense_training  # back to the class default
    torch.testing.assert_close(got[True][0], got[False][0], rtol=0.02, atol=0.02)
    for a, b in zip(got[True][1:], got[False][1:]):
        assert ((a - b).abs().max() / b.abs().max()) < 0.05

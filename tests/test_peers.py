"""Peer models (interpolation, EDSR, T2Net-style, SwinIR-light): contract, structure, attention."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from iconet.models.base import ModelConfig, SRModel
from iconet.models.edsr import EDSR, EDSRConfig, edsr_param_count
from iconet.models.interpolation import BicubicConfig, BicubicSR, ZeroFillConfig, ZeroFillSR
from iconet.models.swinir import SwinIR, SwinIRConfig, _shift_mask
from iconet.models.t2net import T2Net, T2NetConfig, best_match, task_attention
from iconet.ops.grid import upsample

PEERS: dict[str, tuple[type[ModelConfig], type[SRModel]]] = {
    "bicubic": (BicubicConfig, BicubicSR),
    "zerofill": (ZeroFillConfig, ZeroFillSR),
    "edsr": (EDSRConfig, EDSR),
    "t2net": (T2NetConfig, T2Net),
    "swinir": (SwinIRConfig, SwinIR),
}
LEARNED = ("edsr", "t2net", "swinir")
# Tiny widths keep the tests fast; the architecture (stages, branches, windows) is unchanged.
TINY: dict[str, dict[str, Any]] = {
    "bicubic": {},
    "zerofill": {},
    "edsr": {"n_feats": 8, "n_blocks": 2},
    "t2net": {"n_feats": 8, "n_groups": 2, "n_blocks": 1},
    "swinir": {"embed_dim": 8, "n_groups": 1, "depth": 2, "num_heads": 2},
}


def build(name: str, **kw: Any) -> SRModel:
    cfg_cls, cls = PEERS[name]
    return cls(cfg_cls(**{**TINY[name], **kw}))


def test_registry_builds_every_peer_by_name() -> None:
    from iconet.models.registry import build_model, model_names

    assert set(PEERS) <= set(model_names())
    for name, (cfg_cls, cls) in PEERS.items():
        model = build_model({"name": name, "scale": 4, "in_channels": 2, **TINY[name]})
        assert type(model) is cls and type(model.cfg) is cfg_cls and model.cfg.name == name
        assert model.scale == 4 and model.in_channels == 2


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("name", list(PEERS))
def test_output_shapes_and_stages(name: str, scale: int) -> None:
    torch.manual_seed(0)
    model = build(name, scale=scale, in_channels=2)
    x = torch.rand(2, 2, 37, 50)
    with torch.no_grad():
        out = model(x)
    assert set(out) == {"sr", "rec"}
    stages = scale.bit_length() - 1
    if name in ("bicubic", "zerofill"):
        assert [t.shape for t in out["sr"]] == [(2, 2, 37 * 2**k, 50 * 2**k) for k in range(1, stages + 1)]
    else:
        assert [t.shape for t in out["sr"]] == [(2, 2, 37 * scale, 50 * scale)]
    assert [t.shape for t in out["rec"]] == ([(2, 2, 37, 50)] if name == "t2net" else [])
    assert all(t.dtype == x.dtype and torch.isfinite(t).all() for ts in out.values() for t in ts)


@pytest.mark.parametrize("name", LEARNED)
def test_default_configs_run(name: str) -> None:
    cfg_cls, cls = PEERS[name]
    model = cls(cfg_cls())
    with torch.no_grad():
        out = model(torch.rand(1, 1, 11, 13))
    assert out["sr"][-1].shape == (1, 1, 22, 26)


@pytest.mark.parametrize("name", list(PEERS))
def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, scale=4, in_channels=2)
    params = dict(model.named_parameters())
    if name in ("bicubic", "zerofill"):
        assert not params
        return
    out = model(torch.rand(1, 2, 13, 10))
    loss = sum(t.square().mean() for ts in out.values() for t in ts)
    loss.backward()
    for pname, p in params.items():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_edsr_baseline_parameter_count() -> None:
    # Published EDSR-baseline x2 (RGB, 64 ch, 16 blocks): 1,369,859 trainable parameters (1.37 M).
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(EDSR(EDSRConfig(scale=2, in_channels=3))) == 1_369_859
    assert count(EDSR(EDSRConfig(scale=2, in_channels=3, global_residual=False))) == 1_369_859
    # One channel: head 9·1·64+64, 16 blocks x 2 x (9·64·64+64), body 9·64·64+64,
    # upsampler 9·64·256+256, tail 9·64·1+1.
    one = (9 * 64 + 64) + 32 * (9 * 64 * 64 + 64) + (9 * 64 * 64 + 64) + (9 * 64 * 256 + 256) + (9 * 64 + 1)
    assert one == 1_367_553
    assert count(EDSR(EDSRConfig(scale=2, in_channels=1))) == one == edsr_param_count(1)
    # x4 adds one more x2 upsampling stage.
    assert count(EDSR(EDSRConfig(scale=4, in_channels=3))) == 1_369_859 + 9 * 64 * 256 + 256


@pytest.mark.parametrize("grid", ["kspace", "centre"])
def test_global_residual_is_on_the_configured_grid(grid: str) -> None:
    """With the learned output convs zeroed, every network returns the grid upsampling."""
    torch.manual_seed(0)
    x = torch.rand(1, 2, 16, 24)
    for name, last in (("edsr", "tail"), ("t2net", "tail_sr"), ("swinir", "upsampler")):
        model = build(name, scale=4, in_channels=2, grid=grid)
        with torch.no_grad():
            for p in model.get_submodule(last).parameters():
                p.zero_()
            out = model(x)
        torch.testing.assert_close(out["sr"][-1], upsample(x, 4, grid))
    model = build("t2net", scale=2, in_channels=2, grid=grid)
    with torch.no_grad():
        for p in model.tail_rec.parameters():
            p.zero_()
        torch.testing.assert_close(model(x)["rec"][0], x)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_interpolation_peers_on_the_kspace_grid_are_exact_at_sm(scale: int) -> None:
    x = torch.rand(1, 2, 10, 14, dtype=torch.float64)
    for name in ("bicubic", "zerofill"):
        out = build(name, scale=scale, in_channels=2, grid="kspace")(x)
        for k, sr in enumerate(out["sr"], start=1):
            s = 2**k
            torch.testing.assert_close(sr[..., ::s, ::s], x, atol=1e-10, rtol=0)


def test_bicubic_peer_on_the_centre_grid_is_pytorch_bicubic() -> None:
    x = torch.rand(1, 1, 9, 12)
    out = build("bicubic", scale=4, grid="centre")(x)
    for k, sr in enumerate(out["sr"], start=1):
        ref = F.interpolate(x, scale_factor=2**k, mode="bicubic", align_corners=False)
        torch.testing.assert_close(sr, ref)


@pytest.mark.parametrize("name", list(PEERS))
def test_bad_input_raises(name: str) -> None:
    model = build(name, scale=2, in_channels=2)
    with pytest.raises(ValueError, match="4-D"):
        model(torch.rand(2, 16, 16))
    with pytest.raises(ValueError, match="channel"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="floating"):
        model(torch.ones(1, 2, 16, 16, dtype=torch.int64))


@pytest.mark.parametrize(
    ("cfg_cls", "kwargs", "field"),
    [
        (EDSRConfig, {"n_feats": 0}, "n_feats"),
        (EDSRConfig, {"n_blocks": -1}, "n_blocks"),
        (EDSRConfig, {"res_scale": 0.0}, "res_scale"),
        (EDSRConfig, {"scale": 3}, "scale"),
        (T2NetConfig, {"attn_chunk": 0}, "attn_chunk"),
        (T2NetConfig, {"n_groups": 0}, "n_groups"),
        (T2NetConfig, {"n_blocks": 0}, "n_blocks"),
        (SwinIRConfig, {"embed_dim": 30, "num_heads": 4}, "embed_dim"),
        (SwinIRConfig, {"window_size": 1}, "window_size"),
        (SwinIRConfig, {"mlp_ratio": 0.0}, "mlp_ratio"),
        (BicubicConfig, {"grid": "corner"}, "grid"),
        (ZeroFillConfig, {"in_channels": 0}, "in_channels"),
    ],
)
def test_config_validation_names_the_field(cfg_cls: type[ModelConfig], kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        cfg_cls(**kwargs)


def test_config_names_default_to_registry_names() -> None:
    assert {name: cfg_cls().name for name, (cfg_cls, _) in PEERS.items()} == {n: n for n in PEERS}


@pytest.mark.parametrize("name", LEARNED)
def test_fixed_seed_is_bit_identical(name: str) -> None:
    x = torch.rand(1, 1, 12, 17, generator=torch.Generator().manual_seed(1))

    def run(seed: int) -> dict[str, list[torch.Tensor]]:
        torch.manual_seed(seed)
        with torch.no_grad():
            return build(name, scale=2)(x)

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(p, q) for key in a for p, q in zip(a[key], b[key]))
    assert not torch.equal(a["sr"][0], c["sr"][0])  # the seed does matter


# --- T2Net's task transformer -------------------------------------------------------------


def test_hard_attention_finds_the_planted_patch() -> None:
    """Keys hold an asymmetric 3x3 pattern at (1, 4); the query holds 2x the same pattern at
    (3, 2). The query there must pick key (1, 4) with relevance 1 and receive V's patch there."""
    pattern = torch.tensor([[1.0, 2.0, 0.5], [3.0, 1.5, 4.0], [0.2, 2.5, 1.0]])
    k = torch.zeros(1, 1, 6, 7)
    q = torch.zeros(1, 1, 6, 7)
    k[0, 0, 0:3, 3:6] = pattern
    q[0, 0, 2:5, 1:4] = 2 * pattern
    v = torch.arange(2 * 42, dtype=torch.float32).view(1, 2, 6, 7)

    qp, kp = F.normalize(F.unfold(q, 3, padding=1), dim=1), F.normalize(F.unfold(k, 3, padding=1), dim=1)
    idx = best_match(qp, kp, max_scores=10**6)
    assert idx[0, 3 * 7 + 2] == 1 * 7 + 4

    t, soft = task_attention(q, k, v)
    assert soft.shape == (1, 1, 6, 7) and t.shape == v.shape
    assert soft[0, 0, 3, 2] == pytest.approx(1.0, abs=1e-6)
    assert soft[0, 0, 3, 2] == soft.max()
    # T is the V patches at the matched keys, folded back with overlaps averaged: rebuild it
    # pixel by pixel with loops (zero padding outside the image).
    H, W = 6, 7
    ref, cnt = torch.zeros(2, H, W), torch.zeros(H, W)
    for qi in range(H * W):
        (py, px), (ky, kx) = divmod(qi, W), divmod(int(idx[0, qi]), W)
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                if 0 <= py + a < H and 0 <= px + b < W:
                    cnt[py + a, px + b] += 1
                    if 0 <= ky + a < H and 0 <= kx + b < W:
                        ref[:, py + a, px + b] += v[0, :, ky + a, kx + b]
    torch.testing.assert_close(t[0], ref / cnt)


def test_hard_attention_transfers_shifted_content() -> None:
    """Q = K shifted by (2, 3): interior queries find their source, T = V shifted, S = 1."""
    torch.manual_seed(0)
    k = torch.randn(1, 4, 11, 12)
    v = torch.randn(1, 3, 11, 12)
    dy, dx = 2, 3
    q = torch.roll(k, shifts=(dy, dx), dims=(-2, -1))
    t, soft = task_attention(q, k, v)
    # Queries whose whole 3x3 patch (and its source) lie inside: rows 3..9, cols 4..10; pixels
    # whose 9 covering queries are all such queries: rows 4..8, cols 5..9.
    torch.testing.assert_close(soft[..., 3:10, 4:11], torch.ones(1, 1, 7, 7))
    torch.testing.assert_close(t[..., 4:9, 5:10], v[..., 4 - dy : 9 - dy, 5 - dx : 10 - dx])


def test_chunked_attention_equals_unchunked() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 9, 10), torch.randn(2, 4, 9, 10), torch.randn(2, 5, 9, 10)
    n = 90
    full_t, full_s = task_attention(q, k, v, max_scores=2 * n * n)
    qp, kp = F.normalize(F.unfold(q, 3, padding=1), dim=1), F.normalize(F.unfold(k, 3, padding=1), dim=1)
    ref_idx = (qp.transpose(1, 2) @ kp).argmax(-1)
    for budget in (1, 2 * n * 7, 2 * n * n - 1):  # one query at a time, uneven chunks, all but one
        assert torch.equal(best_match(qp, kp, budget), ref_idx)
        t, s = task_attention(q, k, v, max_scores=budget)
        assert torch.equal(t, full_t) and torch.equal(s, full_s)


def test_t2net_attn_chunk_does_not_change_the_output() -> None:
    x = torch.rand(1, 1, 9, 11)
    outs = []
    for chunk in (1, 2**24):
        torch.manual_seed(0)
        with torch.no_grad():
            outs.append(build("t2net", attn_chunk=chunk)(x))
    for key in ("sr", "rec"):
        torch.testing.assert_close(outs[0][key][0], outs[1][key][0], atol=1e-6, rtol=0)


# --- SwinIR windows -----------------------------------------------------------------------


def test_swinir_shift_mask_separates_wrapped_regions() -> None:
    mask = _shift_mask(16, 24, 8, 4, torch.device("cpu"))
    assert mask.shape == (6, 64, 64)
    assert torch.equal(mask, mask.transpose(1, 2)) and (mask.diagonal(dim1=1, dim2=2) == 0).all()
    assert (mask[0] == 0).all()  # a window away from the wrap sees only its own region
    assert (mask[-1] < 0).any()  # the corner window mixes four regions and must mask them


def test_swinir_pads_to_the_window_and_crops_back() -> None:
    """A 10x7 input (window 4) is reflect-padded at the bottom/right to 12x8 and cropped back:
    pixel m keeps its place, so the result is the padded image's output, cropped."""
    torch.manual_seed(0)
    model = build("swinir", scale=2, window_size=4, embed_dim=8, n_groups=1, depth=1, num_heads=2)
    assert model.size_multiple == 4
    x = torch.rand(1, 1, 10, 7)
    with torch.no_grad():
        out = model(x)["sr"][0]
        padded = model(F.pad(x, (0, 1, 0, 2), mode="reflect"))["sr"][0]
    assert out.shape == (1, 1, 20, 14)
    torch.testing.assert_close(out, padded[..., :20, :14])


def test_edsr_zero_tail_starts_as_its_global_residual_and_still_learns() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 24)
    model = build("edsr", scale=2, zero_tail=True, n_feats=8, n_blocks=2)
    torch.testing.assert_close(model(x)["sr"][-1], upsample(x, 2, "kspace"))
    assert not torch.equal(build("edsr", scale=2, n_feats=8, n_blocks=2)(x)["sr"][-1], upsample(x, 2, "kspace"))
    # the tail gets a gradient at once, so the next step moves the output
    loss = (model(x)["sr"][-1] - torch.rand(2, 1, 32, 48)).abs().mean()
    loss.backward()
    assert model.tail.weight.grad.abs().sum() > 0

"""ICONet: iterative collaboration of a reconstruction branch and an SR branch, in 2x stages.

Zou et al., "Iterative Collaboration Network Guided By Reconstruction Prior for Medical Image
Super-Resolution" (arXiv 2504.16958). There is no official code; what the paper states and
what is our reading is set out in docs/architecture.md. Per stage ``k = 1..S``
(``S = log2(scale)``), with ``x_0`` the LR input::

    for each group g:  F_rec = rec_group(F_rec);  F_sr = sr_group(F_sr)
                       F_sr, F_rec = fusion(F_sr, F_rec)          # both ways, gated
    rec_k = tail_rec(F_rec) + x_{k-1}                               # artifact-free prior
    F_sr  = F_sr + embed(rec_k)                                     # the prior guides SR
    F_sr, F_rec = up2(F_sr), up2(F_rec)                             # next size
    sr_k  = tail_sr(F_sr) + upsample2(rec_k, grid)                  # 2x estimate
    x_k   = sr_k

``upsample2`` interpolates on the sampling grid of the degradation (``cfg.grid``).
Shapes: input ``(B, C, h, w)``; ``sr_k``: ``(B, C, 2^k h, 2^k w)``; ``rec_k``:
``(B, C, 2^(k-1) h, 2^(k-1) w)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from iconet.models.base import ModelConfig, SRModel
from iconet.models.fusion import FUSIONS, SRRecFusion
from iconet.models.registry import register
from iconet.models.rscfl import FFN_ACTIVATIONS, RSCFLGroup
from iconet.ops.grid import replace_low_band, upsample, zero_fill_upsample
from iconet.ops.rows import RowShuffle, upsample_rows

PRIOR_UPSAMPLERS = ("bicubic", "fourier")
SPECTRAL_BRANCHES = ("none", "rec", "both")


@dataclass
class ICONetConfig(ModelConfig):
    """ICONet hyper-parameters; every ablation of the paper is one switch here.

    Attributes:
        width: feature channels C of both branches.
        groups_per_stage: RSCFL groups per branch and stage (a fusion follows each group):
            one count for every stage, or a list with one count per stage, first (lowest
            resolution) stage first, e.g. ``[3, 1]`` at 4x keeps the high-resolution stage light;
            a later stage may have 0 (its prior and SR estimate then come from the upsampled
            features alone: the lightest 4x).
        blocks_per_group: RSCFL blocks per group.
        rec_blocks_per_group: RSCFL blocks per group of the reconstruction branch; ``None``
            (default) = ``blocks_per_group`` (splits measured: benchmarks/design_x2.py).
        heads: heads of the channel attention (width must be divisible by it).
        ffn_expansion: hidden width of the feed-forward networks, as a multiple of C.
        ffn_activation: ``"relu"`` (default, EDSR's) or ``"gelu"`` in the feed-forward networks
            (measured: benchmarks/design_x2.py); a saved config without the key is read as GELU
            (``SAVED_BEFORE``).
        rec_branch: build the reconstruction branch (off: SR branch alone, no prior, no fusion).
        fusion: SR-Rec fusion: ``"gated"`` (adaptive), ``"add"`` (fixed mixing) or ``"none"``.
        spatial_branch: RSCFL spatial (large-kernel) branch on/off.
        channel_branch: RSCFL channel (transposed attention) branch on/off.
        supervision: ``"all"`` exposes the outputs of every stage for the multi-stage loss;
            ``"last"`` exposes the last stage only (intermediate stages are still computed).
        layer_scale: initial per-channel scale of every RSCFL residual branch (LayerScale);
            0 = off, the branches are added unscaled.
        mix_norm: LayerNorm before each RSCFL block's spatial/channel mixing (pre-norm, default);
            off, the branches see the residual stream as it is.
        zero_tails: initialise the output convolutions of both branches to zero, so that the
            untrained network *is* its interpolation baseline (``rec = x``, ``sr`` = grid-correct
            bicubic of it) and training learns corrections (``benchmarks/design_x2.py init``).
        prior_upsampler: how the prior ``rec_k`` is brought to the next size for the SR
            estimate's global residual: ``"bicubic"`` (default) or ``"fourier"`` (sinc
            interpolation by zero-filling its spectrum, the exact inverse of k-space truncation).
        band_consistency: k-space grid only: the low band of each SR estimate's spectrum (the
            block the LR was cut from) is replaced by the prior's, so ``sr_k`` agrees with
            ``rec_k`` there exactly and the SR branch only adds the frequencies the LR lacks.
        spectral_branch: where RSCFL blocks get a third mixing branch, global along the
            phase-encoding (last) axis through its Fourier transform (FFC-style,
            :class:`~iconet.models.rscfl.SpectralMixing`): ``"none"`` (default), ``"rec"`` (the
            reconstruction branch, whose job is undoing the undersampling's aliasing along that
            axis) or ``"both"``.
        spectral_gate: multiply that branch's output by a sigmoid gate from the local content
            (default on; benchmarks/design_x2.py).
        nonnegative: clamp every SR estimate and prior at the floor of the input's own
            intensity range, ``min(0, min(x))`` per sample: 0 for magnitude MR (whose LR input
            is non-negative), where an SR network's undershoot in the air around the head is
            faint in MSE but costs whole-slice SSIM (``benchmarks/ssim_split.py``). The floor
            is never above the input's minimum, so a CT in Hounsfield units or any signed
            input keeps its negative values. Off by default; on in the shipped MR recipes.
        band_taper: with ``band_consistency``, the fraction of the band's half-width next to
            its edge over which the swap fades out (raised cosine; 0 = hard band): near the
            edge the SR branch's own estimate is kept in part, so a spectrum that drops at the
            edge does not ring (measured: docs/results.md).
        through_plane: upscale the height (dim -2) only and keep the width: the 1-D problem of
            a thick-slice scan seen in a plane that contains its through-plane axis, slices
            along the height (:mod:`iconet.isotropic`). Features are upsampled by a 3×3 conv to
            2C and a row shuffle, the prior by cubic interpolation along the height with
            replicated borders (:func:`iconet.ops.rows.upsample_rows`; a slice stack is not
            periodic). Output ``(B, C, scale·h, w)``. Refuses ``band_consistency`` and the
            ``"fourier"`` prior upsampler, which are 2-D k-space operations.
    """

    name: str = "iconet"
    width: int = 40
    groups_per_stage: int | list[int] = 2
    blocks_per_group: int = 2
    rec_blocks_per_group: int | None = None
    heads: int = 4
    ffn_expansion: float = 1.0
    ffn_activation: str = "relu"
    rec_branch: bool = True
    fusion: str = "gated"
    spatial_branch: bool = True
    channel_branch: bool = True
    supervision: str = "all"
    zero_tails: bool = True
    layer_scale: float = 0.0
    mix_norm: bool = True
    prior_upsampler: str = "bicubic"
    band_consistency: bool = False
    band_taper: float = 0.0
    spectral_branch: str = "none"
    spectral_gate: bool = True
    nonnegative: bool = False
    through_plane: bool = False

    # spectral_gate: the first Fourier-branch runs were ungated (no saved model without the key has the branch gated)
    SAVED_BEFORE: ClassVar[dict[str, Any]] = {"ffn_activation": "gelu", "spectral_gate": False}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("width", "blocks_per_group", "heads")
        if self.rec_blocks_per_group is not None and (
            not isinstance(self.rec_blocks_per_group, int) or self.rec_blocks_per_group < 1
        ):
            raise ValueError(f"rec_blocks_per_group must be a positive integer or None, got {self.rec_blocks_per_group!r}")
        groups = self.groups_per_stage
        if isinstance(groups, list):
            if len(groups) != self.stages:
                raise ValueError(
                    f"groups_per_stage lists {len(groups)} count(s) for a {self.scale}x model of {self.stages} stage(s)"
                )
            if any(not isinstance(g, int) or g < 0 for g in groups) or groups[0] < 1:
                raise ValueError("groups_per_stage must hold non-negative integers, the first stage at least 1, "
                                 f"got {groups!r}")
        else:
            self.require_positive("groups_per_stage")
        if self.channel_branch and self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if self.ffn_expansion <= 0:
            raise ValueError(f"ffn_expansion must be > 0, got {self.ffn_expansion!r}")
        if self.ffn_activation not in FFN_ACTIVATIONS:
            raise ValueError(f"ffn_activation must be one of {sorted(FFN_ACTIVATIONS)}, got {self.ffn_activation!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.prior_upsampler not in PRIOR_UPSAMPLERS:
            raise ValueError(f"prior_upsampler must be one of {PRIOR_UPSAMPLERS}, got {self.prior_upsampler!r}")
        if self.band_consistency and (self.grid != "kspace" or not self.rec_branch):
            raise ValueError("band_consistency needs the k-space grid and the reconstruction branch "
                             f"(grid={self.grid!r}, rec_branch={self.rec_branch})")
        if self.spectral_branch not in SPECTRAL_BRANCHES:
            raise ValueError(f"spectral_branch must be one of {SPECTRAL_BRANCHES}, got {self.spectral_branch!r}")
        if self.spectral_branch == "rec" and not self.rec_branch:
            raise ValueError("spectral_branch 'rec' needs the reconstruction branch")
        if not 0.0 <= self.band_taper <= 1.0:
            raise ValueError(f"band_taper must lie in [0, 1], got {self.band_taper!r}")
        if self.through_plane and (self.band_consistency or self.prior_upsampler != "bicubic"):
            raise ValueError("through_plane upsamples the height only: it takes neither band_consistency "
                             f"nor prior_upsampler {self.prior_upsampler!r} (2-D k-space operations)")
        if self.band_taper and not self.band_consistency:
            raise ValueError("band_taper needs band_consistency")
        if self.supervision not in ("all", "last"):
            raise ValueError(f"supervision must be 'all' or 'last', got {self.supervision!r}")

    def stage_groups(self, k: int) -> int:
        """RSCFL groups per branch in stage ``k`` (0-based)."""
        g = self.groups_per_stage
        return g[k] if isinstance(g, list) else g

    @property
    def rec_blocks(self) -> int:
        """RSCFL blocks per group of the reconstruction branch."""
        return self.blocks_per_group if self.rec_blocks_per_group is None else self.rec_blocks_per_group


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def _up2(channels: int, rows_only: bool = False) -> nn.Sequential:
    """2x learned upsampling of features: 3×3 conv to 4C, PixelShuffle. ``(B,C,h,w)→(B,C,2h,2w)``.
    ``rows_only``: 3×3 conv to 2C and a row shuffle, ``(B,C,h,w)→(B,C,2h,w)`` (``through_plane``)."""
    if rows_only:
        return nn.Sequential(_conv3(channels, 2 * channels), RowShuffle(2))
    return nn.Sequential(_conv3(channels, 4 * channels), nn.PixelShuffle(2))


class ICONetStage(nn.Module):
    """One 2x stage: groups of both branches, fusions, the prior, and the upsamplers."""

    def __init__(self, cfg: ICONetConfig, k: int) -> None:
        super().__init__()
        last = k == cfg.stages - 1
        c, cin = cfg.width, cfg.in_channels
        block = dict(
            spatial=cfg.spatial_branch,
            channel=cfg.channel_branch,
            heads=cfg.heads,
            ffn_expansion=cfg.ffn_expansion,
            ffn_activation=cfg.ffn_activation,
            layer_scale=cfg.layer_scale,
            mix_norm=cfg.mix_norm,
            spectral_gate=cfg.spectral_gate,
        )
        groups = range(cfg.stage_groups(k))
        self.sr_groups = nn.ModuleList(
            RSCFLGroup(c, cfg.blocks_per_group, spectral=cfg.spectral_branch == "both", **block) for _ in groups
        )
        self.up_sr = _up2(c, cfg.through_plane)
        self.tail_sr = _conv3(c, cin)
        self.rec_groups: nn.ModuleList | None = None
        self.fusions: nn.ModuleList | None = None
        if cfg.rec_branch:
            self.rec_groups = nn.ModuleList(
                RSCFLGroup(c, cfg.rec_blocks, spectral=cfg.spectral_branch != "none", **block) for _ in groups
            )
            self.tail_rec = _conv3(c, cin)
            self.embed = _conv3(cin, c)
            # The reconstruction features of the last stage have no next stage to feed.
            self.up_rec = None if last else _up2(c, cfg.through_plane)
            if cfg.fusion != "none":
                self.fusions = nn.ModuleList(SRRecFusion(c, gated=cfg.fusion == "gated") for _ in groups)
        self.grid = cfg.grid
        self.upsample_prior = zero_fill_upsample if cfg.prior_upsampler == "fourier" else upsample
        if cfg.through_plane:
            self.upsample_prior = upsample_rows
        self.band_consistency = cfg.band_consistency
        self.band_taper = cfg.band_taper
        if cfg.zero_tails:
            tails = [self.tail_sr] + ([self.tail_rec] if cfg.rec_branch else [])
            for conv in tails:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(
        self, x: torch.Tensor, f_sr: torch.Tensor, f_rec: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """``x``: the stage input image; returns ``(sr_k, rec_k, F_sr, F_rec)`` at the next size."""
        for g, sr_group in enumerate(self.sr_groups):
            f_sr = sr_group(f_sr)
            if self.rec_groups is not None:
                f_rec = self.rec_groups[g](f_rec)
                if self.fusions is not None:
                    f_sr, f_rec = self.fusions[g](f_sr, f_rec)
        rec = None
        base = x
        if self.rec_groups is not None:
            rec = self.tail_rec(f_rec) + x
            f_sr = f_sr + self.embed(rec)
            base = rec
            f_rec = self.up_rec(f_rec) if self.up_rec is not None else None
        f_sr = self.up_sr(f_sr)
        sr = self.tail_sr(f_sr) + self.upsample_prior(base, 2, self.grid)
        if self.band_consistency:
            sr = replace_low_band(sr, rec, 2, self.band_taper)
        return sr, rec, f_sr, f_rec


def input_floor(x: torch.Tensor) -> torch.Tensor:
    """The clamp floor of ``nonnegative`` for an input batch ``x (B, C, h, w)``: ``(B, 1, 1, 1)``,
    ``min(0, min over the sample)``. 0 for a non-negative (magnitude) input; the input's own
    minimum for a signed one, so no value the input reaches is ever cut off."""
    return x.detach().amin(dim=(1, 2, 3), keepdim=True).clamp(max=0)


@register("iconet", ICONetConfig)
class ICONet(SRModel):
    """ICONet as a pure ``nn.Module``: ``(B, C, h, w) → {"sr": [...], "rec": [...]}``.

    ``sr[-1]`` has shape ``(B, C, scale·h, scale·w)``. With ``rec_branch=False`` the ``rec``
    list is empty; with ``supervision="last"`` both lists hold the last stage only.
    """

    def __init__(self, cfg: ICONetConfig) -> None:
        super().__init__(cfg)
        self.cfg: ICONetConfig = cfg
        self.head_sr = _conv3(cfg.in_channels, cfg.width)
        self.head_rec = _conv3(cfg.in_channels, cfg.width) if cfg.rec_branch else None
        self.stages = nn.ModuleList(ICONetStage(cfg, k) for k in range(cfg.stages))

    def _forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        f_sr = self.head_sr(x)
        f_rec = self.head_rec(x) if self.head_rec is not None else None
        srs: list[torch.Tensor] = []
        recs: list[torch.Tensor] = []
        floor = input_floor(x) if self.cfg.nonnegative else None
        for stage in self.stages:
            x, rec, f_sr, f_rec = stage(x, f_sr, f_rec)
            if floor is not None:
                x = torch.maximum(x, floor.to(x.dtype))
                rec = torch.maximum(rec, floor.to(rec.dtype)) if rec is not None else None
            srs.append(x)
            if rec is not None:
                recs.append(rec)
        if self.cfg.supervision == "last":
            srs, recs = srs[-1:], recs[-1:]
        return {"sr": srs, "rec": recs}

"""EDSR-baseline (Lim et al., "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017), written for iconet's model contract.

Architecture (baseline: 64 channels, 16 residual blocks, no batch-norm, res_scale 1)::

    f    = head(x)                                 # conv 3x3, C -> F
    f    = f + body(f)                             # n_blocks x [conv-ReLU-conv, *res_scale, +]
                                                   #   then conv 3x3 (long skip)
    f    = up(f)                                   # per 2x stage: conv F -> 4F, PixelShuffle(2)
    sr   = tail(f) [+ upsample(x, s, grid)]        # conv 3x3, F -> C

Differences from the published model, both deliberate:

* no RGB mean shift (medical images are normalised per volume, channels are not RGB);
* ``global_residual`` (default on, our addition): the network predicts the residual over a
  bicubic upsampling of the input on the degradation's sampling grid. This makes the peer
  stronger and faster to train on medical data; set it off for the published form.

With ``global_residual=False`` and 3 channels, the parameter count at x2 is the published
1,369,859 (1.37 M); :func:`edsr_param_count` gives it for any setting.

Shapes: ``x (B, C, h, w)`` → ``{"sr": [(B, C, s·h, s·w)], "rec": []}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from iconet.models.base import ModelConfig, SRModel
from iconet.models.registry import register
from iconet.ops.grid import upsample

__all__ = ["EDSR", "EDSRConfig", "ResBlock", "Upsampler", "conv3x3", "edsr_param_count"]


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    """3x3 convolution with bias and 'same' zero padding."""
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class ResBlock(nn.Module):
    """EDSR residual block: ``x + res_scale * conv(relu(conv(x)))``, shape-preserving ``(B, F, h, w)``."""

    def __init__(self, n_feats: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(n_feats, n_feats), nn.ReLU(inplace=True), conv3x3(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class Upsampler(nn.Sequential):
    """``stages`` x [conv F -> 4F, PixelShuffle(2)]: ``(B, F, h, w)`` → ``(B, F, 2^stages h, 2^stages w)``.

    PixelShuffle output pixel ``2m`` (and ``2m+1``) comes from LR pixel ``m``: the learned
    sub-pixel layout adapts to either sampling grid, so no grid is imposed here.
    """

    def __init__(self, n_feats: int, stages: int) -> None:
        layers: list[nn.Module] = []
        for _ in range(stages):
            layers += [conv3x3(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
        super().__init__(*layers)


@dataclass
class EDSRConfig(ModelConfig):
    """EDSR settings (defaults: the published baseline plus our global residual).

    Attributes:
        n_feats: feature channels F.
        n_blocks: residual blocks in the body.
        res_scale: residual scaling inside each block (1.0 in the baseline, 0.1 in EDSR-large).
        global_residual: add ``upsample(x, scale, grid)`` to the output (our addition).
        zero_tail: initialise the output convolution to zero, so that the untrained network
            is its global residual (bicubic on the grid) — ICONet's ``zero_tails``, for
            diagnosing what that initialisation does to a plain network (off by default).
    """

    name: str = "edsr"
    n_feats: int = 64
    n_blocks: int = 16
    res_scale: float = 1.0
    global_residual: bool = True
    zero_tail: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("n_feats")
        if self.n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {self.n_blocks!r}")
        if not self.res_scale > 0:
            raise ValueError(f"res_scale must be > 0, got {self.res_scale!r}")


def edsr_param_count(in_channels: int, n_feats: int = 64, n_blocks: int = 16, stages: int = 1) -> int:
    """Trainable parameters of :class:`EDSR` (all conv weights + biases), from the architecture."""

    def conv(c_in: int, c_out: int) -> int:  # 3x3 conv with bias
        return 9 * c_in * c_out + c_out

    c, f = in_channels, n_feats
    return conv(c, f) + n_blocks * 2 * conv(f, f) + conv(f, f) + stages * conv(f, 4 * f) + conv(f, c)


@register("edsr", EDSRConfig)
class EDSR(SRModel):
    """EDSR-baseline; single output ``{"sr": [final], "rec": []}`` (aligned to the last stage)."""

    cfg: EDSRConfig

    def __init__(self, cfg: EDSRConfig) -> None:
        super().__init__(cfg)
        c, f = cfg.in_channels, cfg.n_feats
        self.head = conv3x3(c, f)
        self.body = nn.Sequential(*[ResBlock(f, cfg.res_scale) for _ in range(cfg.n_blocks)], conv3x3(f, f))
        self.up = Upsampler(f, cfg.stages)
        self.tail = conv3x3(f, c)
        if cfg.zero_tail:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def _forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        f = self.head(x)
        f = f + self.body(f)
        sr = self.tail(self.up(f))
        if self.cfg.global_residual:
            sr = sr + upsample(x, self.scale, self.cfg.grid)
        return {"sr": [sr], "rec": []}

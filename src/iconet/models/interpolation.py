"""Parameter-free interpolation peers: bicubic and k-space zero-filling (sinc).

Both upsample on the sampling grid of the degradation (``cfg.grid``, see
:mod:`iconet.ops.grid`): ``"kspace"`` puts LR pixel ``m`` on HR pixel ``s·m``, ``"centre"``
aligns pixel centres. Every stage is interpolated straight from the input (never cascaded), so
``sr[k]`` is the best this interpolator can do at ``2^(k+1)`` times the input size.

Shapes: ``x (B, C, h, w)`` → ``{"sr": [(B, C, 2h, 2w), (B, C, 4h, 4w), ...], "rec": []}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iconet.models.base import ModelConfig, SRModel
from iconet.models.registry import register
from iconet.ops.grid import upsample, zero_fill_upsample

__all__ = ["BicubicConfig", "BicubicSR", "ZeroFillConfig", "ZeroFillSR"]


@dataclass
class BicubicConfig(ModelConfig):
    """Bicubic interpolation (Keys, a = -0.75, as ``F.interpolate``) on ``grid``."""

    name: str = "bicubic"


@dataclass
class ZeroFillConfig(ModelConfig):
    """Zero-padding of the centred spectrum (band-limited sinc interpolation) on ``grid``."""

    name: str = "zerofill"


class _InterpolationSR(SRModel):
    """Shared forward: one interpolated image per 2x stage, no reconstruction output."""

    def _interpolate(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        raise NotImplementedError

    def _forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        sr = [self._interpolate(x, 2**k) for k in range(1, self.cfg.stages + 1)]
        return {"sr": sr, "rec": []}


@register("bicubic", BicubicConfig)
class BicubicSR(_InterpolationSR):
    """Bicubic upsampling; on the ``"kspace"`` grid it interpolates through the LR samples
    (``sr[..., s·m, s·n] == x[..., m, n]``) with periodic borders, on ``"centre"`` it equals
    ``F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)``."""

    def _interpolate(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return upsample(x, scale, self.cfg.grid, mode="bicubic")


@register("zerofill", ZeroFillConfig)
class ZeroFillSR(_InterpolationSR):
    """Sinc interpolation by zero-filling k-space (computed in float64, returned in ``x``'s dtype).

    For data made by k-space truncation (even LR sides) this is the exact inverse of the
    truncation wherever the HR image had no energy outside the kept band.
    """

    def _interpolate(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return zero_fill_upsample(x, scale, self.cfg.grid)

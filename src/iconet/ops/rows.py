"""One-axis (height) upsampling: the 1-D problem of a slice stack seen in a plane across it.

A plane that contains the through-plane axis of a thick-slice scan is sharp along its width
(an in-plane axis) and coarse along its height (across the slices). These ops upsample the
height only; the width is never touched. Tensors are ``(B, C, h, w)``.

Grids along the height, as in :mod:`iconet.ops.grid`: on ``"kspace"`` row ``m`` of the input
sits on output row ``s·m`` (a slice centre is an output row); on ``"centre"`` the fields of view
coincide. A slice stack is not periodic, so borders are replicated, never wrapped.
"""

from __future__ import annotations

import torch

from iconet.ops.grid import GRIDS


def _keys_weights(t: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution (a = -0.5, Catmull-Rom) weights of taps ``-1, 0, 1, 2`` at
    fraction ``t`` in [0, 1): ``(n,) → (4, n)``; they sum to 1 and interpolate (t = 0 → [0,1,0,0])."""
    t2, t3 = t * t, t * t * t
    return torch.stack([
        -0.5 * t3 + t2 - 0.5 * t,
        1.5 * t3 - 2.5 * t2 + 1.0,
        -1.5 * t3 + 2.0 * t2 + 0.5 * t,
        0.5 * t3 - 0.5 * t2,
    ])


def upsample_rows(x: torch.Tensor, scale: int, grid: str = "kspace") -> torch.Tensor:
    """Cubic interpolation along the height: ``(B, C, h, w) → (B, C, scale·h, w)``.

    Output row ``j`` reads input coordinate ``j/scale`` (``"kspace"``) or
    ``(j + 0.5)/scale − 0.5`` (``"centre"``); taps beyond the first and last row repeat them.
    On ``"kspace"`` every ``scale``-th output row is an input row, exactly.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, h, w) tensor, got shape {tuple(x.shape)}")
    if grid not in GRIDS:
        raise ValueError(f"unknown sampling grid {grid!r}; expected one of {GRIDS}")
    j = torch.arange(x.shape[-2] * scale, device=x.device, dtype=torch.float64)
    return resample_rows(x, j / scale if grid == "kspace" else (j + 0.5) / scale - 0.5)


def resample_rows(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Cubic (Keys, a = -0.5) interpolation of ``x (B, C, h, w)`` at row coordinates ``coords (n,)``:
    ``(B, C, n, w)``. Whole coordinates return their rows exactly; taps beyond the first and
    last row repeat them. Differentiable in ``x``."""
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, h, w) tensor, got shape {tuple(x.shape)}")
    h = x.shape[-2]
    u = coords.to(device=x.device, dtype=torch.float64)
    i0 = torch.floor(u)
    w = _keys_weights(u - i0).to(torch.float32 if x.dtype != torch.float64 else torch.float64)
    i0 = i0.long()
    out = None
    for k in range(4):
        idx = (i0 + k - 1).clamp(0, h - 1)
        tap = x.index_select(-2, idx) * w[k].to(x.dtype)[:, None]
        out = tap if out is None else out + tap
    return out


def row_shuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """PixelShuffle along the height only: ``(B, s·C, h, w) → (B, C, s·h, w)``.

    Channel ``c·s + i`` of input row ``m`` becomes channel ``c`` of output row ``s·m + i``
    (the ordering of :class:`torch.nn.PixelShuffle` restricted to one axis).
    """
    b, cs, h, w = x.shape
    if cs % scale:
        raise ValueError(f"row_shuffle: {cs} channels are not divisible by {scale}")
    c = cs // scale
    return x.reshape(b, c, scale, h, w).permute(0, 1, 3, 2, 4).reshape(b, c, h * scale, w)


class RowShuffle(torch.nn.Module):
    """:func:`row_shuffle` as a module (for ``nn.Sequential``)."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return row_shuffle(x, self.scale)


__all__ = ["RowShuffle", "resample_rows", "row_shuffle", "upsample_rows"]

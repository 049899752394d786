"""A light SwinIR-style peer (Liang et al., "SwinIR: Image Restoration Using Swin
Transformer", ICCVW 2021), written for iconet's model contract.

::

    f0  = conv_first(x)                                   # conv 3x3, C -> D
    f   = f0 + conv(norm(groups(f0)))                     # residual Swin groups (RSTB)
    sr  = PixelShuffle(s)(conv(f)) [+ upsample(x, s, grid)]   # "pixelshuffledirect", as SwinIR-light

Each group: ``depth`` Swin layers (window self-attention over ``window_size``² tokens with a
learned relative position bias, every second layer on windows shifted by half a window, then
an MLP; pre-norm, residual), a 3x3 conv, and a residual over the group. The input is padded to
a multiple of ``window_size`` by :meth:`SRModel.forward` and the output cropped back.

Not in the original: no mean subtraction (medical data is normalised per volume); the
optional global residual over a grid-aware bicubic upsampling (as in our EDSR peer).

Shapes: ``x (B, C, h, w)`` → ``{"sr": [(B, C, s·h, s·w)], "rec": []}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from iconet.models.base import ModelConfig, SRModel
from iconet.models.edsr import conv3x3
from iconet.models.registry import register
from iconet.ops.grid import upsample

__all__ = ["SwinIR", "SwinIRConfig", "SwinLayer", "WindowAttention"]


@dataclass
class SwinIRConfig(ModelConfig):
    """Light SwinIR settings.

    Attributes:
        embed_dim: token channels D (divisible by ``num_heads``).
        n_groups: residual Swin transformer blocks (RSTB).
        depth: Swin layers per group (alternately plain and shifted windows).
        num_heads: attention heads.
        window_size: side of the attention windows (inputs are padded to a multiple of it).
        mlp_ratio: hidden width of the MLP, as a multiple of ``embed_dim``.
        global_residual: add ``upsample(x, scale, grid)`` to the output (our addition).
    """

    name: str = "swinir"
    embed_dim: int = 48
    n_groups: int = 3
    depth: int = 4
    num_heads: int = 4
    window_size: int = 8
    mlp_ratio: float = 2.0
    global_residual: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("embed_dim", "n_groups", "depth", "num_heads")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.window_size < 2:
            raise ValueError(f"window_size must be >= 2, got {self.window_size!r}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio!r}")


def _to_windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``(B, H, W, C)`` → ``(B·nW, ws², C)``; ``H, W`` multiples of ``ws``."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def _from_windows(win: torch.Tensor, ws: int, B: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`_to_windows`: ``(B·nW, ws², C)`` → ``(B, H, W, C)``."""
    x = win.view(B, H // ws, W // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, -1)


def _shift_mask(H: int, W: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """``(nW, ws², ws²)`` additive mask: -100 between tokens that the cyclic shift brought
    together from different image regions, 0 elsewhere."""
    label = torch.zeros(1, H, W, 1, device=device)
    bands = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, (hs, wsl) in enumerate((a, b) for a in bands for b in bands):
        label[:, hs, wsl, :] = i
    win = _to_windows(label, ws).squeeze(-1)  # (nW, ws²)
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative position bias.

    ``x (B·nW, ws², D)``, optional ``mask (nW, ws², ws²)`` → ``(B·nW, ws², D)``.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        span = 2 * window_size - 1
        self.bias_table = nn.Parameter(torch.empty(span * span, num_heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        ys, xs = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        flat = torch.stack([ys.flatten(), xs.flatten()])  # (2, n)
        rel = flat[:, :, None] - flat[:, None, :] + window_size - 1  # (2, n, n), in [0, span)
        self.register_buffer("bias_index", rel[0] * span + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        Bw, n, D = x.shape
        q, k, v = self.qkv(x).view(Bw, n, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (Bw, heads, n, n)
        attn = attn + self.bias_table[self.bias_index].permute(2, 0, 1)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(Bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(Bw, self.heads, n, n)
        out = attn.softmax(dim=-1) @ v  # (Bw, heads, n, d)
        return self.proj(out.transpose(1, 2).reshape(Bw, n, D))


class SwinLayer(nn.Module):
    """Pre-norm Swin layer on ``(B, H, W, D)``; ``shifted`` layers use half-window cyclic shifts."""

    def __init__(self, dim: int, window_size: int, num_heads: int, mlp_ratio: float, shifted: bool) -> None:
        super().__init__()
        self.ws = window_size
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, int(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        ws = self.ws
        # As SwinIR: no shift when a single window covers the image along a side.
        shift = ws // 2 if self.shifted and min(H, W) > ws else 0
        y = self.norm1(x)
        mask = None
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            mask = _shift_mask(H, W, ws, shift, x.device).to(x.dtype)
        y = _from_windows(self.attn(_to_windows(y, ws), mask), ws, B, H, W)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class RSTB(nn.Module):
    """Residual Swin transformer block: ``x + conv(layers(x))`` on ``(B, D, H, W)``."""

    def __init__(self, dim: int, depth: int, window_size: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            SwinLayer(dim, window_size, num_heads, mlp_ratio, shifted=i % 2 == 1) for i in range(depth)
        )
        self.conv = conv3x3(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1)
        for layer in self.layers:
            y = layer(y)
        return x + self.conv(y.permute(0, 3, 1, 2))


@register("swinir", SwinIRConfig)
class SwinIR(SRModel):
    """Light SwinIR; single output ``{"sr": [final], "rec": []}``."""

    cfg: SwinIRConfig
    size_multiple = 8

    def __init__(self, cfg: SwinIRConfig) -> None:
        super().__init__(cfg)
        self.size_multiple = cfg.window_size
        c, d = cfg.in_channels, cfg.embed_dim
        self.conv_first = conv3x3(c, d)
        self.groups = nn.ModuleList(
            RSTB(d, cfg.depth, cfg.window_size, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.n_groups)
        )
        self.norm = nn.LayerNorm(d)
        self.conv_after_body = conv3x3(d, d)
        self.upsampler = nn.Sequential(conv3x3(d, c * cfg.scale**2), nn.PixelShuffle(cfg.scale))

    def _forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        f0 = self.conv_first(x)
        f = f0
        for group in self.groups:
            f = group(f)
        f = self.norm(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        sr = self.upsampler(f0 + self.conv_after_body(f))
        if self.cfg.global_residual:
            sr = sr + upsample(x, self.scale, self.cfg.grid)
        return {"sr": [sr], "rec": []}

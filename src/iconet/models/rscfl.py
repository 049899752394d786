"""RSCFL: residual spatial-channel feature learning, with cost linear in the pixel count N.

The paper (Zou et al., 2025) states only that RSCFL is a residual block with a *spatial*
branch and a *channel* branch that model long-range relations at O(N) cost. Our reading
(documented in docs/architecture.md):

* spatial branch — large-kernel depth-wise attention (VAN's LKA): a 5×5 depth-wise conv
  followed by a 7×7 depth-wise conv with dilation 3 (a 23×23 receptive field per block), a
  1×1 conv, and a sigmoid gate on a 1×1 projection of the input. Cost O(N·C·k²) + O(N·C²).
* channel branch — transposed (channel) attention as in Restormer's MDTA: queries and keys
  are L2-normalised along space and a C×C attention map per head is built from *all* pixels,
  so every output pixel sees the whole image. Cost O(N·C²).
* both branches read the same layer-normalised input; their sum is projected and added back
  (residual); then a gated depth-wise feed-forward network with its own residual.

All tensors are ``(B, C, H, W)``; every module keeps the shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, H, W)`` tensor (any memory format)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Permuting to (B, H, W, C) is free for channels_last tensors and cheap otherwise.
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SpatialAttention(nn.Module):
    """Large-kernel depth-wise attention, gated by a sigmoid. O(N) in the pixel count.

    ``(B, C, H, W) → (B, C, H, W)``.
    """

    def __init__(self, channels: int, kernel: int = 5, dilated_kernel: int = 7, dilation: int = 3) -> None:
        super().__init__()
        self.value = nn.Conv2d(channels, channels, 1)
        self.local = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        pad = dilation * (dilated_kernel // 2)
        self.wide = nn.Conv2d(channels, channels, dilated_kernel, padding=pad, dilation=dilation, groups=channels)
        self.mix = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.mix(self.wide(self.local(x))))
        return self.value(x) * gate


class ChannelAttention(nn.Module):
    """Transposed multi-head attention over channels (a C×C map from all N pixels). O(N·C²).

    ``(B, C, H, W) → (B, C, H, W)``; ``channels`` must be divisible by ``heads``. Queries and
    keys are L2-normalised along space, so the map is a cosine similarity of channel images
    scaled by a learned temperature per head.
    """

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"width {channels} is not divisible by heads {heads}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        # Separate projections keep each of q, k, v contiguous (a chunk of one wide conv would
        # hand strided views to the following ops, which is several times slower on CPU).
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = c // self.heads

        def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, heads, N, d)
            return t.permute(0, 2, 3, 1).reshape(b, h * w, self.heads, d).transpose(1, 2)

        q, k, v = tokens(self.q(x)), tokens(self.k(x)), tokens(self.v(x))
        q = F.normalize(q, dim=2)
        k = F.normalize(k, dim=2)
        attn = torch.softmax((q.transpose(-2, -1) @ k) * self.temperature, dim=-1)  # (B, heads, d, d)
        out = v @ attn.transpose(-2, -1)  # (B, heads, N, d)
        return out.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)


class GatedFeedForward(nn.Module):
    """Gated depth-wise feed-forward: ``W_o(gelu(dw(W_a x)) * dw(W_b x))``. Shape-preserving."""

    def __init__(self, channels: int, expansion: float = 2.0) -> None:
        super().__init__()
        hidden = max(1, int(round(channels * expansion)))
        self.value = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden))
        self.gate = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden))
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(F.gelu(self.gate(x)) * self.value(x))


class RSCFLBlock(nn.Module):
    """One RSCFL block: ``x + proj(spatial(n(x)) + channel(n(x)))``, then ``+ ffn(n(.))``.

    Args:
        channels: feature width C.
        spatial: keep the spatial (large-kernel) branch.
        channel: keep the channel (transposed-attention) branch.
        heads: heads of the channel attention.
        ffn_expansion: hidden width of the feed-forward network, as a multiple of C.

    With both branches off the block is the feed-forward part alone (an ablation).
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial: bool = True,
        channel: bool = True,
        heads: int = 4,
        ffn_expansion: float = 2.0,
    ) -> None:
        super().__init__()
        self.spatial = SpatialAttention(channels) if spatial else None
        self.channel = ChannelAttention(channels, heads) if channel else None
        if spatial or channel:
            self.norm_mix = ChannelLayerNorm(channels)
            self.project = nn.Conv2d(channels, channels, 1)
        self.norm_ffn = ChannelLayerNorm(channels)
        self.ffn = GatedFeedForward(channels, ffn_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial is not None or self.channel is not None:
            y = self.norm_mix(x)
            mixed = None
            for branch in (self.spatial, self.channel):
                if branch is not None:
                    out = branch(y)
                    mixed = out if mixed is None else mixed + out
            x = x + self.project(mixed)
        return x + self.ffn(self.norm_ffn(x))


class RSCFLGroup(nn.Module):
    """``blocks`` RSCFL blocks and a 3×3 conv, with a residual around the group."""

    def __init__(self, channels: int, blocks: int, **block_kwargs: object) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(RSCFLBlock(channels, **block_kwargs) for _ in range(blocks)))  # type: ignore[arg-type]
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.blocks(x))

"""T2Net-style multi-task peer, written for iconet from the paper's description.

Feng et al., "Task Transformer Network for Joint MRI Reconstruction and Super-Resolution",
MICCAI 2021. The authors' code carries no licence; nothing here is taken from it.

Two branches start from the same LR input ``x (B, C, h, w)``::

    r0, s0 = head_rec(x), head_sr(x)                     # conv 3x3, C -> F
    r, s   = r0, s0
    for g in 1..G:
        r = rec_group[g](r)                              # n_blocks EDSR blocks + conv, + skip
        s = sr_group[g](s)
        s = task_transformer[g](s, r)                    # Rec -> SR transfer, see below
    rec = tail_rec(r0 + end_rec(r)) + x                  # (B, C, h, w): artifact-free estimate
    sr  = tail_sr(up(s0 + end_sr(s))) + upsample(x, s, grid)   # PixelShuffle per 2x stage

Task transformer module (as published: a texture-transformer over *all* patch pairs):

* ``Q = conv1x1(F_sr)``, ``K = conv1x1(F_rec)``, ``V = F_rec``; each unfolded into 3x3
  patches ``(B, 9F, N)``, ``N = h·w``; Q and K patches are L2-normalised;
* relevance ``R[i, j] = <q_i, k_j>`` over all ``N x N`` pairs — O(N²) time on purpose; it is
  computed in chunks of queries so at most ``attn_chunk`` scores exist at once (memory O(N));
* **hard attention** ``H_i = argmax_j R[i, j]``: the V patch at ``H_i`` is transferred to
  query ``i`` and the overlapping patches are folded back (averaged) into ``T (B, F, h, w)``;
* **soft attention** ``S_i = max_j R[i, j]`` weights the fusion
  ``F_sr + conv3x3([F_sr, T]) * S``.

Gradients reach Q and K through ``S`` only (argmax is piecewise constant), as in the original.

Output: ``{"sr": [(B, C, s·h, s·w)], "rec": [(B, C, h, w)]}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from iconet.models.base import ModelConfig, SRModel
from iconet.models.edsr import ResBlock, Upsampler, conv3x3
from iconet.models.registry import register
from iconet.ops.grid import upsample

__all__ = ["T2Net", "T2NetConfig", "TaskTransformer", "best_match", "task_attention"]

_PATCH = 3


@dataclass
class T2NetConfig(ModelConfig):
    """T2Net-style settings (defaults small enough to train on a CPU).

    Attributes:
        n_feats: feature channels F of both branches.
        n_groups: residual groups per branch; one task transformer follows each group.
        n_blocks: EDSR residual blocks per group.
        res_scale: residual scaling inside the blocks.
        attn_chunk: the most relevance scores (over the batch) held in memory at once; the
            search over all pairs is unchanged, only split into chunks of queries.
            2**22 scores = 16 MiB in fp32.
        global_residual: add ``upsample(x, scale, grid)`` to the SR output.
    """

    name: str = "t2net"
    n_feats: int = 64
    n_groups: int = 2
    n_blocks: int = 4
    res_scale: float = 1.0
    attn_chunk: int = 2**22
    global_residual: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("n_feats", "n_groups", "n_blocks", "attn_chunk")
        if not self.res_scale > 0:
            raise ValueError(f"res_scale must be > 0, got {self.res_scale!r}")


def _patches(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` → ``(B, 9C, h·w)``: the zero-padded 3x3 patch around every pixel."""
    return F.unfold(x, _PATCH, padding=_PATCH // 2)


@torch.no_grad()
def best_match(q: torch.Tensor, k: torch.Tensor, max_scores: int) -> torch.Tensor:
    """Index of the most relevant key for every query, searched over all pairs.

    Args:
        q: queries ``(B, D, Nq)``; k: keys ``(B, D, Nk)`` (normalise both for cosine relevance).
        max_scores: the most entries of the ``(B, chunk, Nk)`` relevance block computed at once.

    Returns:
        ``(B, Nq)`` int64 indices into ``Nk`` (ties: first maximum).
    """
    B, _, Nq = q.shape
    Nk = k.shape[-1]
    chunk = max(1, max_scores // (B * Nk))
    idx = torch.empty(B, Nq, dtype=torch.long, device=q.device)
    qt = q.transpose(1, 2)
    for start in range(0, Nq, chunk):
        relevance = torch.bmm(qt[:, start : start + chunk], k)  # (B, chunk, Nk)
        idx[:, start : start + chunk] = relevance.argmax(dim=-1)
    return idx


def task_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, max_scores: int = 2**22
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard and soft patch attention of T2Net's task transformer.

    Args:
        q: query features ``(B, D, h, w)``.
        k: key features ``(B, D, h, w)`` (same size as ``q``).
        v: value features ``(B, C, h, w)``, patches taken where ``k``'s are.
        max_scores: chunk budget of :func:`best_match`.

    Returns:
        ``(T, S)``: ``T (B, C, h, w)`` the value patches at the best-matching keys, folded back
        (overlaps averaged); ``S (B, 1, h, w)`` the cosine relevance of that match, in [-1, 1].
    """
    if q.shape[-2:] != k.shape[-2:] or k.shape[-2:] != v.shape[-2:]:
        raise ValueError(f"q, k, v must share (h, w), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, _, h, w = q.shape
    qp = F.normalize(_patches(q), dim=1)
    kp = F.normalize(_patches(k), dim=1)
    idx = best_match(qp, kp, max_scores).unsqueeze(1)  # (B, 1, N)
    soft = (qp * kp.gather(2, idx.expand(-1, kp.shape[1], -1))).sum(dim=1)  # = max relevance, differentiable
    vp = _patches(v)
    moved = vp.gather(2, idx.expand(-1, vp.shape[1], -1))
    size = (h, w)
    ones = torch.ones(1, _PATCH * _PATCH, h * w, dtype=v.dtype, device=v.device)
    overlap = F.fold(ones, size, _PATCH, padding=_PATCH // 2)  # patches covering each pixel
    t = F.fold(moved, size, _PATCH, padding=_PATCH // 2) / overlap
    return t, soft.view(B, 1, h, w)


class TaskTransformer(nn.Module):
    """Rec → SR transfer: ``F_sr + conv([F_sr, T]) * S`` for ``F_sr, F_rec (B, F, h, w)``."""

    def __init__(self, n_feats: int, attn_chunk: int) -> None:
        super().__init__()
        self.to_q = nn.Conv2d(n_feats, n_feats, 1)
        self.to_k = nn.Conv2d(n_feats, n_feats, 1)
        self.fuse = conv3x3(2 * n_feats, n_feats)
        self.attn_chunk = attn_chunk

    def forward(self, f_sr: torch.Tensor, f_rec: torch.Tensor) -> torch.Tensor:
        t, soft = task_attention(self.to_q(f_sr), self.to_k(f_rec), f_rec, self.attn_chunk)
        return f_sr + self.fuse(torch.cat([f_sr, t], dim=1)) * soft


class ResGroup(nn.Module):
    """``x + conv(blocks(x))`` with ``n_blocks`` EDSR blocks; ``(B, F, h, w)`` → same."""

    def __init__(self, n_feats: int, n_blocks: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_blocks)], conv3x3(n_feats, n_feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register("t2net", T2NetConfig)
class T2Net(SRModel):
    """T2Net-style joint reconstruction + SR; outputs ``{"sr": [final], "rec": [rec]}``."""

    cfg: T2NetConfig

    def __init__(self, cfg: T2NetConfig) -> None:
        super().__init__(cfg)
        c, f = cfg.in_channels, cfg.n_feats
        self.head_rec, self.head_sr = conv3x3(c, f), conv3x3(c, f)
        self.rec_groups = nn.ModuleList(ResGroup(f, cfg.n_blocks, cfg.res_scale) for _ in range(cfg.n_groups))
        self.sr_groups = nn.ModuleList(ResGroup(f, cfg.n_blocks, cfg.res_scale) for _ in range(cfg.n_groups))
        self.transformers = nn.ModuleList(TaskTransformer(f, cfg.attn_chunk) for _ in range(cfg.n_groups))
        self.end_rec, self.end_sr = conv3x3(f, f), conv3x3(f, f)
        self.tail_rec = conv3x3(f, c)
        self.up = Upsampler(f, cfg.stages)
        self.tail_sr = conv3x3(f, c)

    def _forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        r0, s0 = self.head_rec(x), self.head_sr(x)
        r, s = r0, s0
        for rec_group, sr_group, transformer in zip(self.rec_groups, self.sr_groups, self.transformers):
            r = rec_group(r)
            s = transformer(sr_group(s), r)
        rec = self.tail_rec(r0 + self.end_rec(r)) + x
        sr = self.tail_sr(self.up(s0 + self.end_sr(s)))
        if self.cfg.global_residual:
            sr = sr + upsample(x, self.scale, self.cfg.grid)
        return {"sr": [sr], "rec": [rec]}

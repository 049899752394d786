"""SR-Rec fusion: the SR and reconstruction branches exchange features, both ways.

The paper states the fusion is bidirectional and adaptive (learned, input-dependent weights).
Our reading (config ``fusion``):

* ``"gated"`` — ``g = sigmoid(W_g [F_sr, F_rec])`` per pixel and channel;
  ``F_sr += g * W_a F_rec`` and ``F_rec += (1 - g) * W_b F_sr``;
* ``"add"`` — the same exchange without the gate (fixed, input-independent mixing):
  ``F_sr += W_a F_rec``, ``F_rec += W_b F_sr``;
* ``"none"`` — no exchange (built as ``None`` by the caller; no parameters).

All convolutions are 1×1; inputs and outputs are ``(B, C, H, W)`` pairs of the same shape.
"""

from __future__ import annotations

import torch
from torch import nn

FUSIONS = ("gated", "add", "none")


class SRRecFusion(nn.Module):
    """Bidirectional fusion of SR and reconstruction features; ``gated`` makes it adaptive."""

    def __init__(self, channels: int, gated: bool = True) -> None:
        super().__init__()
        self.rec_to_sr = nn.Conv2d(channels, channels, 1)
        self.sr_to_rec = nn.Conv2d(channels, channels, 1)
        self.gate = nn.Conv2d(2 * channels, channels, 1) if gated else None

    def forward(self, f_sr: torch.Tensor, f_rec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        to_sr, to_rec = self.rec_to_sr(f_rec), self.sr_to_rec(f_sr)
        if self.gate is None:
            return f_sr + to_sr, f_rec + to_rec
        logits = self.gate(torch.cat([f_sr, f_rec], dim=1))
        # 1 - sigmoid(z) = sigmoid(-z); addcmul fuses the product and the residual sum.
        return torch.addcmul(f_sr, torch.sigmoid(logits), to_sr), torch.addcmul(f_rec, torch.sigmoid(-logits), to_rec)

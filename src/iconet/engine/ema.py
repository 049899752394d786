"""Exponential moving average of a model's weights, kept as a plain state dict.

The EMA is a ``state_dict`` with the model's keys (float tensors averaged in float32-or-better,
integer buffers copied), so it loads straight into a fresh model for validation or export.
The decay ramps up with the number of updates, ``min(decay, (1 + n) / (10 + n))``, so early
weights are not frozen in; ``n`` is the optimiser step, which the checkpoint already holds.
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copy of ``model``'s state dict.

    Args:
        model: the (unwrapped) model.
        decay: target decay in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items()
        }

    def decay_at(self, updates: int) -> float:
        """Effective decay for the ``updates``-th update (0-based)."""
        return min(self.decay, (1.0 + updates) / (10.0 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int) -> None:
        """Blend the current weights in: ``e = d·e + (1 - d)·w`` with ``d = decay_at(updates)``."""
        d = self.decay_at(updates)
        for k, v in model.state_dict().items():
            e = self.shadow[k]
            if e.is_floating_point():
                e.mul_(d).add_(v.detach().to(e.dtype), alpha=1.0 - d)
            else:
                e.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise KeyError(f"EMA state keys differ from the model's: {sorted(missing)[:5]}")
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (e.g. a validation copy)."""
        model.load_state_dict(self.shadow)

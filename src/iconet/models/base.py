"""What every super-resolution model in iconet shares: its config base and its contract.

Contract: ``model(x)`` takes ``x`` of shape ``(B, C, h, w)`` (float, any ``h, w``) and returns a
dict of named outputs, never a tuple::

    {"sr":  [sr_1, ..., sr_S],    # SR estimate after each 2x stage, sr_k: (B, C, 2^k h, 2^k w)
     "rec": [rec_1, ..., rec_S]}  # reconstruction (artifact-free prior) at the input of stage k,
                                  # rec_k: (B, C, 2^(k-1) h, 2^(k-1) w); [] for single-task peers

``out["sr"][-1]`` is the final ``scale``-times upscaled image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from iconet.ops.grid import GRIDS
from iconet.ops.scale import num_stages

SCALES = (2, 4, 8)


@dataclass
class ModelConfig:
    """Fields shared by all models.

    Attributes:
        name: registry name of the model (e.g. ``"iconet"``, ``"edsr"``).
        scale: upscaling factor, one of 2, 4, 8.
        in_channels: image channels (1 for one contrast, more for multi-contrast).
        grid: sampling grid of the degradation the model is used with: ``"kspace"`` (k-space
            truncation, LR pixel m on HR pixel s·m) or ``"centre"`` (bicubic/area).
    """

    name: str = ""
    scale: int = 2
    in_channels: int = 1
    grid: str = "kspace"

    #: keys whose default changed after models were first saved, with the value they had before.
    #: Saved configs (exports, checkpoints) spell out every key they knew, so a saved config
    #: that lacks one of these was saved under the earlier default: it is read with that value
    #: (:func:`iconet.models.registry.saved_model_config`), never with today's default.
    SAVED_BEFORE: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels!r}")
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS}, got {self.grid!r}")

    def require_positive(self, *fields: str) -> None:
        """Raise ``ValueError`` naming the first of ``fields`` that is not >= 1."""
        for key in fields:
            value = getattr(self, key)
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value!r}")

    @property
    def stages(self) -> int:
        """Number of 2x stages: log2(scale) (:func:`iconet.ops.scale.num_stages`)."""
        return num_stages(self.scale)


class SRModel(nn.Module):
    """Base class: input checks and inside-the-model padding. Subclasses implement ``_forward``."""

    #: spatial sizes of the input must be multiples of this; others are padded and cropped back.
    size_multiple: int = 1

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.scale = cfg.scale
        self.in_channels = cfg.in_channels

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a float ``(B, in_channels, h, w)`` tensor."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects a 4-D (B, C, h, w) tensor, got {shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} was configured for {self.in_channels} channel(s), "
                f"got an input with {x.shape[1]} (shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects a floating-point tensor, got {x.dtype}")
        if x.shape[-1] < 1 or x.shape[-2] < 1:
            raise ValueError(f"{type(self).__name__} got an empty image of shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        self.check_input(x)
        h, w = x.shape[-2:]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            # Pad at the bottom/right only: pixel m keeps its place on either sampling grid.
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        out = self._forward(x)
        if ph or pw:
            wp = w + pw
            out = {key: [_crop(t, h, w, t.shape[-1] // wp) for t in ts] for key, ts in out.items()}
        return out

    def _forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        raise NotImplementedError


def _crop(t: torch.Tensor, h: int, w: int, factor: int) -> torch.Tensor:
    """Crop an output at ``factor`` times the input size back to the unpadded footprint."""
    return t[..., : h * factor, : w * factor]

"""A trained model as a plain tensor-in / tensor-out ``nn.Module``.

iconet models return named lists (``{"sr": [x2, x4], "rec": [...]}``, every stage's output) so
training can supervise each stage. Tools of the ecosystem want one tensor back:
``monai.inferers.sliding_window_inference``, ``torch.jit``/``torch.export``, ONNX, a MONAI
``Inferer`` or a bundle. :class:`SRPredictor` wraps a model into ``(B, C, h, w) -> (B, C, s·h,
s·w)``: the final SR output, nothing else::

    import iconet
    from monai.inferers import sliding_window_inference

    predictor = iconet.load_predictor("iconet-t1-x2", reference=lr_volume)   # whole-volume intensities
    sr = sliding_window_inference(lr_slice[None, None], roi_size=(64, 64), sw_batch_size=4,
                                  predictor=predictor, overlap=0.25, mode="gaussian")

Intensities. A model works in the normalised units it was trained in (MRI: 0 at 0, 1 at the
volume's 99.5th percentile; ``ModelInfo.normalization``). Normalising each tile separately would
give each tile another scale, so the mapping is fixed once for the whole image: give
``reference=`` (the whole LR image, any array or tensor) to :func:`load_predictor`, or ``low`` and
``high`` to :class:`SRPredictor`, and the predictor maps ``low -> 0``, ``high -> 1`` before the
model and back after (unclipped, as :func:`iconet.super_resolve` does). Without them the input
must already be in the model's units.

What :func:`iconet.super_resolve` adds and this plain form does not: slicing a volume along
its coarse axis, the geometry of the output, circular padding of slices whose border cuts
through the object (k-space grid, ``InferenceOptions.pad``), and the circular margin of
tiles. Tiles of MONAI's sliding window are padded by MONAI (``padding_mode``) instead, so a
model with a global (Fourier) branch sees a slightly different border per tile;
``tests/test_api_types.py`` states how close the tiled and the whole-slice outputs are.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from iconet.models.base import SRModel


class SRPredictor(nn.Module):
    """``(B, C, h, w) -> (B, C, s·h, s·w)``: the final SR output of ``model``.

    Args:
        model: an iconet model (its ``forward`` returns ``{"sr": [...], ...}``).
        low, high: an intensity window mapped to 0 and 1 before the model and back after
            (the model's normalisation, fixed for the whole image; see the module docstring).
            Both or neither.

    Attributes:
        model: the wrapped model; ``scale`` and ``in_channels`` are its.
        info: the :class:`~iconet.hub.ModelInfo` when made by :func:`load_predictor`, else ``None``.
    """

    def __init__(self, model: SRModel, *, low: float | None = None, high: float | None = None) -> None:
        super().__init__()
        if (low is None) != (high is None):
            raise ValueError("give both low and high (the intensity window mapped to 0..1), or neither")
        if low is not None and not float(high) > float(low):  # type: ignore[arg-type]
            raise ValueError(f"high ({high}) must be greater than low ({low})")
        self.model = model
        self.low = None if low is None else float(low)
        self.high = None if high is None else float(high)
        self.info: Any = None

    @property
    def scale(self) -> int:
        return int(self.model.scale)

    @property
    def in_channels(self) -> int:
        return int(self.model.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected (B, C, h, w), got a tensor of shape {tuple(x.shape)}")
        if self.low is None:
            return self.model(x)["sr"][-1]
        span = self.high - self.low  # type: ignore[operator]
        y = self.model((x - self.low) / span)["sr"][-1]
        return y * span + self.low

    def extra_repr(self) -> str:
        window = f", low={self.low:g}, high={self.high:g}" if self.low is not None else ""
        return f"scale={self.scale}{window}"


def load_predictor(source: str | os.PathLike[str], *, reference: Any = None,
                   device: str | torch.device = "cpu") -> SRPredictor:
    """A shipped name or an exported model folder as an :class:`SRPredictor` in ``eval()`` mode.

    Args:
        source: as :func:`iconet.hub.load_model` (``"iconet-t1-x2"``, ``"models/my_x2"``).
        reference: the whole image the tiles come from (array or tensor, in its own units): the
            model's normalisation (``info.normalization``, e.g. its 99.5th percentile) is measured
            on it once and the predictor maps intensities with it. ``None``: inputs must already
            be in the model's normalised units.
        device: where the weights go.

    Returns:
        The predictor; its ``info`` is the model's :class:`~iconet.hub.ModelInfo`.
    """
    from iconet.config import from_dict
    from iconet.data.normalize import NormalizeConfig, normalize
    from iconet.hub import load_model

    model, info = load_model(source, device=device)
    low = high = None
    if reference is not None:
        if isinstance(reference, torch.Tensor):
            reference = reference.detach().cpu().float().numpy()
        cfg = from_dict(NormalizeConfig, info.normalization or {}, "normalization")
        _, norm = normalize(np.asarray(reference, dtype=np.float32), cfg)
        low, high = norm.low, norm.high
    predictor = SRPredictor(model, low=low, high=high).eval()
    predictor.info = info
    return predictor


__all__ = ["SRPredictor", "load_predictor"]

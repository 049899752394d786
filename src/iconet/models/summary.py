"""Size and cost of a model: parameters, FLOPs (``torch.utils.flop_counter``), output shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from iconet.models.base import SRModel


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: tuple[int, int, int, int]) -> int:
    """Floating-point operations of one forward pass on a zero input of ``input_shape``.

    Counted by ``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs; matmuls and
    convolutions only: element-wise work is not counted).
    """
    param = next(model.parameters(), None)
    x = torch.zeros(input_shape, device=param.device if param is not None else "cpu")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


@dataclass
class ModelSummary:
    """What ``iconet model`` prints."""

    name: str
    scale: int
    in_channels: int
    parameters: int
    flops: int
    input_shape: tuple[int, int, int, int]
    outputs: dict[str, list[tuple[int, ...]]]

    def cost_lines(self) -> list[str]:
        """The parameter, FLOP and output-shape lines (13-character labels)."""
        h, w = self.input_shape[-2:]
        lines = [
            f"parameters   {self.parameters:,}",
            f"FLOPs        {self.flops / 1e9:,.2f} G on a {h}x{w} LR input "
            f"({self.flops / (h * w) / 1e3:,.1f} kFLOP per LR pixel; convolutions and matmuls)",
        ]
        for key, shapes in self.outputs.items():
            shown = ", ".join("x".join(str(s) for s in shape) for shape in shapes) or "(none)"
            lines.append(f"outputs.{key:<5s} {shown}")
        return lines

    def format(self) -> str:
        head = f"model        {self.name}  (scale x{self.scale}, {self.in_channels} channel(s))"
        return "\n".join([head, *self.cost_lines()])


def summarize(model: SRModel, size: tuple[int, int] = (128, 128)) -> ModelSummary:
    """Parameters, FLOPs and output shapes of ``model`` for a single-image LR input of ``size``."""
    shape = (1, model.in_channels, *size)
    param = next(model.parameters(), None)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():  # one pass gives the FLOPs (as count_flops) and the shapes
        out = model(torch.zeros(shape, device=param.device if param is not None else "cpu"))
    return ModelSummary(
        name=model.cfg.name,
        scale=model.scale,
        in_channels=model.in_channels,
        parameters=count_parameters(model),
        flops=int(counter.get_total_flops()),
        input_shape=shape,
        outputs={k: [tuple(t.shape) for t in v] for k, v in out.items()},
    )

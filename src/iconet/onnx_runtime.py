"""Run an exported ONNX graph (``model.onnx``, :mod:`iconet.onnx_export`) with ONNX Runtime.

:class:`OnnxSRModel` wraps an ``onnxruntime.InferenceSession`` as an
:class:`~iconet.models.base.SRModel`, so :func:`iconet.inference.super_resolve_volume` runs it
through the same volume, geometry, normalisation, tiling and border-padding code as a PyTorch
model: ``model(x)`` takes a float ``(B, C, h, w)`` tensor and returns ``{"sr": [sr]}`` with
``sr (B, C, s·h, s·w)`` (the graph holds the SR path only: no ``"rec"``). The input checks and
the padding to ``size_multiple`` are :class:`SRModel`'s own. The graph runs in fp32.

Providers: ``CUDAExecutionProvider`` when onnxruntime has it and ``device`` is ``"auto"`` or
``"cuda"``, else ``CPUExecutionProvider``. Tensors go in and come out on the CPU.

Refused (``ValueError``, one line): a graph whose ``iconet_format`` metadata is not this
package's model format, and a graph whose config hash differs from its folder's
``config.yaml`` (a graph exported from another model). Without onnxruntime installed,
:class:`OnnxRuntimeMissing` names the extra to install.

Memory: the tile chooser of :mod:`iconet.inference` measures a PyTorch model's forward pass
(:func:`iconet.memory.estimate_memory`); ONNX Runtime's allocations are outside PyTorch, so
:func:`load_onnx_model` records the estimate of the same architecture in PyTorch scaled by
:data:`ORT_MEMORY_FACTOR`: ONNX Runtime's peak resident memory was 1.8-4.8x PyTorch's for the
same model and batch at 512² HR (benchmarks/results/inference_speed_onnx_cpu.md, peak-memory
column; its arena and the Fourier branch's DFT matrices). So with the default budget, ONNX
Runtime tiles sooner than PyTorch; pass the same ``--tile`` to both for identical outputs.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from iconet.models.base import SRModel
from iconet.onnx_export import (
    INPUT_NAME,
    META_CONFIG_HASH,
    META_FORMAT,
    ONNX_FILE,
    OUTPUT_NAME,
    config_hash,
)

#: ONNX Runtime's peak memory over PyTorch's for the same model and input: the largest ratio
#: measured (4.8x, see the module docstring), rounded up
ORT_MEMORY_FACTOR = 5.0
#: ONNX Runtime's CPU memory arena. On: with glibc keeping freed memory (``iconet infer`` calls
#: iconet.runtime.keep_freed_memory) turning it off raised the peak by 1.5-1.7x at about the same
#: speed (benchmarks/results/onnx_arena_cpu.md)
CPU_ARENA = True
#: what to install for ``--runtime onnx``
EXTRA_HINT = "pip install iconet[onnx]"


class OnnxRuntimeMissing(ImportError):
    """onnxruntime is not installed (the message names the extra)."""


def require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise OnnxRuntimeMissing(f"the ONNX runtime needs onnxruntime, which is not installed: {EXTRA_HINT}") from None
    return onnxruntime


def providers(device: str = "auto") -> list[str]:
    """The execution providers for ``device`` (``"auto"``, ``"cpu"`` or ``"cuda"``)."""
    ort = require_onnxruntime()
    available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; expected auto, cpu or cuda")
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ValueError("device cuda was asked for, but onnxruntime has no CUDA provider here "
                         "(install onnxruntime-gpu, or use cpu or auto)")
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxSRModel(SRModel):
    """An ONNX Runtime session of an exported SR graph, usable wherever an SRModel is.

    Args:
        path: the ``model.onnx`` file.
        cfg: the model's config (from its folder's ``config.yaml``): scale, grid, channels.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`providers`).
        threads: intra-op threads of the session (``None``: onnxruntime's default, one per core).
        arena: ONNX Runtime's CPU memory arena (``SessionOptions.enable_cpu_mem_arena``);
            default :data:`CPU_ARENA`.
    """

    def __init__(self, path: str | os.PathLike[str], cfg: Any, *, device: str = "auto",
                 threads: int | None = None, arena: bool | None = None) -> None:
        super().__init__(cfg)
        ort = require_onnxruntime()
        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        opts.enable_cpu_mem_arena = CPU_ARENA if arena is None else bool(arena)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers(device))
        except Exception as err:  # onnxruntime raises its own error types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{self.path}: not a loadable ONNX graph ({first})") from None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.size_multiple = max(int(self.metadata.get("iconet_size_multiple", 1)), 1)
        self.providers = self.session.get_providers()

    def _forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: arr})[0]
        return {"sr": [torch.from_numpy(out).to(x.device)]}


def check_metadata(path: Path, metadata: dict[str, str], model_cfg: dict[str, Any]) -> None:
    """Refuse a graph of another model format, or one exported from another config."""
    from iconet.hub import MODEL_FORMAT

    fmt = metadata.get(META_FORMAT)
    if fmt != MODEL_FORMAT:
        raise ValueError(f"{path}: model format {fmt!r} is not {MODEL_FORMAT!r} "
                         f"(re-export it with this iconet: iconet export MODEL --onnx)")
    if metadata.get(META_CONFIG_HASH) != config_hash(model_cfg):
        raise ValueError(f"{path}: exported from another model config than {path.parent / 'config.yaml'} "
                         f"(re-export it: iconet export {path.parent} --onnx --overwrite)")


def onnx_path(source: str | os.PathLike[str]) -> Path:
    """``model.onnx`` of a model folder or shipped name (or the ``.onnx`` file itself)."""
    from iconet.hub import _resolve

    if str(source).endswith(".onnx"):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX file not found")
        return path
    folder = _resolve(source)
    path = folder / ONNX_FILE
    if not path.is_file():
        hint = f"iconet export {source} --onnx" + (" --out DIR" if not Path(str(source)).exists() else "")
        raise FileNotFoundError(f"{folder}: no {ONNX_FILE} (write it with: {hint})")
    return path


def load_onnx_model(source: str | os.PathLike[str], *, device: str = "auto",
                    threads: int | None = None) -> tuple[OnnxSRModel, Any]:
    """``(model, info)`` like :func:`iconet.hub.load_model`, the model an :class:`OnnxSRModel`
    of the folder's ``model.onnx`` (checked against the folder's ``config.yaml``)."""
    from iconet.config import to_dict
    from iconet.hub import read_info
    from iconet.models import make_config

    require_onnxruntime()  # the missing extra is named before any file is read
    path = onnx_path(source)
    info = read_info(path.parent)
    cfg = make_config(info.model)
    model = OnnxSRModel(path, cfg, device=device, threads=threads)
    check_metadata(path, model.metadata, to_dict(cfg))
    _record_memory_estimate(model, cfg)
    return model, info


def _record_memory_estimate(model: OnnxSRModel, cfg: Any) -> None:
    """Give :func:`iconet.memory.estimate_memory` an estimate for ``model`` (see module docstring)."""
    from iconet import memory
    from iconet.models import build_model

    reference = build_model(cfg).eval()  # activations do not depend on the weights
    estimates = {}
    for precision in ("fp32", "bf16", "fp16"):
        base = memory.estimate_memory(reference, precision="fp32")
        estimates[("cpu", precision)] = replace(base, bytes_per_pixel=base.bytes_per_pixel * ORT_MEMORY_FACTOR,
                                                fixed_bytes=base.fixed_bytes * ORT_MEMORY_FACTOR,
                                                method="pytorch-estimate-x-ort-factor", precision=precision)
    memory._ESTIMATES[model] = estimates


def describe(model: OnnxSRModel) -> str:
    """One line: the graph and the provider it runs on."""
    return f"{model.path} on onnxruntime ({', '.join(model.providers)})"


__all__ = ["EXTRA_HINT", "ORT_MEMORY_FACTOR", "OnnxRuntimeMissing", "OnnxSRModel", "check_metadata",
           "describe", "load_onnx_model", "onnx_path", "providers", "require_onnxruntime"]

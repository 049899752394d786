"""Export the SR path of an iconet model as an ONNX graph (``model.onnx``) for ONNX Runtime.

The graph maps normalised LR slices ``lr (B, C, h, w)`` float32 to the final SR estimate
``sr (B, C, s·h, s·w)`` (the last entry of the model's ``"sr"`` list), with the batch and
both slice sides dynamic. It is the model's own ``_forward``: the padding to
``size_multiple`` that :class:`~iconet.models.base.SRModel` adds around it is done by the
runtime wrapper (:class:`iconet.onnx_runtime.OnnxSRModel`), so ``h`` and ``w`` must be
multiples of it in the graph. It is exported with ``torch.onnx.export(..., dynamo=True)``
(``torch.export`` + onnxscript's ATen library, opset :data:`OPSET`) and stamped in the ONNX
``metadata_props`` with the model format (``iconet-model/1``), the SHA-256 of the resolved
model config (:func:`config_hash`), the scale, grid, size multiple and the training
normalisation, so the runtime can refuse a graph that does not belong to its folder.

The Fourier branch (:class:`~iconet.models.rscfl.SpectralMixing`: a real FFT along the last
axis, a 1×1 conv, the inverse real FFT) exports with ONNX's ``DFT`` op as it is, but ONNX
Runtime 1.32 fails on the inverse one-sided ``DFT`` that the exporter writes for ``irfft``
("Shape mismatch attempting to re-use buffer"). The export therefore swaps each such module
for an equal export form (``spectral``):

* ``"matmul"`` (default) — :class:`MatmulSpectralMixing`: the real DFT pair as matrix products
  along that axis (matrices built in the graph from the width, so any width works);
* ``"dft"`` — :class:`DftSpectralMixing`: ONNX ``DFT`` ops, the inverse as a full complex
  inverse DFT of the Hermitian-extended spectrum (which ONNX Runtime runs).

Both equal the FFT form within 1e-5 (tests/test_onnx.py; the whole graph is held to 1e-4).
In ONNX Runtime 1.32 on the 2-core CPU the ``"dft"`` form ran the shipped x2 and x4 models
1.1-2.2x slower than the ``"matmul"`` form at 256² and 512² HR, and used more memory
(benchmarks/results/onnx_spectral_forms_cpu.md, one run side by side).

Nothing is written unless the whole export succeeds: the graph is first built in memory,
then (with onnxruntime installed) run once on a probe input and compared with PyTorch
(:data:`TOLERANCE`), then written to a temporary file and renamed into place. A model with an
op that ONNX (or the exporter) cannot express is refused with :class:`OnnxExportError`, one
line naming the op.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from iconet.data.writing import atomic_output, replacing_folder
from iconet.models.base import SRModel
from iconet.models.rscfl import SpectralMixing
from iconet.ops.fft import rdft_matrices

#: file name of the graph inside an exported model folder
ONNX_FILE = "model.onnx"
#: ONNX opset of the exported graph (GridSample with cubic mode needs 16+; 20 is the exporter's own)
OPSET = 20
#: largest absolute difference allowed between ONNX Runtime's and PyTorch's fp32 SR on the
#: export's probe input (normalised intensities, about 0..1)
TOLERANCE = 1e-4
#: metadata_props keys
META_FORMAT = "iconet_format"
META_CONFIG_HASH = "iconet_config_sha256"
META_NAME = "iconet_name"
META_SCALE = "iconet_scale"
META_GRID = "iconet_grid"
META_SIZE_MULTIPLE = "iconet_size_multiple"
META_NORMALIZATION = "iconet_normalization"
#: graph input and output names
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
#: smallest LR side the graph is exported for (the k-space bicubic upsampler pads circularly by 2)
MIN_SIDE = 2
#: LR side of the probe used to trace and to check the graph (not a multiple of 2 on purpose)
PROBE_SIDE = 19


class OnnxExportError(ValueError):
    """The model cannot be written as an ONNX graph (the message is one line)."""


def config_hash(model_cfg: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a resolved model config: canonical JSON, keys sorted."""
    text = json.dumps(dict(model_cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_config_dict(model: SRModel) -> dict[str, Any]:
    """The resolved config of ``model`` as plain data (what ``config.yaml``'s ``model`` holds)."""
    from iconet.config import to_dict

    return to_dict(model.cfg)


# --------------------------------------------------------------------------- export forms


class _SpectralMixingForm(nn.Module):
    """What the export forms of :class:`~iconet.models.rscfl.SpectralMixing` share: the source
    module's ``mix`` and ``gate`` convolutions (the same parameters, not copies) and the
    gating. A form gives :meth:`filtered`, its real FFT pair around :meth:`mix_spectrum`.
    ``(B, C, H, W) → (B, C, H, W)``."""

    def __init__(self, source: SpectralMixing) -> None:
        super().__init__()
        self.mix = source.mix
        self.gate = source.gate

    def mix_spectrum(self, re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 1×1 ``mix`` and ReLU of the (real, imaginary) parts ``(B, C, H, K)`` of the
        spectrum, split back into (real, imaginary)."""
        z = F.relu(self.mix(torch.cat([re, im], dim=1)))
        c = re.shape[1]
        return z[:, :c], z[:, c:]

    def filtered(self, x: torch.Tensor) -> torch.Tensor:
        """``irfft(mix_spectrum(rfft(x)))`` along the last axis of float32 ``x``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.filtered(x.float()).to(x.dtype)
        return y if self.gate is None else y * torch.sigmoid(self.gate(x))


class MatmulSpectralMixing(_SpectralMixingForm):
    """:class:`~iconet.models.rscfl.SpectralMixing` with its real FFT pair as matrix products.

    Along the last axis, with the matrices of :func:`iconet.ops.fft.rdft_matrices` (built from
    the traced width, so the graph keeps it dynamic).
    Shares the module's ``mix`` and ``gate`` convolutions. ``(B, C, H, W) → (B, C, H, W)``.
    """

    def filtered(self, x: torch.Tensor) -> torch.Tensor:
        cos, sin, weight = rdft_matrices(x.shape[-1], x.device)  # (w, K), (w, K), a_k
        re, im = self.mix_spectrum(x @ cos, -(x @ sin))
        return re @ (cos * weight).transpose(0, 1) - im @ (sin * weight).transpose(0, 1)


class DftSpectralMixing(_SpectralMixingForm):
    """:class:`~iconet.models.rscfl.SpectralMixing` for ONNX's ``DFT`` op: ``rfft`` as it is (a
    one-sided forward ``DFT``), ``irfft(z)`` as ``Re(ifft(ẑ))`` where ``ẑ`` is ``z`` extended to
    all ``w`` frequencies by Hermitian symmetry (``ẑ_{w-k} = conj(z_k)``); equal to ``irfft``
    (which ignores the imaginary parts of the DC and Nyquist terms: they only add to the
    imaginary part here). Shares ``mix`` and ``gate``. ``(B, C, H, W) → (B, C, H, W)``."""

    def filtered(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        k = torch.fft.rfft(x, dim=-1, norm="ortho")
        re, im = self.mix_spectrum(k.real, k.imag)
        tail = slice(1, w - w // 2)  # the frequencies 1 .. ceil(w/2)-1, mirrored
        full = torch.complex(torch.cat([re, re[..., tail].flip(-1)], -1), torch.cat([im, -im[..., tail].flip(-1)], -1))
        return torch.fft.ifft(full, dim=-1, norm="ortho").real


#: export forms of the Fourier branch (see the module docstring)
SPECTRAL_FORMS: dict[str, type[nn.Module]] = {"matmul": MatmulSpectralMixing, "dft": DftSpectralMixing}
META_SPECTRAL = "iconet_spectral_form"


class SRPath(nn.Module):
    """``model._forward(x)["sr"][-1]``: the graph that is exported (no input checks, no padding)."""

    def __init__(self, model: SRModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model._forward(x)["sr"][-1]


def exportable(model: SRModel, spectral: str = "matmul") -> SRPath:
    """A copy of ``model``'s SR path in export form (``eval()``, CPU, fp32): every
    :class:`SpectralMixing` replaced by its ``spectral`` form (:data:`SPECTRAL_FORMS`).
    ``model`` is not changed."""
    if spectral not in SPECTRAL_FORMS:
        raise ValueError(f"spectral must be one of {sorted(SPECTRAL_FORMS)}, got {spectral!r}")
    net = copy.deepcopy(model).to("cpu", torch.float32, memory_format=torch.contiguous_format).eval()
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SpectralMixing):
                setattr(parent, name, SPECTRAL_FORMS[spectral](child))
    return SRPath(net).eval()


# --------------------------------------------------------------------------- graph


_NO_FUNCTION = re.compile(r"No ONNX function found for <OpOverload\(op='([^']+)'")
_NODE_TARGET = re.compile(r"target=(torch\.ops\.[\w.]+)")


def _unsupported_op(err: BaseException) -> str | None:
    """The op named by an exporter error chain (``aten.foo``), if any."""
    seen: set[int] = set()
    e: BaseException | None = err
    texts = []
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        texts.append(str(e))
        e = e.__cause__ or e.__context__
    for text in texts:
        m = _NO_FUNCTION.search(text)
        if m:
            return m.group(1)
    for text in texts:
        m = _NODE_TARGET.search(text)
        if m:
            return m.group(1).removeprefix("torch.ops.")
    return None


def _first_line(err: BaseException) -> str:
    for line in str(err).splitlines():
        line = line.strip()
        if line and not line.startswith(("[", "Failed to", "-")):
            return line
    return type(err).__name__


def build_graph(model: SRModel, *, opset: int = OPSET, spectral: str = "matmul") -> Any:
    """The ``onnx.ModelProto`` of ``model``'s SR path (dynamic batch, height and width), with
    the format and config metadata set; ``spectral``: the Fourier branch's export form. Raises :class:`OnnxExportError` (one line naming the
    op) when the exporter cannot translate the model."""
    import warnings

    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise OnnxExportError(f"ONNX export needs the onnx extra ({err.name} is missing): pip install iconet[onnx]") from None
    path = exportable(model, spectral)
    m = max(int(getattr(model, "size_multiple", 1)), 1)
    side = math.ceil(PROBE_SIDE / m) * m
    x = torch.rand(2, model.in_channels, side, side + m, generator=torch.Generator().manual_seed(0))
    lo = math.ceil(MIN_SIDE / m)
    if m == 1:
        dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("h", min=MIN_SIDE),
                3: torch.export.Dim("w", min=MIN_SIDE)}
    else:
        dims = {0: torch.export.Dim("batch", min=1), 2: m * torch.export.Dim("h_blocks", min=lo),
                3: m * torch.export.Dim("w_blocks", min=lo)}
    import contextlib
    import io

    log = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                path, (x,), dynamo=True, opset_version=opset, dynamic_shapes={"x": dims},
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False, optimize=True,
            )
    except Exception as err:  # the exporter raises many types; name the op where it says one
        op = _unsupported_op(err)
        what = model.cfg.name
        if op:
            raise OnnxExportError(f"{what}: cannot export to ONNX: op {op} has no ONNX translation") from None
        raise OnnxExportError(f"{what}: cannot export to ONNX: {_first_line(err)}") from None
    proto = program.model_proto
    _stamp(proto, model)
    if any(isinstance(mod, SpectralMixing) for mod in model.modules()):
        proto.metadata_props.add(key=META_SPECTRAL, value=spectral)
    return proto


def _stamp(proto: Any, model: SRModel) -> None:
    """Write the iconet metadata into ``proto.metadata_props`` (replacing earlier ones)."""
    from iconet.hub import MODEL_FORMAT

    meta = {
        META_FORMAT: MODEL_FORMAT,
        META_CONFIG_HASH: config_hash(model_config_dict(model)),
        META_NAME: str(model.cfg.name),
        META_SCALE: str(model.scale),
        META_GRID: str(model.cfg.grid),
        META_SIZE_MULTIPLE: str(max(int(getattr(model, "size_multiple", 1)), 1)),
    }
    keep = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    for p in keep:
        proto.metadata_props.add(key=p.key, value=p.value)
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "iconet"


def set_normalization(proto: Any, normalization: Mapping[str, Any] | None) -> None:
    """Record the training normalisation (``config.yaml``'s ``data.normalization``) in the graph."""
    if normalization is None:
        return
    for p in proto.metadata_props:
        if p.key == META_NORMALIZATION:
            p.value = json.dumps(dict(normalization), sort_keys=True)
            return
    proto.metadata_props.add(key=META_NORMALIZATION, value=json.dumps(dict(normalization), sort_keys=True))


def check_graph(proto: Any, model: SRModel, *, tolerance: float = TOLERANCE) -> float | None:
    """Run ``proto`` with ONNX Runtime (CPU) on a probe batch and compare with ``model`` (fp32).

    Returns the largest absolute difference, or ``None`` when onnxruntime is not installed.
    Raises :class:`OnnxExportError` when ONNX Runtime cannot run the graph (the op named) or
    the difference exceeds ``tolerance``.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    m = max(int(getattr(model, "size_multiple", 1)), 1)
    h, w = math.ceil(17 / m) * m, math.ceil(23 / m) * m  # not the traced sizes: the shapes are dynamic
    x = torch.rand(3, model.in_channels, h, w, generator=torch.Generator().manual_seed(1))
    reference = copy.deepcopy(model).to("cpu", torch.float32).eval()  # the FFT form, not the export form
    with torch.inference_mode():
        ref = reference._forward(x)["sr"][-1].float().numpy()
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        out = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    except Exception as err:  # onnxruntime's errors are plain RuntimeErrors with the node in the text
        text = str(err)
        node = re.search(r"running (\w+) node", text)
        what = f"op {node.group(1)}" if node else _first_line(err)
        raise OnnxExportError(f"{model.cfg.name}: ONNX Runtime cannot run the exported graph ({what})") from None
    if out.shape != ref.shape:
        raise OnnxExportError(f"{model.cfg.name}: the ONNX graph gives shape {out.shape}, PyTorch {ref.shape}")
    diff = float(abs(out - ref).max())
    if not diff <= tolerance:
        raise OnnxExportError(f"{model.cfg.name}: ONNX Runtime's output differs from PyTorch's by {diff:.3g} "
                              f"(more than {tolerance:g})")
    return diff


# --------------------------------------------------------------------------- files


def write_onnx(folder: str | os.PathLike[str], *, overwrite: bool = False, opset: int = OPSET) -> Path:
    """Write ``model.onnx`` into an exported model folder (which must hold the weights).

    The graph is built, checked (:func:`check_graph`, when onnxruntime is installed) and
    written to a temporary file that is renamed into place: the folder is unchanged on any
    failure. An existing ``model.onnx`` is replaced only with ``overwrite``.
    """
    from iconet.hub import load_model

    folder = Path(folder)
    target = folder / ONNX_FILE
    if target.exists() and not overwrite:
        raise ValueError(f"{target}: already exists; pass --overwrite (overwrite=True) to replace it")
    model, info = load_model(folder, device="cpu")
    proto = build_graph(model, opset=opset)
    set_normalization(proto, info.normalization)
    check_graph(proto, model)
    with atomic_output(target) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return target


def export_onnx(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    opset: int = OPSET,
) -> Path:
    """Add ``model.onnx`` to an exported model, in place or as a new folder.

    Args:
        source: an exported model folder or a shipped model name.
        out: ``None``: write into ``source`` (a folder; a shipped name needs ``out``).
            Else: a new model folder holding ``source``'s files and the graph (built in a
            hidden temporary folder next to it and renamed into place).
        overwrite: replace an existing ``model.onnx`` (``out=None``) or an existing ``out``
            (only an empty folder or a previous export).

    Returns:
        The path of the written ``model.onnx``.
    """
    from iconet.export import _check_target
    from iconet.hub import _resolve

    folder = _resolve(source)
    if out is None:
        if isinstance(source, str) and not Path(source).exists():
            raise ValueError(f"{source} is a shipped model: give --out (out=) for the new folder to write")
        return write_onnx(folder, overwrite=overwrite, opset=opset)
    out = Path(out)
    if out.exists() and out.resolve() == folder.resolve():
        return write_onnx(folder, overwrite=overwrite, opset=opset)
    _check_target(out, folder, overwrite)
    with replacing_folder(out, check=lambda: _check_target(out, folder, overwrite)) as tmp:
        for src in folder.iterdir():  # the model's files (a stale graph is rebuilt, not copied)
            if src.is_file() and src.name != ONNX_FILE and not src.name.startswith("."):
                shutil.copyfile(src, tmp / src.name)
        write_onnx(tmp, opset=opset)
    return out / ONNX_FILE


__all__ = [
    "ONNX_FILE", "OPSET", "SPECTRAL_FORMS", "TOLERANCE", "OnnxExportError", "DftSpectralMixing",
    "MatmulSpectralMixing", "config_hash",
    "exportable", "build_graph", "check_graph", "write_onnx", "export_onnx",
]

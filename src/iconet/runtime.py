"""Where and how to run: device, precision, autocast, and process-level allocator settings.

glibc serves every allocation above 32 MiB with a fresh ``mmap`` and gives it back on free,
so each large activation of a network is page-faulted and zeroed by the kernel again on every
forward pass. At 512×512 LR that doubled ICONet's fp32 forward time on our 2-core CPU
(benchmarks/complexity.py). :func:`keep_freed_memory` tells glibc to serve large blocks from
its heap and keep freed memory for reuse — the effect that PyTorch's CPU performance guide
gets from jemalloc or tcmalloc. It costs resident memory (freed blocks are not returned to
the OS). Call it once, at the start of a process that you own: ``iconet infer``, ``iconet
train`` and the benchmarks do; a library import never calls it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
from typing import Any

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

#: what a forward pass (training, inference, the memory probe) can run in; ``auto`` is resolved
#: by :func:`resolve_precision`
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory instead of unmapping it. Returns False where not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    return ok


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available (this process's local GPU under torchrun), else CPU.

    Asking for CUDA where there is none, or for an unknown device, is a ``ValueError``.
    """
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; expected auto, cpu or cuda")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device cuda was asked for, but this machine has no CUDA device (use cpu or auto)")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 instructions: AVX512-BF16 or AMX on x86 (oneDNN's own check,
    used elsewhere, also says yes for plain AVX-512, where bf16 is emulated and slower than
    fp32); on other processors (ARM) oneDNN's check."""
    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - private checks missing in some builds
        return False


def cuda_has_bf16(device: torch.device) -> bool:
    """Whether the CUDA device computes in bf16 natively (compute capability 8.0 or later, or
    ROCm), not by emulation."""
    with torch.cuda.device(device):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def resolve_precision(precision: str, device: torch.device, *, fp16_fallback: bool = False) -> str:
    """The precision a forward pass runs in: the one resolver of training, ``iconet infer`` /
    :func:`iconet.inference.super_resolve_volume` and the memory probe.

    ``auto`` → ``bf16`` on a CUDA device with native bf16 (:func:`cuda_has_bf16`) or a CPU with
    bf16 instructions (:func:`cpu_has_fast_bf16`); elsewhere ``fp32``, or ``fp16`` on a CUDA
    device when ``fp16_fallback`` (training, whose gradient scaler keeps fp16 gradients
    finite). An explicit ``fp32``/``bf16``/``fp16`` is returned as is.

    Raises:
        ValueError: a name outside :data:`PRECISIONS`, or ``fp16`` on a CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            if cuda_has_bf16(device):
                return "bf16"
            return "fp16" if fp16_fallback else "fp32"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs CUDA; use bf16 or fp32 on a CPU")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a resolved ``precision``; ``fp32`` switches autocast off, also
    inside an outer autocast (fp32 means fp32)."""
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def machine_name(device: torch.device | str = "cpu") -> str:
    """The processor that runs ``device``: CPU model name (and core count), or the GPU name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"

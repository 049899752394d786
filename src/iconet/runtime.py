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
from typing import Any

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


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
    """Whether this CPU runs bf16 natively (AVX512-BF16 / AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - private op missing in some builds
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` on CUDA with bf16 support or on a CPU with native bf16, ``fp16`` on
    older CUDA devices, else ``fp32``. ``fp16`` on a CPU is refused."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs CUDA; use bf16 or fp32 on a CPU")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
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

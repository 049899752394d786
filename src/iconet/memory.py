"""Memory budgets for inference: sizes, the bytes a model needs per HR pixel, the tile that fits.

:func:`estimate_memory` runs a model on two small square probe inputs and fits
``peak ≈ fixed + batch × HR pixels × bytes_per_pixel`` (CUDA: the allocator's peak; CPU: the
largest total of live tensors during the forward pass, which leaves out oneDNN scratch and
allocator slack); :func:`choose_tile` picks the largest tile that fits a budget. Used by
:mod:`iconet.inference`; sizes are bytes (:func:`parse_size` reads ``"512MiB"``, ``"2GiB"``).
"""

from __future__ import annotations

import math
import os
import re
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from iconet.models.base import SRModel
from iconet.runtime import autocast, resolve_precision

KiB, MiB, GiB = 1024, 1024**2, 1024**3
#: LR sides of the two square probe inputs of :func:`estimate_memory` on a CPU
PROBE_SIDES = (32, 64)
#: and on a GPU: cuDNN picks other algorithms (with other workspaces) for larger inputs; on an
#: H200 ICONet's fp32 peak per pixel was 1.32x larger from 256² LR on than at 32-64² LR
CUDA_PROBE_SIDES = (128, 256)
#: automatic tiles are at least this many LR pixels on a side (smaller ones mostly compute overlap)
MIN_TILE = 32
#: automatic tile sides are multiples of this (and of the model's ``size_multiple``)
TILE_STEP = 8
#: bytes per HR pixel per slice of MONAI's float32 accumulators when tiling (output + weights)
ACCUMULATOR_BYTES = 8
#: LR pixels of circular padding around a slice tiled on the k-space grid (iconet.inference._run)
KSPACE_MARGIN = 16
#: the default budget on a CPU is at most this (and at most a quarter of the available RAM)
CPU_BUDGET_CAP = 2 * GiB


# --------------------------------------------------------------------------- memory budget

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")
_UNITS = {
    "": 1, "b": 1,
    "k": KiB, "kib": KiB, "kb": 1000,
    "m": MiB, "mib": MiB, "mb": 1000**2,
    "g": GiB, "gib": GiB, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}


def parse_size(size: int | str) -> int:
    """Bytes of a size: an int, or text such as ``"512MiB"``, ``"2GiB"``, ``"1.5G"``, ``"4096"``.

    ``KiB``/``MiB``/``GiB``/``TiB`` and the bare ``K``/``M``/``G``/``T`` are powers of 1024;
    ``kB``/``MB``/``GB``/``TB`` are powers of 1000 (case does not matter). The size must be > 0.
    """
    if isinstance(size, bool):
        raise ValueError(f"a memory size must be bytes or text such as '2GiB', got {size!r}")
    if isinstance(size, (int, np.integer)):
        value = int(size)
    elif isinstance(size, str):
        m = _SIZE.fullmatch(size)
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"cannot read memory size {size!r}; write e.g. 512MiB, 2GiB or 4096 (bytes)")
        value = int(float(m.group(1)) * _UNITS[unit])
    else:
        raise ValueError(f"a memory size must be bytes or text such as '2GiB', got {type(size).__name__}")
    if value <= 0:
        raise ValueError(f"a memory size must be positive, got {size!r}")
    return value


def format_size(n: float) -> str:
    """``1610612736`` → ``"1.5 GiB"`` (binary units)."""
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{int(n)} B"


def _available_ram() -> int | None:
    """Bytes of RAM available to new allocations (``MemAvailable``), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * KiB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def default_memory_budget(device: torch.device | str = "cpu") -> int:
    """The default memory budget of one forward pass on ``device``, in bytes.

    CUDA: a quarter of the device's free memory now (``torch.cuda.mem_get_info``; the weights
    are already resident, so this is for activations). CPU: a quarter of the available RAM
    (``MemAvailable`` of ``/proc/meminfo``, else ``os.sysconf``), at most
    :data:`CPU_BUDGET_CAP` (2 GiB) so that results do not depend on how much RAM is free on
    ordinary machines; 2 GiB where the available RAM cannot be read.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return max(int(free) // 4, 1)
    avail = _available_ram()
    return CPU_BUDGET_CAP if avail is None else max(min(CPU_BUDGET_CAP, avail // 4), 1)


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one forward pass, as ``fixed_bytes + batch × HR pixels × bytes_per_pixel``.

    Attributes:
        bytes_per_pixel: activation bytes per HR output pixel of one slice (the slope
            between the two probes of :func:`estimate_memory`).
        fixed_bytes: the part that does not grow with the image (autocast weight copies,
            C×C attention maps, ...).
        method: ``"cuda-allocator"`` (``torch.cuda.max_memory_allocated``) or
            ``"live-tensors"`` (largest total of live tensor storages, tracked op by op).
        device: the device type measured on (``"cuda"``, ``"cpu"``).
        precision: the autocast precision measured with.
    """

    bytes_per_pixel: float
    fixed_bytes: float
    method: str
    device: str
    precision: str

    def peak(self, batch: int, hr_pixels: int) -> float:
        """Estimated peak bytes of a forward pass of ``batch`` slices of ``hr_pixels`` HR pixels."""
        return self.fixed_bytes + batch * hr_pixels * self.bytes_per_pixel


class _LiveTensors:
    """Peak total size of the tensor storages alive during a block of code (any device).

    A ``TorchDispatchMode`` sees every ATen op: each storage an op returns that is not known
    yet is counted; after each op, storages no longer referenced are dropped. Storages that
    existed before the block (weights, the input) are not counted.
    """

    def __init__(self) -> None:
        from torch.multiprocessing.reductions import StorageWeakRef
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self
        self.live: dict[int, tuple[Any, int]] = {}
        self.current = 0
        self.peak = 0

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                        storage = t.untyped_storage()
                        ref = StorageWeakRef(storage)
                        if ref.cdata not in tracker.live:
                            tracker.live[ref.cdata] = (ref, storage.nbytes())
                            tracker.current += storage.nbytes()
                tracker.peak = max(tracker.peak, tracker.current)
                for key in [k for k, (r, _) in tracker.live.items() if r.expired()]:
                    tracker.current -= tracker.live.pop(key)[1]
                return out

        self.mode = Mode()

    def __enter__(self) -> _LiveTensors:
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mode.__exit__(*exc)


def _probe_peak(model: SRModel, side: int, device: torch.device, precision: str) -> int:
    """Peak bytes (above what was allocated before) of one forward pass on a ``side²`` LR input."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, model.in_channels, side, side, generator=gen).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, precision):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            out = model(x)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - base
            del out
            return int(peak)
        with _LiveTensors() as live:
            out = model(x)
            del out
        return live.peak


#: model → {(device, precision): MemoryEstimate}; weak, so that a model can be freed
_ESTIMATES: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[str, str], MemoryEstimate]] = (
    weakref.WeakKeyDictionary()
)


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def estimate_memory(model: SRModel, *, precision: str = "fp32") -> MemoryEstimate:
    """Measure the forward-pass memory of ``model`` on its device (once; later calls are cached).

    The model runs on two square LR probes of :data:`PROBE_SIDES` pixels on a CPU,
    :data:`CUDA_PROBE_SIDES` on a GPU (batch 1, under
    ``torch.inference_mode`` and the autocast of ``precision``, channels-last as
    :func:`super_resolve_volume` feeds it); the peak of each is read from the CUDA allocator
    (``max_memory_allocated``, whose peak counter this resets) or, on a CPU, tracked as the
    largest total of live tensor storages (see the module docstring for what that leaves out).
    ``bytes_per_pixel`` is the slope between the two peaks per HR pixel; ``fixed_bytes`` is
    the rest. For a convolutional network the peak is linear in the pixels, so the estimate
    extrapolates to large tiles; the T2Net peer's chunked all-pairs attention is linear in
    memory too. ``precision`` may be ``"auto"``: it is resolved for the model's device by
    :func:`iconet.runtime.resolve_precision`, as :func:`super_resolve_volume` resolves it.
    """
    device = device_of(model)
    precision = resolve_precision(precision, device)
    key = (str(device), precision)
    cached = _ESTIMATES.setdefault(model, {})
    if key in cached:
        return cached[key]
    m = max(int(getattr(model, "size_multiple", 1)), 1)
    probe = CUDA_PROBE_SIDES if device.type == "cuda" else PROBE_SIDES
    sides = [math.ceil(side / m) * m for side in probe]
    if sides[1] <= sides[0]:
        sides[1] = 2 * sides[0]
    if device.type == "cuda":  # lazy library workspaces (cuBLAS, cuDNN) must not land in one probe only
        _probe_peak(model, sides[0], device, precision)
    peaks = [_probe_peak(model, side, device, precision) for side in sides]
    pixels = [(side * model.scale) ** 2 for side in sides]
    slope = (peaks[1] - peaks[0]) / (pixels[1] - pixels[0])
    if slope <= 0:  # nothing grows with the image (or the counter is too coarse): be pessimistic
        slope = peaks[1] / pixels[1]
    fixed = max(peaks[1] - slope * pixels[1], 0.0)
    method = "cuda-allocator" if device.type == "cuda" else "live-tensors"
    est = MemoryEstimate(float(slope), float(fixed), method, device.type, precision)
    cached[key] = est
    return est


def activation_bytes_per_pixel(model: SRModel, *, precision: str = "fp32") -> float:
    """Peak activation bytes per HR output pixel of ``model`` (see :func:`estimate_memory`)."""
    return estimate_memory(model, precision=precision).bytes_per_pixel


def choose_tile(
    h: int,
    w: int,
    *,
    scale: int,
    batch: int,
    estimate: MemoryEstimate,
    budget: int,
    size_multiple: int = 1,
    save_rec: bool = False,
    margin: int = 0,
) -> int:
    """The LR tile side for slices of ``h × w`` LR pixels: 0 (whole slices) when a batch of
    whole slices (each extended by ``margin`` LR pixels per side: circular padding of slice
    borders) fits ``budget``, else the largest tile that does.

    A tile of side ``t`` covers ``min(t, h) × min(t, w)`` LR pixels; it fits when
    ``estimate.peak(batch, that × scale²)`` plus MONAI's whole-slice accumulators
    (:data:`ACCUMULATOR_BYTES` per HR pixel per slice, and per LR pixel with ``save_rec``,
    counted with the k-space grid's circular margin of :data:`KSPACE_MARGIN`) is within ``budget``. Sides are multiples of ``size_multiple`` and of :data:`TILE_STEP`, at
    least :data:`MIN_TILE` — used even when the budget cannot hold it (the smallest honest
    tile; a smaller one would mostly compute its overlap).
    """
    s2 = scale * scale
    if estimate.peak(batch, (h + 2 * margin) * (w + 2 * margin) * s2) <= budget:
        return 0
    step = math.lcm(max(int(size_multiple), 1), TILE_STEP)
    smallest = math.ceil(MIN_TILE / step) * step
    padded = (h + 2 * KSPACE_MARGIN) * (w + 2 * KSPACE_MARGIN)  # k-space grid: circular margin
    accumulators = batch * ACCUMULATOR_BYTES * padded * (s2 + (1 if save_rec else 0))
    best, t = smallest, smallest
    while t < max(h, w):
        if estimate.peak(batch, min(t, h) * min(t, w) * s2) + accumulators > budget:
            break
        best = t
        t += step
    return best



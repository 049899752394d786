"""Volume in → volume out: slice-wise super-resolution with geometry and intensities kept.

A volume ``(I, J, K)`` is cut into 2-D slices along one axis (default: the coarsest one, so
the two finest axes form the image plane), normalised as the model was trained, run through
the model in batches (optionally in overlapping tiles blended by MONAI's
``sliding_window_inference``), restored to the input's intensity range and data type, and
given the output geometry of docs/design.md §6 (``iconet.data.geometry.upscaled_affine``).

Two entry points:

* :func:`super_resolve` — for notebooks and scripts: an array, a :class:`Volume` or a path in,
  the same kind out; the model is a shipped name, an exported folder or an instance (default:
  the shipped ICONet of ``scale``).
* :func:`super_resolve_volume` — the engine: a model instance and a volume in, ``{"sr": Volume,
  "rec": Volume}`` out.

Tiling from a memory budget
---------------------------
Unless a tile is forced, slices are tiled only when one forward pass would not fit
``memory_budget_bytes``. The memory of a forward pass is modelled as
``fixed + batch × HR pixels × bytes_per_pixel`` and measured once per model, device and
precision (:func:`estimate_memory`): the model runs on two small probe inputs
(:data:`PROBE_SIDES` LR pixels square on a CPU, :data:`CUDA_PROBE_SIDES` on a GPU; batch 1,
``torch.inference_mode``, the same autocast) and the slope between the two peaks is the bytes per HR output pixel; what does not grow
with the image (autocast weight copies, C×C attention maps) is the fixed part. The peak is
read from the CUDA caching allocator (``torch.cuda.max_memory_allocated``) on a GPU. A CPU has
no such counter, so there the peak is the largest total size of the tensor storages alive
at any moment of the forward pass, tracked op by op with a ``TorchDispatchMode`` — a
measurement of the tensors, not of the process: oneDNN scratch buffers, allocator slack and
the Python heap are not in it, so the default CPU budget keeps a 4x margin to the available
RAM. How close the estimate comes to the measured peak: ``benchmarks/memory_estimate.py``
(docs/results.md). Tiled inference adds MONAI's whole-slice accumulators (8 bytes per HR
pixel per slice, :data:`ACCUMULATOR_BYTES`), counted too.

Tiles on the k-space grid: the whole slice's last HR row and column interpolate between its
last and first LR pixels (the grid is periodic); tiles see the same neighbours because a
tiled slice is first padded circularly by :data:`KSPACE_MARGIN` LR pixels (and cropped back).

Slice borders (``InferenceOptions.pad``, k-space grid only): a k-space acquisition is periodic
over its field of view, so where the field of view cuts through the object (a knee, a heart,
a slab) the left edge of a slice continues at its right edge. Zero-padded convolutions do not
know that; ``"circular"`` extends every slice by :data:`KSPACE_MARGIN` LR pixels of circular
padding before the forward pass (and crops back), ``"none"`` none, and ``"auto"`` only the
slices whose border ring holds signal (:func:`border_cuts_object`): padding helps slices cut
through tissue and costs a little on whole head slices (``benchmarks/border_padding.py``,
docs/results.md).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from iconet.data.dtypes import restore_dtype
from iconet.data.geometry import upscaled_affine
from iconet.data.normalize import NormalizeConfig, denormalize, normalize
from iconet.data.volume import Volume
from iconet.memory import KSPACE_MARGIN, device_of, choose_tile, default_memory_budget, estimate_memory, parse_size
from iconet.models.base import SRModel
from iconet.runtime import PRECISIONS, autocast, resolve_precision

PLANES = ("axial", "coronal", "sagittal")
#: models ``super_resolve`` builds by name, with no weights (``model="bicubic"``)
PARAMETER_FREE = ("bicubic", "zerofill")
#: how slice borders are extended before the forward pass (see the module docstring)
PAD_MODES = ("auto", "none", "circular")
#: the border test of ``pad="auto"``: a slice is cut through the object when more than
#: BORDER_FRACTION of the LR pixels in its outermost BORDER_RING rows and columns are above
#: BORDER_LEVEL, in normalised units (1 = the model's normalisation high point, e.g. the
#: 99.5th percentile of the volume; MRI background is ~0.01-0.03 there). Set on S1's held-out
#: slab, so in-sample: with it ``auto`` pads 270 of its 272 strips cut through tissue and 6 (x2)
#: or 9 (x4) of its 34 whole axial head slices, whose face and neck touch the field of view
#: (the "auto padded" column of ``benchmarks/border_padding.py``).
BORDER_RING = 2
BORDER_LEVEL = 0.1
BORDER_FRACTION = 0.15
#: world axis (RAS) perpendicular to each named plane
_PLANE_NORMAL = {"sagittal": 0, "coronal": 1, "axial": 2}



@dataclass
class InferenceOptions:
    """How to run a model over a volume.

    Attributes:
        plane: ``"axial"``, ``"coronal"``, ``"sagittal"``, an array axis (0, 1, 2) to slice
            along, or ``None`` for the plane of the two finest axes (of a single slice, one
            axis of length 1: its own plane).
        batch: slices per forward pass.
        tile: LR tile side for sliding-window inference, ``None`` for automatic (tiles only
            when a batch of whole slices would not fit ``memory_budget_bytes``, and then the
            largest tile that fits; see the module docstring), 0 to never tile.
        overlap: fraction of overlap between tiles.
        memory_budget_bytes: memory one forward pass may use when the tile is chosen
            automatically: bytes, or a size such as ``"512MiB"`` or ``"2GiB"``
            (:func:`parse_size`). ``None``: :func:`default_memory_budget` of the model's device
            (a quarter of the free GPU memory; on a CPU a quarter of the available RAM, at
            most 2 GiB).
        device: ``"cpu"``, ``"cuda"``, or ``"auto"`` (CUDA when available).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (autocast; fp16 only on CUDA) or
            ``"auto"``: bf16 on a CPU with AVX512-BF16/AMX or a CUDA device with native bf16,
            else fp32 (:func:`iconet.runtime.resolve_precision`); the precision used is
            recorded in ``sr.meta["iconet_precision"]``.
        save_rec: also return the reconstruction (artifact-free) output at the input's size.
        pad: slice borders on the k-space grid: ``"none"`` (the convolutions' zero padding),
            ``"circular"`` (every slice extended by :data:`KSPACE_MARGIN` LR pixels of
            circular padding, as the periodic acquisition implies; costs the extra pixels'
            compute), or ``"auto"`` (circular only for slices cut through the object,
            :func:`border_cuts_object`). Tiled slices are always padded circularly.
            Models on the centre grid (bicubic degradation) take ``"auto"`` or ``"none"`` only.
    """

    plane: str | int | None = None
    batch: int = 8
    tile: int | None = None
    overlap: float = 0.25
    memory_budget_bytes: int | str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    save_rec: bool = False
    pad: str = "auto"

    def __post_init__(self) -> None:
        if self.pad not in PAD_MODES:
            raise ValueError(f"pad must be one of {PAD_MODES}, got {self.pad!r}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.tile is not None and self.tile < 0:
            raise ValueError(f"tile must be >= 0, got {self.tile}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.memory_budget_bytes is not None:
            self.memory_budget_bytes = parse_size(self.memory_budget_bytes)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if isinstance(self.plane, str) and self.plane not in PLANES:
            raise ValueError(f"plane must be one of {PLANES} or an axis 0-2, got {self.plane!r}")
        if isinstance(self.plane, int) and self.plane not in (0, 1, 2):
            raise ValueError(f"plane axis must be 0, 1 or 2, got {self.plane}")


def slice_axis(volume: Volume, plane: str | int | None) -> int:
    """The array axis to slice along for ``plane`` (see :class:`InferenceOptions`)."""
    if isinstance(plane, int):
        return plane
    if plane is None:
        if volume.shape.count(1) == 1:  # a single slice has one plane, whatever its spacing
            return volume.shape.index(1)
        spacing = np.asarray(volume.spacing)
        # the coarsest axis; ties go to the last axis (the usual slice axis)
        return int(np.flatnonzero(spacing == spacing.max())[-1])
    world = _PLANE_NORMAL[plane]
    return int(np.argmax(np.abs(volume.affine[world, :3]) / np.linalg.norm(volume.affine[:3, :3], axis=0)))


def _windows(model: SRModel, save_rec: bool) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """The model as a predictor of named tensors: the final SR and, optionally, the LR-size rec."""

    def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = model(x)
        named = {"sr": out["sr"][-1]}
        if save_rec:
            same = [r for r in out.get("rec", []) if r.shape[-2:] == x.shape[-2:]]
            if not same:
                raise ValueError(f"{model.cfg.name} has no reconstruction output at the input size (--save-rec)")
            named["rec"] = same[0]
        return named

    return predict


def border_cuts_object(x: torch.Tensor) -> torch.Tensor:
    """Which slices of a normalised batch ``x (B, C, h, w)`` have signal on their border:
    ``(B,)`` bool, true where more than :data:`BORDER_FRACTION` of the pixels in the outermost
    :data:`BORDER_RING` rows and columns exceed :data:`BORDER_LEVEL` (a field of view that cuts
    through the object, rather than one framed by background)."""
    h, w = x.shape[-2:]
    r = min(BORDER_RING, h // 2, w // 2)
    inner = torch.zeros(h, w, dtype=torch.bool, device=x.device)
    inner[r : h - r, r : w - r] = True
    above = (x.float() > BORDER_LEVEL) & ~inner
    return above.flatten(1).sum(1) > BORDER_FRACTION * (~inner).sum()


def circular_rows(x: torch.Tensor, pad: str, grid: str) -> torch.Tensor:
    """``(B,)`` bool: which slices of ``x (B, C, h, w)`` a whole-slice pass pads circularly."""
    if grid != "kspace" or pad == "none":
        return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    if pad == "circular":
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    return border_cuts_object(x)


def _padded(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``predict`` on ``x (B, C, h, w)`` extended by :data:`KSPACE_MARGIN` LR pixels of circular
    padding (at most the slice's side less one), outputs cropped back to ``x``'s area."""
    h, w = x.shape[-2:]
    pad = min(KSPACE_MARGIN, h - 1, w - 1)
    if pad <= 0:
        return predict(x)
    out = predict(torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="circular"))
    return {key: crop_margin(t, pad, h, w) for key, t in out.items()}


def forward_whole(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], x: torch.Tensor,
                  circular: torch.Tensor) -> dict[str, torch.Tensor]:
    """Whole-slice pass of ``predict`` (named outputs at any integer multiple of the input size)
    on ``x (B, C, h, w)``: the slices where ``circular (B,)`` is true extended circularly by
    :data:`KSPACE_MARGIN` LR pixels (outputs cropped back), the rest as they are."""
    if not bool(circular.any()):
        return predict(x)
    if bool(circular.all()):
        return _padded(predict, x)
    idx_pad, idx_plain = circular.nonzero().flatten(), (~circular).nonzero().flatten()
    a, b = _padded(predict, x[idx_pad]), predict(x[idx_plain])
    out = {}
    for key in a:
        t = a[key].new_empty((x.shape[0], *a[key].shape[1:]))
        t[idx_pad], t[idx_plain] = a[key], b[key]
        out[key] = t
    return out


def _run(model: SRModel, x: torch.Tensor, opts: InferenceOptions, tile: int, grid: str,
         circular: torch.Tensor) -> dict[str, torch.Tensor]:
    """Forward ``x (B, C, h, w)``, in overlapping tiles of ``tile`` LR pixels (0: whole).

    Whole slices are padded where ``circular (B,)`` is true (:func:`circular_rows`). On the k-space grid
    the last HR row and column of a whole slice lie between the slice's last and first LR
    pixels (the grid is periodic, like the FFT). A tile would wrap within itself instead, so a
    tiled slice is always first extended by :data:`KSPACE_MARGIN` LR pixels of circular
    padding, and the output cropped back: tiles at the border then see the same neighbours as
    the circularly padded whole slice.
    """
    predict = _windows(model, opts.save_rec)
    h, w = x.shape[-2:]
    if tile == 0 or (tile >= h and tile >= w):
        return forward_whole(predict, x, circular)
    from monai.inferers import sliding_window_inference  # lazy: only when tiling

    def tiled(t: torch.Tensor) -> dict[str, torch.Tensor]:
        ph, pw = t.shape[-2:]
        # Overlap in whole LR pixels keeps every tile on the same sampling grid.
        return sliding_window_inference(
            t, roi_size=(min(tile, ph), min(tile, pw)), sw_batch_size=t.shape[0], predictor=predict,
            overlap=opts.overlap, mode="gaussian", padding_mode="replicate",
        )

    return _padded(tiled, x) if grid == "kspace" else tiled(x)


def crop_margin(t: torch.Tensor, pad: int, h: int, w: int) -> torch.Tensor:
    """The part of ``t`` under the unpadded input: ``t`` is a model output ``(..., f·(h+2·pad),
    f·(w+2·pad))`` for an LR input ``(h, w)`` extended by ``pad`` pixels on every side, at any
    integer size factor ``f`` (``s`` for SR, 1 for the reconstruction)."""
    f = t.shape[-1] // (w + 2 * pad)
    return t[..., f * pad : f * (pad + h), f * pad : f * (pad + w)]


def resolve_tile(model: SRModel, h: int, w: int, batch: int, opts: InferenceOptions, grid: str = "centre") -> int:
    """The LR tile side :func:`super_resolve_volume` uses for slices of ``h × w`` (0: whole):
    ``opts.tile`` when set, else :func:`choose_tile` from :func:`estimate_memory` and the
    memory budget (``opts.memory_budget_bytes`` or :func:`default_memory_budget`), counting
    the circular margin of whole slices where ``opts.pad`` may add it."""
    tile = opts.tile
    if tile is None:
        budget = opts.memory_budget_bytes
        if budget is None:
            budget = default_memory_budget(device_of(model))
        est = estimate_memory(model, precision=opts.precision)
        tile = choose_tile(h, w, scale=model.scale, batch=batch, estimate=est, budget=int(budget),
                           size_multiple=getattr(model, "size_multiple", 1), save_rec=opts.save_rec,
                           margin=KSPACE_MARGIN if grid == "kspace" and opts.pad != "none" else 0)
    return 0 if tile >= h and tile >= w else tile


def _batches(slices: np.ndarray, batch: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, slices.shape[0], batch):
        yield start, slices[start : start + batch]


@torch.inference_mode()
def super_resolve_volume(
    model: SRModel,
    volume: Volume | np.ndarray,
    *,
    grid: str,
    normalization: NormalizeConfig | None = None,
    options: InferenceOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Volume]:
    """Super-resolve every slice of ``volume`` with ``model``.

    Args:
        model: any iconet model (its ``in_channels`` must be 1: slices are single-channel). For
            speed, convert it once with ``model.to(memory_format=torch.channels_last)``
            (``iconet infer`` does).
        volume: a :class:`Volume` or an array (2-D image or 3-D volume, identity geometry).
        grid: sampling grid the model was trained with (``"kspace"`` or ``"centre"``): decides
            the output origin (docs/design.md §6).
        normalization: how the model's training data were normalised (default: MRI
            percentile). The inverse is applied to the output.
        options: see :class:`InferenceOptions`.
        progress: called with the number of slices done after each batch.

    Returns:
        ``{"sr": Volume}`` (shape ``s×`` along the two in-plane axes, spacing ``d/s``) and, with
        ``options.save_rec``, ``"rec"``: the reconstruction at the input's geometry. Output
        dtype is the input's (integers clipped to their range). ``sr.meta["iconet_tile"]`` is
        the LR tile side used (0: whole slices), ``sr.meta["iconet_circular_slices"]`` the
        number of slices whose borders were extended circularly (``options.pad``),
        ``sr.meta["iconet_normalization"]`` the normalisation used (its ``high`` taken on ``volume``),
        ``sr.meta["iconet_precision"]`` the precision the forward passes ran in (``"auto"`` resolved).
    """
    opts = options or InferenceOptions()
    vol = volume if isinstance(volume, Volume) else Volume(np.asarray(volume))
    if model.in_channels != 1:
        raise ValueError(f"the model takes {model.in_channels} channels; a volume gives slices of 1 channel")
    if opts.pad == "circular" and grid != "kspace":
        raise ValueError(f"pad 'circular' extends slices as a k-space acquisition repeats; this model "
                         f"was trained on the {grid} grid (bicubic degradation): use pad 'auto' or 'none'")
    device = device_of(model)
    precision = resolve_precision(opts.precision, device)
    axis = slice_axis(vol, opts.plane)
    norm_cfg = normalization or NormalizeConfig()
    if norm_cfg.clip is None or norm_cfg.clip:
        # Keep the highlights at inference: clipping would lose what is above the percentile.
        norm_cfg = NormalizeConfig(**{**vars(norm_cfg), "clip": False})
    # The statistic is taken on the volume given, the LR: what `reference: lr` models were trained
    # with; a `reference: hr` model (older) was trained with HR's, which no LR can give.
    data, norm = normalize(np.asarray(vol.data, dtype=np.float32), norm_cfg)
    slices = np.moveaxis(np.asarray(data, dtype=np.float32), axis, 0)  # (n, a, b)
    s = model.scale
    sr = np.empty((slices.shape[0], slices.shape[1] * s, slices.shape[2] * s), dtype=np.float32)
    rec = np.empty_like(slices) if opts.save_rec else None
    tile = resolve_tile(model, slices.shape[1], slices.shape[2], min(opts.batch, slices.shape[0]), opts, grid)
    circular = 0  # slices extended circularly (every tiled slice on the k-space grid)
    for start, chunk in _batches(slices, opts.batch):
        x = torch.from_numpy(np.ascontiguousarray(chunk)).unsqueeze(1).to(device)
        x = x.contiguous(memory_format=torch.channels_last)  # matches a channels_last model
        rows = circular_rows(x, opts.pad, grid) if tile == 0 else torch.full((len(chunk),), grid == "kspace")
        circular += int(rows.sum())
        with autocast(device, precision):
            out = _run(model, x, opts, tile, grid, rows.to(device))
        sr[start : start + len(chunk)] = out["sr"].float().squeeze(1).cpu().numpy()
        if rec is not None:
            rec[start : start + len(chunk)] = out["rec"].float().squeeze(1).cpu().numpy()
        if progress is not None:
            progress(start + len(chunk))
    factors = [s, s, s]
    factors[axis] = 1
    affine = upscaled_affine(vol.affine, factors, grid)
    dtype = vol.data.dtype
    result = {
        "sr": vol.with_data(restore_dtype(np.moveaxis(denormalize(sr, norm), 0, axis), dtype), affine,
                            derived_from=str(vol.source) if vol.source else None,
                            iconet_scale=s, iconet_grid=grid, iconet_axis=axis, iconet_tile=tile,
                            iconet_circular_slices=circular, iconet_normalization=norm.as_dict(),
                            iconet_precision=precision)
    }
    if rec is not None:
        result["rec"] = vol.with_data(restore_dtype(np.moveaxis(denormalize(rec, norm), 0, axis), dtype))
    return result


# --------------------------------------------------------------------------- notebook API


def _load(model: str | os.PathLike[str] | None, scale: int | None, device: str) -> tuple[SRModel, Any]:
    """``(model, ModelInfo)`` for a shipped name, an exported folder, or ``None`` (shipped ICONet).

    The last two models loaded are kept (:func:`_load_folder`), keyed by folder, weights size and
    mtime, and device: a loop over slices reuses the model and the memory estimate cached on it
    (:func:`iconet.memory.estimate_memory`, about half of a small slice's time), and a
    rewritten weights file is a new key. The model is in ``eval()`` and never changed."""
    from iconet.hub import WEIGHTS_FILE, read_info, shipped_model
    from iconet.runtime import resolve_device

    if model is None:
        model = shipped_model(scale or 2, hint="Pass model= an exported model folder (iconet export) "
                                              "or a model instance; any exported model works")
    folder = read_info(model).path.resolve()
    try:
        st = (folder / WEIGHTS_FILE).stat()
    except OSError:  # load_model names the missing file
        return _load_folder.__wrapped__(str(folder), 0, 0, str(resolve_device(device)))
    return _load_folder(str(folder), st.st_size, st.st_mtime_ns, str(resolve_device(device)))


@functools.lru_cache(maxsize=2)
def _load_folder(folder: str, size: int, mtime_ns: int, device: str) -> tuple[SRModel, Any]:
    """:func:`iconet.hub.load_model` of ``folder`` onto ``device``, channels-last; ``size`` and
    ``mtime_ns`` (the weights file's) only key the cache."""
    from iconet.hub import load_model

    net, info = load_model(folder, device=device)
    return net.to(memory_format=torch.channels_last), info


def _as_volume(
    image: Any, spacing: Sequence[float] | None, affine: np.ndarray | None
) -> tuple[Volume, str]:
    """``(volume, kind)``: kind ``"volume"`` (Volume or path in, Volume out), ``"image"`` (a MONAI
    MetaTensor, torchio ScalarImage/Subject or nibabel image in, the same type out:
    :mod:`iconet.api_types`), ``"2d"`` or ``"3d"`` (array in, array out)."""
    from iconet.api_types import is_ecosystem_image, refuse, to_volume

    if is_ecosystem_image(image):  # before the tensor case: a MetaTensor is a tensor with an affine
        if spacing is not None or affine is not None:
            raise ValueError(f"spacing= and affine= only apply to arrays; a {type(image).__name__} carries its geometry")
        return to_volume(image), "image"
    if isinstance(image, (str, os.PathLike, Volume)):
        if spacing is not None or affine is not None:
            raise ValueError("spacing= and affine= only apply to arrays; a Volume or a file carries its geometry")
        if isinstance(image, Volume):
            return image, "volume"
        from iconet.data.io import read_volume

        return read_volume(image), "volume"
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    elif not isinstance(image, (np.ndarray, list, tuple)) and not hasattr(image, "__array__") \
            and not hasattr(image, "__array_interface__"):
        raise refuse(image)
    array = np.asarray(image)
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ValueError(f"expected a 2-D slice (H, W) or a 3-D volume (I, J, K), got an array of shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)) or array.dtype == np.bool_:
        raise ValueError(f"expected a real-valued image, got dtype {array.dtype}")
    if spacing is not None and affine is not None:
        raise ValueError("give spacing= or affine=, not both (an affine holds the spacing)")
    if spacing is not None:
        spacing = [float(v) for v in spacing]
        if len(spacing) != array.ndim or min(spacing) <= 0:
            raise ValueError(f"spacing must be {array.ndim} positive voxel sizes (mm), got {spacing}")
        affine = np.diag([*spacing, *([1.0] * (3 - len(spacing))), 1.0])
    return Volume(array, np.eye(4) if affine is None else affine), "2d" if array.ndim == 2 else "3d"


def super_resolve(
    volume: Volume | np.ndarray | str | os.PathLike[str] | Any,
    model: SRModel | str | os.PathLike[str] | None = None,
    *,
    scale: int | None = None,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
    device: str = "auto",
    grid: str | None = None,
    normalization: NormalizeConfig | dict[str, Any] | None = None,
    options: InferenceOptions | None = None,
    progress: Callable[[int], None] | None = None,
    allow_domain_mismatch: bool = False,
    **option_fields: Any,
) -> Any:
    """Super-resolve a slice, a volume or a scan file with a shipped or exported model.

    Args:
        volume: what to super-resolve:

            * a 2-D array ``(H, W)`` — one slice; returns an array ``(s·H, s·W)``;
            * a 3-D array ``(I, J, K)`` — a stack, cut into slices along the coarsest axis of
              ``spacing`` (the last axis when all are equal, or ``plane=``); returns an array
              ``s×`` larger along the two other axes;
            * a :class:`~iconet.data.volume.Volume` or a file path (NIfTI, DICOM file or series
              folder, PNG/TIFF/NPY, read with :func:`~iconet.data.io.read_volume`) — returns a
              Volume at the SR geometry (spacing ``d/s`` in-plane, docs/design.md §6), ready for
              :func:`~iconet.data.io.write_volume`;
            * a MONAI ``MetaTensor`` (``(I, J, K)`` or ``(1, I, J, K)``; its ``.affine``, RAS or
              LPS as ``meta["space"]`` says), a torchio ``ScalarImage`` or one-image ``Subject``,
              or a nibabel image — sliced by its own affine, returned as the same type at the SR
              geometry (:mod:`iconet.api_types`). Other types are refused with a ``TypeError``.

            A single slice (one axis of length 1) is always super-resolved in its own plane.
            Intensities come back in the input's units and dtype (integers rounded and clipped).
        model: ``None`` for the shipped ICONet of ``scale`` (``"iconet-t1-x2"``,
            ``"iconet-t1-x4"``; a ``FileNotFoundError`` names the shipped models when that one
            is not there), a shipped name, an exported model folder (``iconet export``), a
            parameter-free peer (``"bicubic"``, ``"zerofill"``: any modality, ``grid``
            default ``"kspace"``), or an :class:`~iconet.models.base.SRModel` instance (used on
            its own device).
        scale: the upscaling factor: picks the shipped model when ``model`` is ``None``
            (default 2); otherwise checked against the model's.
        spacing: voxel sizes in mm of an array input (2 or 3 values; they decide the slice axis
            of a 3-D array). ``affine``: or its full ``(4, 4)`` voxel-to-world matrix.
        device: where a model loaded by name or folder runs: ``"auto"`` (CUDA when available),
            ``"cpu"`` or ``"cuda"``.
        grid: sampling grid (``"kspace"``/``"centre"``); default: the exported model's, or the
            instance's ``cfg.grid``.
        normalization: the training normalisation (NormalizeConfig or its dict); default: the
            exported model's, else MRI percentile.
        options: an :class:`InferenceOptions`; its fields can also be passed as keywords
            (``plane=``, ``batch=``, ``tile=``, ``memory_budget_bytes="2GiB"``,
            ``precision=``, ``pad=``, ...), which override ``options``.
        progress: called with the number of slices done after each batch.
        allow_domain_mismatch: run a shipped or exported model on a scan of another modality
            than its ``domain`` (:mod:`iconet.domain`; e.g. a CT through an MR model). Without
            it such a scan is refused with :class:`~iconet.domain.DomainMismatch` (a
            ``ValueError``); with it a ``UserWarning`` says so.

    Returns:
        An array for an array input, a Volume for a Volume or path input, the input's type for
        a MetaTensor, torchio or nibabel image. A model given first (``super_resolve(model,
        volume, grid=...)``) is a ``TypeError`` that names :func:`super_resolve_volume`, the
        form with the model first that returns ``{"sr": Volume}``.

    Example::

        import numpy as np, iconet
        lr = np.load("slice.npy")                               # (128, 128) float32
        sr = iconet.super_resolve(lr)                           # (256, 256), shipped iconet-t1-x2
        sr4 = iconet.super_resolve(lr, scale=4)                 # (512, 512), shipped iconet-t1-x4
        vol = iconet.super_resolve("scan.nii.gz", "models/my_x2", memory_budget_bytes="1GiB")
    """
    if isinstance(volume, torch.nn.Module):
        raise TypeError("super_resolve(volume, model): the image comes first; with a model instance first "
                        "use super_resolve_volume(model, volume, grid=...), which returns {'sr': Volume}")
    if isinstance(model, (Volume, np.ndarray)):
        raise TypeError("super_resolve(volume, model): the image comes first")
    opts = options or InferenceOptions()
    if option_fields:
        opts = replace(opts, **option_fields)
    if opts.save_rec:
        raise ValueError("save_rec: super_resolve returns the SR image only; "
                         "super_resolve_volume(model, volume, grid=..., options=...) returns the reconstruction too")
    domain, model_label = None, ""
    if isinstance(model, str) and model in PARAMETER_FREE:
        from iconet.models import build_model
        from iconet.runtime import resolve_device

        grid = grid or "kspace"
        net = build_model(str(model), scale=scale or 2, grid=grid).to(resolve_device(device)).eval()
    elif model is None or isinstance(model, (str, os.PathLike)):
        net, info = _load(model, scale, device)
        domain, model_label = info.domain, info.path.name
        grid = grid or info.grid
        if normalization is None and info.normalization:
            normalization = info.normalization
    elif isinstance(model, torch.nn.Module):
        net = model
        grid = grid or getattr(getattr(net, "cfg", None), "grid", None) or "kspace"
    else:
        raise TypeError(f"model must be None, a shipped name, a model folder or an SRModel, got {type(model).__name__}")
    if scale is not None and net.scale != scale:
        raise ValueError(f"the model upscales x{net.scale}, but scale={scale} was asked")
    if isinstance(normalization, dict):
        normalization = _normalization(normalization)
    vol, kind = _as_volume(volume, spacing, affine)
    if domain is not None:
        import warnings

        from iconet.domain import API_HINT, check_input

        for note in check_input(domain, vol, model=model_label,
                                source={"volume": vol.name, "image": f"the {type(volume).__name__}"}.get(kind, "the array"),
                                allow=allow_domain_mismatch, hint=API_HINT):
            warnings.warn(note, UserWarning, stacklevel=2)
    if kind == "2d":
        opts = replace(opts, plane=2)  # a slice has one plane
    out = super_resolve_volume(net, vol, grid=grid, normalization=normalization, options=opts, progress=progress)
    sr = out["sr"]
    if kind == "volume":
        return sr
    if kind == "image":
        from iconet.api_types import from_volume

        return from_volume(volume, sr)
    return sr.data[:, :, 0] if kind == "2d" else sr.data


def _normalization(cfg: dict[str, Any]) -> NormalizeConfig:
    from iconet.config import from_dict

    return from_dict(NormalizeConfig, cfg, "normalization")

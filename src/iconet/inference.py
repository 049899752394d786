"""Volume in → volume out: slice-wise super-resolution with geometry and intensities kept.

A volume ``(I, J, K)`` is cut into 2-D slices along one axis (default: the coarsest one, so
the two finest axes form the image plane), normalised as the model was trained, run through
the model in batches (optionally in overlapping tiles blended by MONAI's
``sliding_window_inference``), restored to the input's intensity range and data type, and
given the output geometry of DESIGN §6 (``iconet.data.geometry.upscaled_affine``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from iconet.data.geometry import upscaled_affine
from iconet.data.normalize import NormalizeConfig, denormalize, normalize
from iconet.data.volume import Volume
from iconet.models.base import SRModel

PLANES = ("axial", "coronal", "sagittal")
#: world axis (RAS) perpendicular to each named plane
_PLANE_NORMAL = {"sagittal": 0, "coronal": 1, "axial": 2}


@dataclass
class InferenceOptions:
    """How to run a model over a volume.

    Attributes:
        plane: ``"axial"``, ``"coronal"``, ``"sagittal"``, an array axis (0, 1, 2) to slice
            along, or ``None`` for the plane of the two finest axes.
        batch: slices per forward pass.
        tile: LR tile side for sliding-window inference, ``None`` for automatic (tiles only
            when a slice's HR output exceeds ``max_hr_pixels``), 0 to never tile.
        overlap: fraction of overlap between tiles.
        max_hr_pixels: automatic tiling threshold (HR pixels of one slice).
        device: ``"cpu"``, ``"cuda"``, or ``"auto"`` (CUDA when available).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; fp16 only on CUDA).
        save_rec: also return the reconstruction (artifact-free) output at the input's size.
    """

    plane: str | int | None = None
    batch: int = 8
    tile: int | None = None
    overlap: float = 0.25
    max_hr_pixels: int = 2048 * 2048
    device: str = "cpu"
    precision: str = "fp32"
    save_rec: bool = False

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.tile is not None and self.tile < 0:
            raise ValueError(f"tile must be >= 0, got {self.tile}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if isinstance(self.plane, str) and self.plane not in PLANES:
            raise ValueError(f"plane must be one of {PLANES} or an axis 0-2, got {self.plane!r}")
        if isinstance(self.plane, int) and self.plane not in (0, 1, 2):
            raise ValueError(f"plane axis must be 0, 1 or 2, got {self.plane}")


def slice_axis(volume: Volume, plane: str | int | None) -> int:
    """The array axis to slice along for ``plane`` (see :class:`InferenceOptions`)."""
    if isinstance(plane, int):
        return plane
    if plane is None:
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


def _run(model: SRModel, x: torch.Tensor, opts: InferenceOptions) -> dict[str, torch.Tensor]:
    """Forward ``x (B, C, h, w)``, tiled when asked or when the output would be too large."""
    predict = _windows(model, opts.save_rec)
    h, w = x.shape[-2:]
    tile = opts.tile
    if tile is None:
        tile = 256 if h * w * model.scale**2 > opts.max_hr_pixels else 0
    if tile == 0 or (tile >= h and tile >= w):
        return predict(x)
    from monai.inferers import sliding_window_inference  # lazy: only when tiling

    # Overlap in whole LR pixels keeps every tile on the same sampling grid.
    return sliding_window_inference(
        x, roi_size=(min(tile, h), min(tile, w)), sw_batch_size=x.shape[0], predictor=predict,
        overlap=opts.overlap, mode="gaussian", padding_mode="replicate",
    )


def _batches(slices: np.ndarray, batch: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, slices.shape[0], batch):
        yield start, slices[start : start + batch]


def restore_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast to ``dtype``: integers are rounded and clipped to the type's range (never wrapped)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return array.astype(dtype)


@torch.inference_mode()
def super_resolve(
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
            the output origin (DESIGN §6).
        normalization: how the model's training data were normalised (default: MRI
            percentile). The inverse is applied to the output.
        options: see :class:`InferenceOptions`.
        progress: called with the number of slices done after each batch.

    Returns:
        ``{"sr": Volume}`` (shape ``s×`` along the two in-plane axes, spacing ``d/s``) and, with
        ``options.save_rec``, ``"rec"``: the reconstruction at the input's geometry. Output
        dtype is the input's (integers clipped to their range).
    """
    opts = options or InferenceOptions()
    vol = volume if isinstance(volume, Volume) else Volume(np.asarray(volume))
    if model.in_channels != 1:
        raise ValueError(f"the model takes {model.in_channels} channels; a volume gives slices of 1 channel")
    device = next(model.parameters(), torch.empty(0)).device
    axis = slice_axis(vol, opts.plane)
    norm_cfg = normalization or NormalizeConfig()
    if norm_cfg.clip is None or norm_cfg.clip:
        # Keep the highlights at inference: clipping would lose what is above the percentile.
        norm_cfg = NormalizeConfig(**{**vars(norm_cfg), "clip": False})
    data, norm = normalize(np.asarray(vol.data, dtype=np.float32), norm_cfg)
    slices = np.moveaxis(np.asarray(data, dtype=np.float32), axis, 0)  # (n, a, b)
    s = model.scale
    sr = np.empty((slices.shape[0], slices.shape[1] * s, slices.shape[2] * s), dtype=np.float32)
    rec = np.empty_like(slices) if opts.save_rec else None
    use_amp = opts.precision != "fp32"
    amp_dtype = torch.bfloat16 if opts.precision == "bf16" else torch.float16
    for start, chunk in _batches(slices, opts.batch):
        x = torch.from_numpy(np.ascontiguousarray(chunk)).unsqueeze(1).to(device)
        x = x.contiguous(memory_format=torch.channels_last)  # matches a channels_last model
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            out = _run(model, x, opts)
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
                            iconet_scale=s, iconet_grid=grid, iconet_axis=axis)
    }
    if rec is not None:
        result["rec"] = vol.with_data(restore_dtype(np.moveaxis(denormalize(rec, norm), 0, axis), dtype))
    return result

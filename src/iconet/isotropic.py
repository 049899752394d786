"""Thick-slice scans made isotropic by an ICONet fitted to the scan itself (SMORE-style).

:func:`make_isotropic` does, in order:

1. finds the slice geometry (:func:`iconet.data.slice_profile.slice_profile`: the through-plane
   axis, the slice spacing ``S``, the Gaussian profile's FWHM from the caller, the header, or
   assumed = ``S``) and the target spacing ``d`` (default: the finest in-plane spacing);
2. normalises the scan by its own 0.5th and 99.5th percentiles, whatever their sign (a CT's
   air at -1000 HU stays -1000 HU after the exact inverse);
3. picks the model's scale, a power of two, and its input grid. ICONet upsamples in 2x stages,
   so a ratio ``r = S/d`` that is not a power of two is reached by **resampling the thick
   slices** (cubic B-spline) onto rows every ``s·d`` mm, ``s = 2^floor(log2 r)`` (at least 2),
   training pairs included: the model then lands on the target grid exactly. The alternative,
   ``s = 2^ceil(log2 r)`` on the thick slices as they are with the output resampled onto the
   target grid (``ratio_mode="resample_output"``), is measured in benchmarks/isotropic_design.py;
4. fits a through-plane ICONet (:mod:`iconet.engine.isotropic_fit`) on pairs cut from the
   scan's in-plane slices (:mod:`iconet.data.plane_pairs`) for ``fit_minutes``;
5. applies it to every plane that contains the through-plane axis, in both orientations (rows
   across the slices, columns along either in-plane axis), and averages the two (``fuse``;
   each alone and the mean are compared in benchmarks/isotropic_design.py);
6. writes the result on :func:`~iconet.data.through_plane.output_grid`: spacing ``d`` on every
   axis, the first slice centre on an output voxel, the field of view of the input, so slice
   centres stay where they are in scanner space. In-plane axes at another spacing than ``d``
   are resampled (cubic B-spline).

:func:`apply_fitted` applies a model saved with ``save_model=`` to another scan of the same
protocol without fitting (``iconet infer SCAN OUT --model DIR``).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from iconet.data.errors import DataError
from iconet.data.dtypes import restore_dtype
from iconet.data.normalize import NormalizeConfig, denormalize, normalize
from iconet.data.plane_pairs import InPlanePairs, PairGeometry
from iconet.data.slice_profile import SliceProfile, slice_profile
from iconet.data.through_plane import output_grid, sample_axis, thick_slices
from iconet.data.volume import Volume
from iconet.engine.isotropic_fit import FitConfig, FitResult, fit_through_plane, final_coords, model_section
from iconet.models.base import SRModel
from iconet.ops.rows import resample_rows

#: default fitting budget in minutes: the issue's cap of 5; the gain still grows with steps there
#: (benchmarks/results/isotropic_design.md, the steps_* rows), so the whole cap is used
DEFAULT_FIT_MINUTES = 5.0
#: percentiles of the scan mapped to 0 and 1 before fitting (sign-agnostic, inverted exactly)
NORMALIZE_PERCENTILES = (0.5, 99.5)
RATIO_MODES = ("resample_input", "resample_output")
#: a fitted model applies to scans whose slice spacing, thickness and pixels agree this well
PROTOCOL_TOLERANCE = 0.05
#: ``config.yaml`` section that makes an exported model a through-plane one
SECTION = "isotropic"

__all__ = ["DEFAULT_FIT_MINUTES", "Plan", "apply_fitted", "is_fitted_model", "make_isotropic", "plan",
           "thick_slices"]


@dataclass(frozen=True)
class Plan:
    """How a scan is made isotropic (all lengths in mm).

    Attributes:
        profile: the scan's :class:`~iconet.data.slice_profile.SliceProfile`.
        target_spacing: spacing of the output on every axis.
        scale: the model's upscaling factor (a power of two).
        input_spacing: mm between the model's input rows (``scale·target`` when resampling the
            input, the slice spacing when resampling the output).
        ratio_mode: ``"resample_input"`` or ``"resample_output"`` (module docstring, step 3).
    """

    profile: SliceProfile
    target_spacing: float
    scale: int
    input_spacing: float
    ratio_mode: str

    @property
    def ratio(self) -> float:
        return self.profile.spacing / self.target_spacing

    @property
    def output_step(self) -> float:
        """mm between the model's output rows."""
        return self.input_spacing / self.scale


def plan(profile: SliceProfile, target_spacing: float | None = None, ratio_mode: str = "resample_input",
         where: Any = None) -> Plan:
    """The :class:`Plan` for a profile (target: the finest in-plane spacing by default)."""
    if ratio_mode not in RATIO_MODES:
        raise ValueError(f"ratio_mode must be one of {RATIO_MODES}, got {ratio_mode!r}")
    target = float(min(profile.in_plane) if target_spacing is None else target_spacing)
    if not (math.isfinite(target) and target > 0):
        raise DataError(where, f"target spacing must be a positive number of mm, got {target_spacing}")
    r = profile.spacing / target
    if r <= 1.0 + 1e-6:
        raise DataError(where, f"the slices are {profile.spacing:g} mm apart, not coarser than the target spacing "
                               f"{target:g} mm: nothing to make isotropic")
    if ratio_mode == "resample_input":
        scale = 2 ** max(1, int(math.floor(math.log2(r) + 1e-6)))
        scale, input_spacing = min(scale, 8), min(scale, 8) * target
    else:
        scale = 2 ** max(1, int(math.ceil(math.log2(r) - 1e-6)))
        if scale > 8:
            raise DataError(where, f"slice spacing {r:.3g}x the target needs a x{scale} model; at most x8")
        input_spacing = profile.spacing
    if r > 8 * (1 + 1e-6):
        raise DataError(where, f"slices {profile.spacing:g} mm apart are {r:.3g}x the target spacing {target:g} mm; "
                               "at most 8x is supported")
    return Plan(profile, target, scale, input_spacing, ratio_mode)


# --------------------------------------------------------------------------- volumes in and out


def _as_volume(image: Any, spacing: Any, affine: Any) -> tuple[Volume, str]:
    """``(volume, kind)``: ``"volume"`` for a Volume or path, ``"array"`` for an array."""
    if isinstance(image, (str, os.PathLike)):
        if spacing is not None or affine is not None:
            raise ValueError("spacing= and affine= only apply to arrays; a file carries its geometry")
        from iconet.data.io import read_volume

        return read_volume(image), "volume"
    if isinstance(image, Volume):
        if spacing is not None or affine is not None:
            raise ValueError("spacing= and affine= only apply to arrays; a Volume carries its geometry")
        return image, "volume"
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f"expected a 3-D volume (I, J, K), got an array of shape {array.shape}")
    if spacing is not None and affine is not None:
        raise ValueError("give spacing= or affine=, not both (an affine holds the spacing)")
    if spacing is not None:
        sp = [float(v) for v in spacing]
        if len(sp) != 3 or min(sp) <= 0:
            raise ValueError(f"spacing must be 3 positive voxel sizes (mm), got {sp}")
        affine = np.diag([*sp, 1.0])
    return Volume(array, np.eye(4) if affine is None else affine), "array"


def _where(volume: Volume) -> Any:
    return volume.source if volume.source is not None else volume.name


def _normalize(volume: Volume) -> tuple[np.ndarray, Any]:
    data = np.asarray(volume.data, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(data, NORMALIZE_PERCENTILES))
    if not hi > lo:
        raise DataError(_where(volume), f"has no intensity range to learn from (the {NORMALIZE_PERCENTILES[0]}th "
                                        f"and {NORMALIZE_PERCENTILES[1]}th percentiles are both {lo:g})")
    return normalize(data, NormalizeConfig(method="range", low=lo, high=hi, clip=False))


# --------------------------------------------------------------------------- applying a model


def _input_rows(p: Plan, first_t: float, last_t: float) -> tuple[int, int]:
    """``(q_first, count)``: the model's input rows that cover thick coordinates
    ``first_t..last_t`` with one row of context on each side."""
    per_row = p.input_spacing / p.profile.spacing  # thick samples per input row
    q_first = int(math.floor(first_t / per_row + 1e-9)) - 1
    q_last = int(math.ceil(last_t / per_row - 1e-9)) + 1
    return q_first, q_last - q_first + 1


@torch.inference_mode()
def _run_planes(model: SRModel, x: torch.Tensor, batch: int, device: torch.device, precision: str,
                tick: Callable[[int], None] | None) -> torch.Tensor:
    """``model`` over planes ``x (P, rows, cols)`` in batches; ``(P, scale·rows, cols)`` float32 (CPU)."""
    from iconet.runtime import autocast

    outs = []
    for start in range(0, x.shape[0], batch):
        chunk = x[start:start + batch].unsqueeze(1).to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            sr = model(chunk)["sr"][-1]
        outs.append(sr.float().squeeze(1).cpu())
        if tick is not None:
            tick(chunk.shape[0])
    return torch.cat(outs)


def apply_model(model: SRModel, volume: np.ndarray, p: Plan, *, fuse: bool = True, batch: int = 8,
                device: torch.device = torch.device("cpu"), precision: str = "fp32",
                progress: bool | None = None, planes: str | None = None) -> np.ndarray:
    """Make a normalised ``(N, A, B)`` thick volume (slices along axis 0) isotropic along axis 0.

    Returns ``(J, A, B)`` on the output grid's through-plane axis (in-plane axes untouched).
    ``planes``: ``"A"`` (columns along A only), ``"B"``, or ``None`` = both, averaged when
    ``fuse`` (``fuse=False`` is ``"A"``).
    """
    from iconet.data.through_plane import axis_grid
    from iconet.progress import progress_bar

    n = volume.shape[0]
    g = axis_grid(n, p.profile.spacing, p.target_spacing)
    first_t, last_t = g.first, g.first + (g.n - 1) * g.step
    q_first, count = _input_rows(p, first_t, last_t)
    per_row = p.input_spacing / p.profile.spacing
    x = sample_axis(volume, 0, q_first * per_row, per_row, count)  # (Q, A, B), borders repeated
    # final row j sits at model output row (first_t·S + j·d)/out_step − q_first·scale
    offset = first_t * p.profile.spacing / p.output_step - q_first * p.scale
    step = p.target_spacing / p.output_step
    which = planes or ("AB" if fuse else "A")
    t = torch.from_numpy(np.ascontiguousarray(x))
    total = (t.shape[2] if "A" in which else 0) + (t.shape[1] if "B" in which else 0)
    out = None
    with progress_bar(total, desc="apply", unit="plane", disable=None if progress is None else not progress) as bar:
        for key in which:
            # planes with columns along A are the B-indexed ones: (B, Q, A); along B: (A, Q, B)
            stack = t.permute(2, 0, 1) if key == "A" else t.permute(1, 0, 2)
            sr = _run_planes(model, stack, batch, device, precision, bar.update)
            if abs(step - 1) < 1e-9 and abs(offset - round(offset)) < 1e-9:
                rows = sr[:, int(round(offset)):int(round(offset)) + g.n]
            else:
                coords = offset + step * torch.arange(g.n, dtype=torch.float64)
                rows = resample_rows(sr.unsqueeze(1), coords).squeeze(1)
            rows = rows.permute(1, 2, 0) if key == "A" else rows.permute(1, 0, 2)  # (J, A, B)
            out = rows.clone() if out is None else out + rows
    return (out / len(which)).numpy()


def _finish(vol: Volume, iso: np.ndarray, p: Plan, norm: Any, info: dict[str, Any]) -> Volume:
    """Denormalise ``iso`` (J, A, B) (through-plane axis first), resample in-plane axes that are
    not at the target spacing, and place it on the output grid of ``vol``."""
    ax = p.profile.axis
    grids, affine = output_grid(vol, p.target_spacing)
    data = np.moveaxis(iso, 0, ax)
    for a in range(3):
        if a != ax and not grids[a].identity:
            data = sample_axis(data, a, grids[a].first, grids[a].step, grids[a].n)
    data = restore_dtype(denormalize(data, norm), vol.data.dtype)
    return vol.with_data(data, affine, derived_from=str(vol.source) if vol.source else None, iconet_isotropic=info)


# --------------------------------------------------------------------------- the public API


def make_isotropic(
    volume: Volume | np.ndarray | str | os.PathLike[str],
    *,
    axis: int | None = None,
    slice_thickness: float | None = None,
    target_spacing: float | None = None,
    fit_minutes: float = DEFAULT_FIT_MINUTES,
    fit_steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    fuse: bool = True,
    save_model: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    spacing: Any = None,
    affine: np.ndarray | None = None,
    fit_config: FitConfig | None = None,
    ratio_mode: str = "resample_input",
) -> Any:
    """Make a thick-slice scan isotropic with an ICONet fitted to the scan itself.

    Args:
        volume: a :class:`Volume`, a path (NIfTI, DICOM file or series folder: anything
            :func:`~iconet.data.io.read_volume` reads), or a 3-D array (give ``spacing=`` or
            ``affine=``; an array without them has 1 mm voxels and needs ``axis``).
        axis: the array axis across the slices; ``None``: the coarsest (refused when the volume
            is isotropic within 10 %).
        slice_thickness: FWHM of the slice profile in mm; ``None``: from the header, else the
            slice spacing (see :mod:`iconet.data.slice_profile`).
        target_spacing: output spacing in mm on every axis; ``None``: the finest in-plane one.
        fit_minutes: wall-clock budget of the fit's training steps.
        fit_steps: fix the number of training steps instead (bit-reproducible).
        seed: seeds the model's initialisation and the training pairs.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        precision: ``"auto"`` (bf16 on CUDA with bf16 and on CPUs with native bf16, else
            fp32), ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA).
        fuse: average the two plane orientations across the slices (``False``: one only).
        save_model: also write the fitted model as an exported model folder (``iconet-model/1``)
            that :func:`apply_fitted` and ``iconet infer --model DIR`` apply without fitting.
            Refused before any work when it exists and is not empty.
        progress: tqdm bars with loss and time left (``None``: only on a terminal).
        spacing, affine: geometry of an array input.
        fit_config: the model size and recipe (default :class:`FitConfig`).
        ratio_mode: how a ratio that is not a power of two is reached (module docstring).

    Returns:
        The same kind as ``volume``: a Volume for a Volume or a path (``meta["iconet_isotropic"]``
        says what was done: profile, plan, fit steps and seconds), an array for an array.
        Values are in the input's units and dtype (integers rounded and clipped).

    Raises:
        DataError: one line naming the input and the problem (2-D, isotropic, too few slices,
            thickness out of range, ...).
    """
    vol, kind = _as_volume(volume, spacing, affine)
    out_dir = _check_model_dir(save_model)
    job = prepare(vol, axis=axis, slice_thickness=slice_thickness, target_spacing=target_spacing, device=device,
                  precision=precision, fit_config=fit_config, ratio_mode=ratio_mode)
    t0 = time.perf_counter()
    fit = fit_through_plane(job.pairs, cfg=job.cfg, minutes=fit_minutes, steps=fit_steps, seed=seed,
                            device=job.device, precision=job.precision, progress=progress, desc=f"fit {vol.name}")
    iso = apply_model(fit.model, job.thick, job.plan, fuse=fuse, device=job.device, precision=job.precision,
                      progress=progress)
    info = _info(job.plan, fit, seed, job.device, job.precision, job.norm, time.perf_counter() - t0)
    info["axis_forced"] = axis is not None
    out = _finish(vol, iso, job.plan, job.norm, info)
    if out_dir is not None:
        _save(out_dir, fit, job.plan, job.cfg, vol, info)
    return out if kind == "volume" else out.data


@dataclass
class Job:
    """A scan ready to fit: its plan, normalised thick volume ``(N, A, B)`` (slices first), the
    normalisation to invert, the training pairs, and where and how to run."""

    plan: Plan
    thick: np.ndarray
    norm: Any
    pairs: InPlanePairs
    cfg: FitConfig
    device: torch.device
    precision: str


def prepare(vol: Volume, *, axis: int | None = None, slice_thickness: float | None = None,
            target_spacing: float | None = None, device: str = "auto", precision: str = "auto",
            fit_config: FitConfig | None = None, ratio_mode: str = "resample_input") -> Job:
    """Everything :func:`make_isotropic` decides before fitting (bad input stops here)."""
    from iconet.runtime import resolve_device, resolve_precision

    where = _where(vol)
    prof = slice_profile(vol, axis, slice_thickness)
    p = plan(prof, target_spacing, ratio_mode, where)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    cfg = fit_config or FitConfig()
    norm_data, norm = _normalize(vol)
    thick = np.moveaxis(norm_data, prof.axis, 0)
    in_plane = tuple(vol.spacing[a] for a in range(3) if a != prof.axis)
    geometry = _patch_geometry(thick.shape[1:], in_plane, prof, p, cfg, where)  # type: ignore[arg-type]
    try:
        pairs = InPlanePairs(thick, in_plane, geometry)  # type: ignore[arg-type]
    except ValueError as err:
        raise DataError(where, str(err)) from None
    return Job(p, thick, norm, pairs, cfg, dev, prec)


#: the smallest training patch: input rows, columns
MIN_PATCH = (4, 16)


def _patch_geometry(size: tuple[int, int], spacing: tuple[float, float], prof: SliceProfile, p: Plan,
                    cfg: FitConfig, where: Any) -> PairGeometry:
    """``cfg``'s patch, shrunk (rows first, then columns) until it fits the in-plane slices along
    at least one of their axes; refused below :data:`MIN_PATCH`."""
    def fits(rows: int, cols: int) -> bool:
        margin = 2 * 3 * prof.spacing  # the pairs' margin of thick samples (plane_pairs._MARGIN + 1 each side)
        return any(size[a] - 1 >= ((rows - 1) * p.input_spacing + margin) / spacing[a] and size[1 - a] >= cols
                   for a in (0, 1))

    rows, cols = cfg.input_rows(p.scale), min(cfg.columns, max(size))
    while rows > MIN_PATCH[0] and not fits(rows, cols):
        rows -= 1
    while cols > MIN_PATCH[1] and not fits(rows, cols):
        cols = max(MIN_PATCH[1], cols - 8)
    if not fits(rows, cols):
        raise DataError(where, f"in-plane slices of {size[0]}x{size[1]} voxels are too small to fit a model on "
                               f"(a training patch spans at least {MIN_PATCH[0]} rows every {p.input_spacing:g} mm "
                               "plus 3 slices each side)")
    return PairGeometry(slice_spacing=prof.spacing, fwhm=prof.fwhm, input_spacing=p.input_spacing, scale=p.scale,
                        rows=rows, columns=cols, output_spacing=p.target_spacing, focus=cfg.focus)


def apply_fitted(model_dir: str | os.PathLike[str], volume: Volume | np.ndarray | str | os.PathLike[str], *,
                 slice_thickness: float | None = None, device: str = "auto", precision: str = "auto",
                 fuse: bool = True, progress: bool | None = None, spacing: Any = None,
                 affine: np.ndarray | None = None) -> Any:
    """Make ``volume`` isotropic with a model saved by ``make_isotropic(..., save_model=DIR)``.

    The scan must be of the model's protocol: slice spacing, slice thickness (header or
    ``slice_thickness``; the model's when neither says) and finest in-plane spacing within
    :data:`PROTOCOL_TOLERANCE` of the scan the model was fitted to. Same return as
    :func:`make_isotropic`.
    """
    from iconet.hub import load_model, read_info
    from iconet.runtime import resolve_device, resolve_precision

    info = read_info(model_dir)
    section = info.extra.get(SECTION)
    if not isinstance(section, dict):
        raise ValueError(f"{info.path}: not a through-plane model (its config.yaml has no '{SECTION}' section)")
    vol, kind = _as_volume(volume, spacing, affine)
    where = _where(vol)
    prof = slice_profile(vol, section["axis"] if section.get("axis_forced") else None, slice_thickness)
    if prof.assumed:
        prof = replace(prof, fwhm=float(section["slice_thickness_mm"]), assumed=False,
                       source=f"the model's ({info.path})")
    fitted = {"slice spacing": (prof.spacing, section["slice_spacing_mm"]),
              "slice thickness": (prof.fwhm, section["slice_thickness_mm"]),
              "in-plane spacing": (min(prof.in_plane), section["in_plane_spacing_mm"])}
    for what, (have, want) in fitted.items():
        if abs(have / float(want) - 1) > PROTOCOL_TOLERANCE:
            raise DataError(where, f"{what} is {have:g} mm but the model {info.path} was fitted to {float(want):g} mm "
                                   "(another protocol: fit a model to this scan instead)")
    p = plan(prof, float(section["target_spacing_mm"]), str(section["ratio_mode"]), where)
    if p.scale != info.scale:
        raise DataError(where, f"needs a x{p.scale} model; {info.path} is x{info.scale}")
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    model, _ = load_model(info.path, device=dev)
    model = model.to(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    norm_data, norm = _normalize(vol)
    thick = np.moveaxis(norm_data, prof.axis, 0)
    iso = apply_model(model, thick, p, fuse=fuse, device=dev, precision=prec, progress=progress)
    meta = {"model": str(info.path), "profile": prof.as_dict(), "target_spacing_mm": p.target_spacing,
            "scale": p.scale, "ratio_mode": p.ratio_mode, "device": dev.type, "precision": prec,
            "normalization": norm.as_dict(), "seconds": round(time.perf_counter() - t0, 2)}
    out = _finish(vol, iso, p, norm, meta)
    return out if kind == "volume" else out.data


def is_fitted_model(source: Any) -> bool:
    """Whether ``source`` (a folder or shipped name) is a model saved by :func:`make_isotropic`."""
    from iconet.hub import read_info

    try:
        return isinstance(read_info(source).extra.get(SECTION), dict)
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- saving a fitted model


def _info(p: Plan, fit: FitResult, seed: int, dev: torch.device, prec: str, norm: Any, seconds: float) -> dict:
    return {"profile": p.profile.as_dict(), "target_spacing_mm": p.target_spacing, "scale": p.scale,
            "input_spacing_mm": p.input_spacing, "ratio_mode": p.ratio_mode, "fit": fit.summary(), "seed": seed,
            "device": dev.type, "precision": prec, "normalization": norm.as_dict(), "seconds": round(seconds, 2)}


def _check_model_dir(path: Any) -> Path | None:
    if path is None:
        return None
    out = Path(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(out, "exists and is not an empty folder; choose a new folder for the fitted model")
    if not out.parent.exists():
        raise DataError(out, "its parent folder does not exist")
    return out


def _save(out_dir: Path, fit: FitResult, p: Plan, cfg: FitConfig, vol: Volume, info: dict[str, Any]) -> None:
    """Write the fitted model as an ``iconet-model/1`` folder (atomically)."""
    from safetensors.torch import save_file

    from iconet.data.io import atomic_output
    from iconet.hub import CARD_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FORMAT, WEIGHTS_FILE
    from iconet.models.summary import count_parameters

    prof = p.profile
    section = {
        "slice_spacing_mm": prof.spacing, "slice_thickness_mm": prof.fwhm, "thickness_source": prof.source,
        "in_plane_spacing_mm": min(prof.in_plane), "target_spacing_mm": p.target_spacing,
        "input_spacing_mm": p.input_spacing, "ratio_mode": p.ratio_mode, "fuse": "mean of both planes",
        "normalization": {"method": "percentiles of each scan", "percentiles": list(NORMALIZE_PERCENTILES)},
        "source_scan": str(vol.source) if vol.source else vol.name, "source_shape": list(vol.shape),
        "source_spacing_mm": [round(v, 6) for v in vol.spacing], "axis": prof.axis,
        "axis_forced": bool(info.get("axis_forced")),
        "fit_seconds": round(fit.seconds, 2), "fit_steps": fit.steps, "seed": info["seed"],
        "device": info["device"], "precision": info["precision"], "recipe": asdict(cfg),
    }
    model_cfg = {**model_section(p.scale, cfg)}
    from iconet.config import to_dict
    from iconet.models import make_config

    model_cfg = to_dict(make_config(model_cfg))
    config = {"format": MODEL_FORMAT, "model": model_cfg,
              "degradation": {"kind": "slice_profile", "scale": p.scale, "slice_spacing_mm": prof.spacing,
                              "fwhm_mm": prof.fwhm},
              "data": {}, "grid": "kspace", "step": fit.steps, "weights": "ema", SECTION: section}
    metrics = {"format": MODEL_FORMAT, "step": fit.steps, "weights": "ema",
               "protocol": "training loss (L1, normalised units) on pairs cut from the source scan's own in-plane "
                           "slices; no ground truth across the slices exists for a real scan",
               "validation": {"fit/loss_first": fit.loss_first, "fit/loss_last": fit.loss_last}}
    state = {k: v.detach().cpu().contiguous() for k, v in fit.model.state_dict().items()}
    meta = {"format": MODEL_FORMAT, "name": "iconet", "scale": str(p.scale), "grid": "kspace", "weights": "ema",
            "step": str(fit.steps)}
    card = _card(section, count_parameters(fit.model), p, fit)
    with atomic_output(out_dir, folder=True) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata=meta)
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / CARD_FILE).write_text(card)
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def _card(s: dict[str, Any], params: int, p: Plan, fit: FitResult) -> str:
    gap = s["slice_spacing_mm"] - s["slice_thickness_mm"]
    gap_text = f"a gap of {gap:g} mm" if gap > 1e-6 else (f"an overlap of {-gap:g} mm" if gap < -1e-6 else "contiguous")
    return "\n".join([
        f"# iconet model card: through-plane ICONet x{p.scale} fitted to one scan",
        "",
        "Fitted by `iconet infer --isotropic --save-model` (`iconet.make_isotropic(save_model=...)`) to the scan "
        "below, from pairs cut from its own in-plane slices. Apply it to other scans of the **same protocol** with "
        "`iconet infer SCAN OUT --model THIS_FOLDER` (no fitting). Format `iconet-model/1`.",
        "",
        "## Source scan",
        "",
        f"- scan: `{s['source_scan']}`, shape {s['source_shape']}, voxel {s['source_spacing_mm']} mm",
        f"- through-plane axis: {s['axis']}; slices {s['slice_spacing_mm']:g} mm apart, {s['slice_thickness_mm']:g} mm "
        f"thick ({gap_text})",
        f"- slice profile: Gaussian, FWHM {s['slice_thickness_mm']:g} mm; thickness from: {s['thickness_source']}",
        f"- in-plane spacing {s['in_plane_spacing_mm']:g} mm; output spacing {s['target_spacing_mm']:g} mm on every axis",
        "",
        "## Model",
        "",
        f"- ICONet, `through_plane: true` (height-only 2x stages), x{p.scale}, {params:,} parameters",
        f"- input rows every {s['input_spacing_mm']:g} mm ({s['ratio_mode']}; the thick slices are resampled onto them "
        "when that is not the slice spacing)",
        f"- intensities: each scan normalised by its own {NORMALIZE_PERCENTILES[0]}th and {NORMALIZE_PERCENTILES[1]}th "
        "percentiles (any sign), inverted exactly",
        "- both plane orientations across the slices are made isotropic and averaged",
        "",
        "## Fit",
        "",
        f"- {fit.steps} steps in {fit.seconds:.1f} s on {s['device']} ({s['precision']}), seed {s['seed']}",
        f"- training loss {fit.loss_first:.4f} (first 10 % of steps) → {fit.loss_last:.4f} (last 10 %)",
        "",
        "## Not for",
        "",
        "- Clinical diagnosis or any decision about a patient: the output is a model's estimate, and it can invent "
        "or remove structures across the slices.",
        "- Scans of another protocol (slice spacing, thickness or pixel size more than 5 % off): refused.",
        "",
    ])

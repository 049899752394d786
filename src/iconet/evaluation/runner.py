"""Score any mix of models on the same test volumes, mask draws, degradation and metric protocol.

Every test volume is scored on K seeded mask draws (``draws``, default :data:`DEFAULT_DRAWS`;
draw ``d``'s mask is seeded from :func:`draw_key`, so draw 0 is the volume's own name: the mask
of the single-draw protocol, of validation and of the ``reference: lr`` training statistic).
For each draw: the volume is normalised (``normalization``; with ``reference: lr`` by the
statistic of that draw's LR volume, :func:`iconet.data.normalize.lr_volume`, as ``iconet infer``
takes it on the LR it is given), its foreground slices along one axis are cropped to multiples
of ``2·scale`` and degraded with the draw's mask, and every model sees exactly those LR slices,
through the code path of ``iconet infer`` (:func:`iconet.inference.super_resolve_volume`:
batches, border padding, tiling where memory asks). Both branches are scored and named: ``sr``
(the final SR output) against HR, ``rec`` (the reconstruction at the LR size) against CLEAN —
never one for the other. Metrics are computed per (volume, draw) after undoing the normalisation.

Summaries: mean over all (volume, draw) units with a 95 % interval (:mod:`iconet.evaluation.stats`:
t over the draws for one volume, t over the per-volume means for several), and every model's
paired difference to the reference model (``reference``; default ``bicubic`` when scored, else
the first model) on the same units; a lead is claimed only where that interval excludes 0.
Degradations with nothing random (bicubic, ``mask: none``) and ``masks="equispaced"`` give one
draw (K = 1), and the protocol line says so.

With ``downstream=True`` (or ``"tissue"``) the ``sr`` rows also carry the tissue Dice of each
output against the segmentation of HR by a fixed intensity model fitted on that HR volume
(:mod:`iconet.evaluation.downstream`), on the same slices and in the same units as the metrics.
``downstream="tumour"`` does the same inside the BraTS whole-tumour label of each volume (its
``labels`` go through the same slice selection and crop as HR) and adds one ``labels`` row per
volume: HR's segmentation against the expert labels.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iconet.data.datasets import foreground_slices
from iconet.data.degrade import Degradation, crop_to_multiple
from iconet.data.normalize import Normalization, NormalizeConfig, denormalize, lr_volume, normalize
from iconet.data.volume import Volume
from iconet.evaluation.metrics import FASTMRI, MetricProtocol, aggregate, evaluate_volume, format_mean_std
from iconet.evaluation.stats import Interval, claim, format_interval, interval, method_text, paired
from iconet.models.base import SRModel

#: mask draws per volume unless told otherwise (``iconet eval --draws``)
DEFAULT_DRAWS = 8
#: ``random``: K seeded random draws of the degradation's mask; ``equispaced``: one deterministic
#: equispaced mask per volume (K = 1)
MASK_DRAWS = ("random", "equispaced")
#: the metrics whose paired difference decides a lead (higher is better for both)
CLAIM_METRICS = ("psnr", "ssim")

PEERS = ("bicubic", "zerofill")


@dataclass
class Candidate:
    """A model to score: its display name, the module, and the grid it was trained on."""

    name: str
    model: SRModel
    grid: str
    source: str


@dataclass
class EvalResult:
    """Per-(volume, draw) rows, the summary per model and branch, and the protocol line.

    ``summary[model]`` holds ``"sr"``/``"rec"``: metric → (mean, sample std) over all units;
    ``"intervals"``: branch → metric → :class:`~iconet.evaluation.stats.Interval` as a dict;
    ``"vs_reference"`` (every model but the reference): metric → the paired difference's
    interval as a dict plus ``"claim"`` (``lead``/``trails``/``no claim``).
    """

    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    protocol: str
    degradation: dict[str, Any] = field(default_factory=dict)
    downstream: str = ""  # the downstream model's line when the downstream check ran, else ""
    #: tumour check only: HR's segmentation against the expert labels, mean ± std over volumes
    reference: dict[str, Any] = field(default_factory=dict)
    reference_mapping: str = ""  # which intensity classes are compared with which labels
    #: the model every other is compared with (paired differences)
    reference_model: str = ""
    #: K, the mask kind, and the mask seed of every (volume, draw): ``{"k", "masks", "seeds": {volume: [...]}}``
    draws: dict[str, Any] = field(default_factory=dict)
    interval_method: str = ""  # how the 95 % intervals were computed (one phrase)


def load_candidate(spec: str, scale: int, grid: str) -> Candidate:
    """``bicubic``/``zerofill``, an exported model folder, a shipped name, or a training run."""
    from iconet.hub import load_model
    from iconet.models import build_model

    if spec in PEERS:
        return Candidate(spec, build_model(spec, scale=scale, grid=grid).eval(), grid, "built-in")
    path = Path(spec)
    if (path / "checkpoints").is_dir():  # a training run: score its best EMA weights
        from iconet.export import export_run

        with tempfile.TemporaryDirectory() as tmp:
            model, info = load_model(export_run(path, Path(tmp) / "model"))
    else:
        model, info = load_model(spec)
    if model.scale != scale:
        raise ValueError(f"{spec}: the model upscales x{model.scale}, the test data are degraded x{scale}")
    if model.in_channels != 1:
        raise ValueError(f"{spec}: the model takes {model.in_channels} channels; test slices have 1")
    return Candidate(path.name if path.exists() else spec, model.eval(), info.grid, spec)


def _take(array: np.ndarray, axis: int, keep: np.ndarray, multiple: int) -> torch.Tensor:
    """Slices ``keep`` along ``axis`` as a stack ``(S, H, W)``, centre-cropped to ``multiple``.

    The one selection and crop of the scored slices: HR's voxels and the tumour labels both
    go through it, so they stay voxel for voxel aligned.
    """
    stack = torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, axis, 0)[keep]))
    return crop_to_multiple(stack, multiple)


def _slices(volume: Volume, axis: int, multiple: int, norm_cfg: NormalizeConfig,
            stats_from: np.ndarray | None = None) -> tuple[torch.Tensor, Any, np.ndarray]:
    """Normalised foreground slices ``(S, H, W)`` along ``axis``, cropped to ``multiple``; the
    normalisation; the indices of the slices kept (for :func:`_take` on other arrays).
    ``stats_from``: the LR volume a ``reference: lr`` statistic is taken on."""
    data, norm = normalize(np.asarray(volume.data, dtype=np.float32), norm_cfg, stats_from=stats_from)
    keep = foreground_slices(data, axis, threshold=0.1, fraction=0.10)
    if keep.size == 0:
        raise ValueError(f"{volume.source or volume.name}: no foreground slice along axis {axis}")
    return _take(data.astype(np.float32, copy=False), axis, keep, multiple), norm, keep


def draw_key(volume: str, draw: int) -> str:
    """The name draw ``draw`` of ``volume``'s mask (and noise) is seeded from
    (:func:`iconet.data.degrade.seed_from_name`): the volume's name for draw 0 (the mask of the
    single-draw protocol, of validation and of the ``reference: lr`` training statistic),
    ``"<volume>/draw<d>"`` after."""
    return volume if draw == 0 else f"{volume}/draw{draw}"


def effective_draws(degradation: Degradation, draws: int, masks: str) -> int:
    """K actually drawn: ``draws``, or 1 where nothing is random (bicubic, ``mask: none``) or the
    masks are the deterministic equispaced ones."""
    if masks not in MASK_DRAWS:
        raise ValueError(f"masks must be one of {MASK_DRAWS}, got {masks!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    if masks == "equispaced":
        if degradation.kind != "kspace" or degradation.mask != "cartesian":
            raise ValueError("equispaced masks need the k-space degradation with a cartesian mask")
        return 1
    random = degradation.kind in ("gaussian", "poisson") or (degradation.kind == "kspace" and degradation.mask != "none")
    return draws if random else 1


def draws_text(degradation: Degradation, k: int, masks: str) -> str:
    """The draw part of the protocol line: how many draws, and which seeds."""
    if masks == "equispaced":
        return "one equispaced mask per volume (deterministic; its offset seeded from the volume's name), K = 1"
    if k == 1 and effective_draws(degradation, 2, masks) == 1:
        return f"one LR per volume ({degradation.kind} degradation: nothing is drawn), K = 1"
    what = "mask" if degradation.kind == "kspace" else "noise"
    seeds = "draw 0" if k == 1 else f"draws 0-{k - 1}"
    return (f"K = {k} seeded {what} draw{'s' if k > 1 else ''} per volume ({seeds}; draw d seeded from "
            "seed_from_name('<volume>/draw<d>'), draw 0 from '<volume>'; every seed in per_volume.csv)")


def _norm_text(cfg: NormalizeConfig) -> str:
    if not cfg.measures:
        return f"normalised by fixed values ({cfg.method} {cfg.low:g}..{cfg.high:g})"
    what = f"{cfg.percentile:g}th percentile" if cfg.method == "percentile" else "min/max"
    on = "of each draw's LR volume (reference lr, as iconet infer takes it)" if cfg.reference == "lr" \
        else "of the HR volume (reference hr, the older training convention; iconet infer cannot take it)"
    return f"normalised by the {what} {on}"


def _label_slices(vol: Volume, labels: Any, axis: int, keep: np.ndarray, multiple: int) -> np.ndarray:
    """The volume's BraTS labels on the scored slices (checked against the volume's grid)."""
    from iconet.evaluation.downstream import brats_labels

    where = f"volume {vol.name!r}"
    if labels is None:
        raise ValueError(f"{where}: no tumour labels (--downstream tumour needs the case's _seg file)")
    arr = np.asarray(labels.data if isinstance(labels, Volume) else labels)
    if arr.shape != vol.shape:
        raise ValueError(f"{where}: the tumour labels have shape {arr.shape}, the volume {vol.shape}")
    if isinstance(labels, Volume) and not np.allclose(labels.affine, vol.affine, atol=1e-3):
        raise ValueError(f"{where}: the tumour labels and the volume have different affines (not on the same grid)")
    try:
        arr = brats_labels(arr)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return _take(arr, axis, keep, multiple).numpy()


def _downstream_kind(downstream: bool | str | None) -> str | None:
    if downstream is None or downstream is False or downstream == "":
        return None
    if downstream is True:
        return "tissue"
    if downstream in ("tissue", "tumour"):
        return str(downstream)
    raise ValueError(f"unknown downstream check {downstream!r}; expected 'tissue' or 'tumour'")


def _check_fits(cand: Candidate, vol: Volume, degradation: Degradation) -> None:
    """One-line errors for a model that cannot be scored on this volume's LR slices."""
    pair = f"model {cand.name!r} on volume {vol.name!r}"
    scale = getattr(cand.model, "scale", degradation.scale)
    if scale != degradation.scale:
        raise ValueError(f"{pair}: the model upscales x{scale}, the test data are degraded x{degradation.scale}")
    channels = getattr(cand.model, "in_channels", 1)
    if channels != 1:
        raise ValueError(f"{pair}: the model takes {channels} channels, the volume has 1 (one contrast, 3-D)")
    if cand.grid != degradation.grid:
        raise ValueError(f"{pair}: the model was trained on the {cand.grid} grid, the test data use the {degradation.grid} grid")


def _forward(cand: Candidate, lr: torch.Tensor, batch: int, pad: str, want_rec: bool,
             progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """SR (and the LR-size rec) of the normalised LR stack ``(S, h, w)`` through the code path of
    ``iconet infer`` (normalisation left as it is: the stack is already normalised); seconds.
    ``progress``: called with the slices done after each batch."""
    from iconet.inference import InferenceOptions, super_resolve_volume

    identity = NormalizeConfig(method="window", low=0.0, high=1.0, clip=False)
    opts = InferenceOptions(plane=0, batch=batch, pad=pad, save_rec=want_rec)
    tick = time.perf_counter()
    out = super_resolve_volume(cand.model, Volume(lr.numpy()), grid=cand.grid, normalization=identity, options=opts,
                               progress=progress)
    seconds = time.perf_counter() - tick
    rec = torch.from_numpy(out["rec"].data) if want_rec else None
    return torch.from_numpy(out["sr"].data), rec, seconds


def _probe(cand: Candidate, vol: Volume, lr: torch.Tensor, hr_shape: tuple[int, ...]) -> bool:
    """One slice through the model: a one-line error when its SR has the wrong size; whether it
    gives a reconstruction at the LR size."""
    out = cand.model(lr[:1, None].contiguous(memory_format=torch.channels_last))
    got = tuple(out["sr"][-1].shape[-2:])
    if got != tuple(hr_shape[-2:]):
        raise ValueError(f"model {cand.name!r} on volume {vol.name!r}: the SR output has shape "
                         f"{(lr.shape[0], *got)}, the HR slices {tuple(hr_shape)}")
    return any(r.shape[-2:] == lr.shape[-2:] for r in out.get("rec", []))


@torch.inference_mode()
def evaluate(
    candidates: list[Candidate],
    volumes: list[Volume],
    degradation: Degradation,
    *,
    axis: int = 2,
    protocol: MetricProtocol = FASTMRI,
    normalization: NormalizeConfig | None = None,
    batch: int = 8,
    downstream: bool | str = False,
    labels: Mapping[str, Any] | None = None,
    contrast: str | None = None,
    draws: int = DEFAULT_DRAWS,
    masks: str = "random",
    reference: str | None = None,
    pad: str = "auto",
    progress: Callable[[float, int], None] | None = None,
) -> EvalResult:
    """Score every candidate on every volume and mask draw; rows per (volume, draw), summaries
    with 95 % intervals and paired differences to ``reference``.

    Args:
        normalization: the protocol's normalisation; ``None``: the 99.5th percentile of each
            draw's LR volume (``reference: lr``), what ``iconet infer`` can compute.
        draws: K, mask draws per volume (1 where nothing is random, see :func:`effective_draws`).
        masks: ``"random"`` (the degradation's seeded draws) or ``"equispaced"`` (deterministic, K = 1).
        reference: the model every other is compared with (default ``bicubic`` when scored,
            else the first candidate).
        pad: border padding as ``iconet infer --pad`` (``"none"`` for models that pad themselves).
        progress: called with (passes done, passes in all) after each batch of slices, a
            (volume, draw, model) pass counting as 1 (fractions within a pass).

    ``downstream=True`` (or ``"tissue"``) adds ``dice_csf``, ``dice_gm``, ``dice_wm`` and
    ``dice_mean`` to every ``sr`` row (and a ``"downstream"`` entry to each model's summary):
    the SR output segmented by a :class:`~iconet.evaluation.downstream.TissueModel` fitted on
    the draw's HR slices, against HR's own segmentation.

    ``downstream="tumour"`` adds ``tumour_dice_low``, ``_mid``, ``_high`` and ``_mean``
    instead: a :class:`~iconet.evaluation.downstream.TumourModel` fitted on HR inside the
    volume's BraTS whole-tumour label and applied there. It needs ``labels`` (volume name →
    label :class:`Volume` or array on the volume's grid, BraTS 2021 values 0/1/2/4) and
    ``contrast`` (``t1``, ``t1ce``, ``t2``, ``flair``). Each volume also gets one row with
    ``model="HR"``, ``branch="labels"``: HR's segmentation against the expert labels
    (``expert_dice_<region>``, draw 0), summarised in :attr:`EvalResult.reference`.
    """
    from iconet.data.validate import require_volume

    if not volumes:
        raise ValueError("no test volumes")
    if not candidates:
        raise ValueError("no models to score")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"models must have distinct names, got {names}")
    ref_name = reference if reference is not None else ("bicubic" if "bicubic" in names else names[0])
    if ref_name not in names:
        raise ValueError(f"the reference model {ref_name!r} is not among the models scored ({', '.join(names)})")
    k = effective_draws(degradation, draws, masks)
    deg = dataclasses.replace(degradation, mask_mode="seeded",
                              **({"mask_pattern": "equispaced"} if masks == "equispaced" else {}))
    kind = _downstream_kind(downstream)
    if kind == "tumour":
        from iconet.evaluation.downstream import TUMOUR_REFERENCE

        if labels is None:
            raise ValueError("the tumour check needs BraTS tumour labels for every volume (labels=...)")
        if contrast is None or str(contrast).lower() not in TUMOUR_REFERENCE:
            raise ValueError(f"the tumour check needs the contrast (t1, t1ce, t2 or flair), got {contrast!r}")
        contrast = str(contrast).lower()
    user_axis = axis
    protocol = MetricProtocol(**{**vars(protocol), "slice_axis": 0})  # stacks are (S, H, W)
    norm_cfg = normalization or NormalizeConfig(reference="lr")
    rows: list[dict[str, Any]] = []
    seeds: dict[str, list[int | None]] = {}
    tissue_line = mapping = ""
    has_rec: dict[str, bool] = {}
    total, done = len(volumes) * k * len(candidates), 0
    for vol in volumes:
        require_volume(vol)
        for cand in candidates:
            _check_fits(cand, vol, degradation)
        raw = np.asarray(vol.data, dtype=np.float32)
        fixed = None if norm_cfg.needs_lr else _slices(vol, axis, deg.multiple, norm_cfg)
        seeds[vol.name] = []
        for d in range(k):
            key = draw_key(vol.name, d)
            hr, norm, keep = fixed or _slices(vol, axis, deg.multiple, norm_cfg,
                                              stats_from=lr_volume(raw, deg, axis, key))
            made = deg.degrade(hr, key)
            lr, clean = made["lr"], made["clean"]
            seeds[vol.name].append(made["params"].get("seed"))
            undo = lambda t, norm=norm: np.asarray(denormalize(t.double().numpy(), norm))  # noqa: E731
            hr_arr = undo(hr)
            unit = {"volume": vol.name, "draw": d, "seed": made["params"].get("seed"), "norm_high": norm.high}
            if kind == "tissue":
                from iconet.evaluation.downstream import TissueModel, downstream_scores

                try:
                    tissue = TissueModel.fit(hr_arr, protocol)
                except ValueError as err:
                    raise ValueError(f"volume {vol.name!r}: {err}") from None
                ref_labels = tissue.segment(hr_arr)
                tissue_line = tissue.describe()
            elif kind == "tumour":
                from iconet.evaluation.downstream import TumourModel, tumour_scores, whole_tumour

                expert = _label_slices(vol, labels.get(vol.name), axis, keep, deg.multiple)  # type: ignore[union-attr]
                try:
                    tumour = TumourModel.fit(hr_arr, expert, contrast)  # type: ignore[arg-type]
                except ValueError as err:
                    raise ValueError(f"volume {vol.name!r}: {err}") from None
                roi = whole_tumour(expert)
                ref_labels = tumour.segment(hr_arr, roi)
                tissue_line, mapping = tumour.describe(), tumour.mapping()
                if d == 0:
                    rows.append({"model": "HR", **unit, "branch": "labels", "slices": int(hr.shape[0]),
                                 **tumour.reference(hr_arr, expert)})
            for cand in candidates:
                if cand.name not in has_rec:
                    has_rec[cand.name] = _probe(cand, vol, lr, tuple(hr.shape))
                step = None if progress is None else \
                    lambda s, done=done, n=lr.shape[0]: progress(done + s / n, total)  # type: ignore[misc]
                sr, rec, seconds = _forward(cand, lr, batch, pad, has_rec[cand.name], step)
                if sr.shape != hr.shape:
                    raise ValueError(f"model {cand.name!r} on volume {vol.name!r}: the SR output has shape "
                                     f"{tuple(sr.shape)}, the HR slices {tuple(hr.shape)}")
                sr_arr = undo(sr)
                base = {"model": cand.name, **unit, "slices": int(lr.shape[0]),
                        "ms_per_slice": 1000 * seconds / lr.shape[0]}
                sr_row = {**base, "branch": "sr", **evaluate_volume(sr_arr, hr_arr, protocol)}
                if kind == "tissue":
                    sr_row.update(downstream_scores(sr_arr, tissue, ref_labels))
                elif kind == "tumour":
                    sr_row.update(tumour_scores(sr_arr, tumour, roi, ref_labels))
                rows.append(sr_row)
                if rec is not None:
                    rows.append({**base, "branch": "rec", **evaluate_volume(undo(rec), undo(clean), protocol)})
                done += 1
                if progress is not None:
                    progress(done, total)
    summary = _summaries(candidates, rows, kind, ref_name, tuple(lr.shape[-2:]))
    params = {k_: v for k_, v in made["params"].items() if k_ != "seed"}
    ref_dice: dict[str, Any] = {}
    if kind == "tumour":
        ref_rows = [{k_: v for k_, v in r.items() if k_.startswith("expert_dice_")} for r in rows if r["branch"] == "labels"]
        ref_dice = aggregate(ref_rows)
    method = method_text(len(volumes), k)
    spread = (f"{draws_text(deg, k, masks)}; mean over all (volume, draw) units, {method}; "
              f"{_norm_text(norm_cfg)}")
    line = protocol.describe(slices=f"every foreground slice along axis {user_axis} of each volume", spread=spread)
    return EvalResult(rows, summary, line, params, tissue_line, ref_dice, mapping, ref_name,
                      {"k": k, "masks": masks, "seeds": seeds}, method)


def _per_volume(rows: list[dict[str, Any]], model: str, branch: str, metric: str) -> dict[str, list[float]]:
    """``volume → [value of draw 0, 1, ...]`` for one model, branch and metric (rows as evaluated,
    or as read back from ``per_volume.csv``: strings are converted)."""
    out: dict[str, list[float]] = {}
    for r in sorted((r for r in rows if r["model"] == model and r["branch"] == branch), key=lambda r: int(r["draw"])):
        out.setdefault(r["volume"], []).append(float(r[metric]))
    return out


def paired_from_rows(rows: list[dict[str, Any]], model: str, reference: str, metric: str = "psnr") -> dict[str, Any]:
    """``model − reference`` on their common (volume, draw) units of ``rows`` (an
    :attr:`EvalResult.rows` or a ``per_volume.csv`` read back): the interval as a dict plus
    ``"claim"``. For comparing two models neither of which was the table's reference."""
    diff = paired(_per_volume(rows, model, "sr", metric), _per_volume(rows, reference, "sr", metric))
    return {**diff.as_dict(), "claim": claim(diff, higher_is_better=metric != "nmse")}


def _summaries(candidates: list[Candidate], rows: list[dict[str, Any]], kind: str | None, ref_name: str,
               lr_size: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    from iconet.models.summary import count_flops, count_parameters

    summary: dict[str, dict[str, Any]] = {}
    for cand in candidates:
        h, w = lr_size
        mine_sr = [r for r in rows if r["model"] == cand.name and r["branch"] == "sr"]
        entry: dict[str, Any] = {
            "source": cand.source, "grid": cand.grid, "params": count_parameters(cand.model),
            "gflops_per_slice": count_flops(cand.model, (1, 1, h, w)) / 1e9,  # convs and matmuls
            "ms_per_slice": float(np.mean([r["ms_per_slice"] for r in mine_sr])),
            "intervals": {},
        }
        for branch in ("sr", "rec"):
            mine = [{m: r[m] for m in ("psnr", "ssim", "nmse")} for r in rows if r["model"] == cand.name and r["branch"] == branch]
            if mine:
                entry[branch] = aggregate(mine)
                entry["intervals"][branch] = {m: interval(_per_volume(rows, cand.name, branch, m)).as_dict()
                                              for m in ("psnr", "ssim", "nmse")}
        if cand.name != ref_name:
            vs: dict[str, Any] = {"reference": ref_name}
            for m in ("psnr", "ssim", "nmse"):
                diff = paired(_per_volume(rows, cand.name, "sr", m), _per_volume(rows, ref_name, "sr", m))
                vs[m] = {**diff.as_dict(), "claim": claim(diff, higher_is_better=m != "nmse")}
            entry["vs_reference"] = vs
        if kind:
            from iconet.evaluation.downstream import DICE_KEYS, TUMOUR_KEYS

            keys = DICE_KEYS if kind == "tissue" else TUMOUR_KEYS
            entry["downstream"] = aggregate([{k: r[k] for k in keys} for r in mine_sr])
        summary[cand.name] = entry
    return summary


def _mean_std(mean: float, std: float, n: int, digits: int) -> str:
    """``format_mean_std``, or the mean alone with ``(n = 1)`` where there is one unit (no spread)."""
    if n < 2:
        return f"{mean:.{digits}f} (n = 1)" if np.isfinite(mean) else str(mean)
    return format_mean_std(mean, std, digits)


def _iv(d: Mapping[str, Any]) -> Interval:
    return Interval(**{k: d[k] for k in ("mean", "low", "high", "n_volumes", "n_draws", "method")})


def markdown_table(result: EvalResult, scale: int) -> str:
    """Mean [95 % interval] per model and branch, each model's paired difference to the reference
    with its interval and whether a lead is claimed; the best SR/REC PSNR and SSIM means in bold."""
    names = list(result.summary)
    ref = result.reference_model or names[0]

    def best(branch: str, metric: str) -> str | None:
        vals = {n: result.summary[n][branch][metric][0] for n in names if branch in result.summary[n]}
        return max(vals, key=vals.get) if vals else None  # type: ignore[arg-type]

    bests = {(b, m): best(b, m) for b in ("sr", "rec") for m in ("psnr", "ssim")}
    lines = [f"| model (x{scale}) | params | GFLOPs/slice | ms/slice | SR PSNR (dB) | SR SSIM | Δ PSNR vs {ref} (dB) "
             f"| Δ SSIM vs {ref} | lead over {ref} (PSNR / SSIM) | REC PSNR (dB) | REC SSIM |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for n in names:
        e = result.summary[n]
        cells: dict[tuple[str, str], str] = {}
        for b in ("sr", "rec"):
            for m, digits in (("psnr", 2), ("ssim", 4)):
                if b not in e:
                    cells[(b, m)] = "–"
                    continue
                ivs = e.get("intervals", {}).get(b, {})
                text = format_interval(_iv(ivs[m]), digits) if m in ivs else format_mean_std(*e[b][m], digits)
                cells[(b, m)] = f"**{text}**" if bests[(b, m)] == n else text
        vs = e.get("vs_reference")
        if vs is None:
            diffs, lead = ["reference", "reference"], "–"
        else:
            diffs = [format_interval(_iv(vs[m]), d, signed=True) for m, d in (("psnr", 2), ("ssim", 4))]
            lead = " / ".join(vs[m]["claim"] for m in CLAIM_METRICS)
        lines.append(f"| {n} | {e['params']:,} | {e['gflops_per_slice']:.2f} | {e['ms_per_slice']:.0f} | "
                     f"{cells[('sr', 'psnr')]} | {cells[('sr', 'ssim')]} | {diffs[0]} | {diffs[1]} | {lead} | "
                     f"{cells[('rec', 'psnr')]} | {cells[('rec', 'ssim')]} |")
    deg = ", ".join(f"{k}={v}" for k, v in result.degradation.items() if v is not None)
    lines += ["", f"Protocol: {result.protocol}.",
              f"Δ = model − {ref} on the same volumes and draws, with its 95 % interval by the same rule; "
              f"a lead is claimed only where that interval excludes 0 (\"lead\"; \"trails\" below 0, "
              "\"no claim\" where it holds 0). Values: mean [95 % interval]; n = 1 shows the mean alone.",
              f"Degradation: {deg}. SR is scored against HR, REC against CLEAN."]
    with_dice = [n for n in names if "downstream" in result.summary[n]]
    if with_dice:
        from iconet.evaluation.downstream import DICE_HEADERS

        keys = list(result.summary[with_dice[0]]["downstream"])

        def best_dice(key: str) -> str | None:
            vals = {n: result.summary[n]["downstream"][key][0] for n in with_dice}
            vals = {n: v for n, v in vals.items() if np.isfinite(v)}
            return max(vals, key=vals.get) if vals else None  # type: ignore[arg-type]

        top = {k: best_dice(k) for k in keys}
        lines += ["", f"| model (x{scale}) | " + " | ".join(DICE_HEADERS.get(k, k) for k in keys) + " |",
                  "|---|" + "---:|" * len(keys)]
        for n in with_dice:
            cells = []
            units = sum(1 for r in result.rows if r["model"] == n and r["branch"] == "sr")
            for k in keys:
                text = _mean_std(*result.summary[n]["downstream"][k], units, 4)
                cells.append(f"**{text}**" if top[k] == n else text)
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines += ["", f"{result.downstream or 'Downstream: tissue Dice against the segmentation of HR'}."]
        spread_units = units > 1  # the last model's count: every model has the same units
        lines[-1] = lines[-1][:-1] + (" (mean ± sample std over all (volume, draw) units)." if spread_units
                                      else " (one volume, one draw: the value alone).")
        if result.reference:
            n_vol = sum(1 for r in result.rows if r["branch"] == "labels")
            expert = ", ".join(f"{k.removeprefix('expert_dice_').upper()} {_mean_std(*v, n_vol, 4)}"
                               for k, v in result.reference.items())
            spread = "mean ± std over volumes" if n_vol > 1 else "one volume"
            lines += ["", f"Reference, how good the fixed model is at all: Dice of HR's segmentation against the expert "
                          f"labels ({result.reference_mapping}), {spread}: {expert}."]
    return "\n".join(lines)

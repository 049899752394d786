"""Score any mix of models on the same test volumes, degradation and metric protocol.

Every test volume is normalised (per volume, recorded), its foreground slices along one axis
are cropped to multiples of ``2·scale`` and degraded once with the volume's seeded mask, and
every model sees exactly those LR slices. Both branches are scored and named: ``sr`` (the final
SR output) against HR, ``rec`` (the reconstruction at the LR size) against CLEAN — never one
for the other. Metrics are computed per volume after undoing the normalisation.

With ``downstream=True`` (or ``"tissue"``) the ``sr`` rows also carry the tissue Dice of each
output against the segmentation of HR by a fixed intensity model fitted on that HR volume
(:mod:`iconet.evaluation.downstream`), on the same slices and in the same units as the metrics.
``downstream="tumour"`` does the same inside the BraTS whole-tumour label of each volume (its
``labels`` go through the same slice selection and crop as HR) and adds one ``labels`` row per
volume: HR's segmentation against the expert labels.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iconet.data.datasets import foreground_slices
from iconet.data.degrade import Degradation, crop_to_multiple
from iconet.data.normalize import NormalizeConfig, denormalize, normalize
from iconet.data.volume import Volume
from iconet.evaluation.metrics import FASTMRI, MetricProtocol, aggregate, evaluate_volume, format_mean_std
from iconet.models.base import SRModel

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
    """Per-volume rows, the summary per model and branch, and the protocol line."""

    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    protocol: str
    degradation: dict[str, Any] = field(default_factory=dict)
    downstream: str = ""  # the downstream model's line when the downstream check ran, else ""
    #: tumour check only: HR's segmentation against the expert labels, mean ± std over volumes
    reference: dict[str, Any] = field(default_factory=dict)
    reference_mapping: str = ""  # which intensity classes are compared with which labels


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


def _slices(volume: Volume, axis: int, multiple: int, norm_cfg: NormalizeConfig) -> tuple[torch.Tensor, Any, np.ndarray]:
    """Normalised foreground slices ``(S, H, W)`` along ``axis``, cropped to ``multiple``; the
    normalisation; the indices of the slices kept (for :func:`_take` on other arrays)."""
    data, norm = normalize(np.asarray(volume.data, dtype=np.float32), norm_cfg)
    keep = foreground_slices(data, axis, threshold=0.1, fraction=0.10)
    if keep.size == 0:
        raise ValueError(f"{volume.source or volume.name}: no foreground slice along axis {axis}")
    return _take(data.astype(np.float32, copy=False), axis, keep, multiple), norm, keep


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
) -> EvalResult:
    """Score every candidate on every volume; returns per-volume rows and mean ± std summaries.

    ``downstream=True`` (or ``"tissue"``) adds ``dice_csf``, ``dice_gm``, ``dice_wm`` and
    ``dice_mean`` to every ``sr`` row (and a ``"downstream"`` entry to each model's summary):
    the SR output segmented by a :class:`~iconet.evaluation.downstream.TissueModel` fitted on
    the volume's HR slices, against HR's own segmentation.

    ``downstream="tumour"`` adds ``tumour_dice_low``, ``_mid``, ``_high`` and ``_mean``
    instead: a :class:`~iconet.evaluation.downstream.TumourModel` fitted on HR inside the
    volume's BraTS whole-tumour label and applied there. It needs ``labels`` (volume name →
    label :class:`Volume` or array on the volume's grid, BraTS 2021 values 0/1/2/4) and
    ``contrast`` (``t1``, ``t1ce``, ``t2``, ``flair``). Each volume also gets one row with
    ``model="HR"``, ``branch="labels"``: HR's segmentation against the expert labels
    (``expert_dice_<region>``), summarised in :attr:`EvalResult.reference`.
    """
    if not volumes:
        raise ValueError("no test volumes")
    if not candidates:
        raise ValueError("no models to score")
    kind = _downstream_kind(downstream)
    if kind == "tumour":
        from iconet.evaluation.downstream import TUMOUR_REFERENCE

        if labels is None:
            raise ValueError("the tumour check needs BraTS tumour labels for every volume (labels=...)")
        if contrast is None or str(contrast).lower() not in TUMOUR_REFERENCE:
            raise ValueError(f"the tumour check needs the contrast (t1, t1ce, t2 or flair), got {contrast!r}")
        contrast = str(contrast).lower()
    protocol = MetricProtocol(**{**vars(protocol), "slice_axis": 0})  # stacks are (S, H, W)
    norm_cfg = normalization or NormalizeConfig()
    rows: list[dict[str, Any]] = []
    tissue_line = mapping = ""
    for vol in volumes:
        for cand in candidates:
            _check_fits(cand, vol, degradation)
        hr, norm, keep = _slices(vol, axis, degradation.multiple, norm_cfg)
        made = degradation.degrade(hr, vol.name)
        lr, clean = made["lr"], made["clean"]
        undo = lambda t: np.asarray(denormalize(t.double().numpy(), norm))  # noqa: E731
        hr_arr = undo(hr)
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

            expert = _label_slices(vol, labels.get(vol.name), axis, keep, degradation.multiple)  # type: ignore[union-attr]
            try:
                tumour = TumourModel.fit(hr_arr, expert, contrast)  # type: ignore[arg-type]
            except ValueError as err:
                raise ValueError(f"volume {vol.name!r}: {err}") from None
            roi = whole_tumour(expert)
            ref_labels = tumour.segment(hr_arr, roi)
            tissue_line, mapping = tumour.describe(), tumour.mapping()
            rows.append({"model": "HR", "volume": vol.name, "branch": "labels", "slices": int(hr.shape[0]),
                         **tumour.reference(hr_arr, expert)})
        for cand in candidates:
            srs, recs, seconds = [], [], 0.0
            for start in range(0, lr.shape[0], batch):
                x = lr[start : start + batch, None].contiguous(memory_format=torch.channels_last)
                tick = time.perf_counter()
                out = cand.model(x)
                seconds += time.perf_counter() - tick
                srs.append(out["sr"][-1][:, 0].float())
                same = [r for r in out.get("rec", []) if r.shape[-2:] == x.shape[-2:]]
                if same:
                    recs.append(same[0][:, 0].float())
            sr = torch.cat(srs)
            if sr.shape != hr.shape:
                raise ValueError(f"model {cand.name!r} on volume {vol.name!r}: the SR output has shape "
                                 f"{tuple(sr.shape)}, the HR slices {tuple(hr.shape)}")
            sr_arr = undo(sr)
            base = {"model": cand.name, "volume": vol.name, "slices": int(lr.shape[0]),
                    "ms_per_slice": 1000 * seconds / lr.shape[0]}
            sr_row = {**base, "branch": "sr", **evaluate_volume(sr_arr, hr_arr, protocol)}
            if kind == "tissue":
                sr_row.update(downstream_scores(sr_arr, tissue, ref_labels))
            elif kind == "tumour":
                sr_row.update(tumour_scores(sr_arr, tumour, roi, ref_labels))
            rows.append(sr_row)
            if recs:
                rows.append({**base, "branch": "rec", **evaluate_volume(undo(torch.cat(recs)), undo(clean), protocol)})
    summary: dict[str, dict[str, Any]] = {}
    from iconet.models.summary import count_flops, count_parameters

    for cand in candidates:
        h, w = lr.shape[-2:]
        mine_sr = [r for r in rows if r["model"] == cand.name and r["branch"] == "sr"]
        entry: dict[str, Any] = {
            "source": cand.source, "grid": cand.grid, "params": count_parameters(cand.model),
            "gflops_per_slice": count_flops(cand.model, (1, 1, h, w)) / 1e9,  # convs and matmuls
            "ms_per_slice": float(np.mean([r["ms_per_slice"] for r in mine_sr])),
        }
        for branch in ("sr", "rec"):
            mine = [{k: r[k] for k in ("psnr", "ssim", "nmse")} for r in rows if r["model"] == cand.name and r["branch"] == branch]
            if mine:
                entry[branch] = aggregate(mine)
        if kind:
            from iconet.evaluation.downstream import DICE_KEYS, TUMOUR_KEYS

            keys = DICE_KEYS if kind == "tissue" else TUMOUR_KEYS
            entry["downstream"] = aggregate([{k: r[k] for k in keys} for r in mine_sr])
        summary[cand.name] = entry
    params = {k: v for k, v in made["params"].items() if k != "seed"}
    reference: dict[str, Any] = {}
    if kind == "tumour":
        ref_rows = [{k: v for k, v in r.items() if k.startswith("expert_dice_")} for r in rows if r["branch"] == "labels"]
        reference = aggregate(ref_rows)
    return EvalResult(rows, summary, protocol.describe(), params, tissue_line, reference, mapping)


def markdown_table(result: EvalResult, scale: int) -> str:
    """Mean ± std per model and branch; the best SR PSNR/SSIM and REC PSNR/SSIM in bold."""
    names = list(result.summary)

    def best(branch: str, metric: str) -> str | None:
        vals = {n: result.summary[n][branch][metric][0] for n in names if branch in result.summary[n]}
        return max(vals, key=vals.get) if vals else None  # type: ignore[arg-type]

    bests = {(b, m): best(b, m) for b in ("sr", "rec") for m in ("psnr", "ssim")}
    lines = [f"| model (x{scale}) | params | GFLOPs/slice | ms/slice | SR PSNR (dB) | SR SSIM | REC PSNR (dB) | REC SSIM |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        e = result.summary[n]
        cells = []
        for b in ("sr", "rec"):
            for m, digits in (("psnr", 2), ("ssim", 4)):
                if b not in e:
                    cells.append("–")
                    continue
                text = format_mean_std(*e[b][m], digits)
                cells.append(f"**{text}**" if bests[(b, m)] == n else text)
        lines.append(f"| {n} | {e['params']:,} | {e['gflops_per_slice']:.2f} | {e['ms_per_slice']:.0f} | " + " | ".join(cells) + " |")
    deg = ", ".join(f"{k}={v}" for k, v in result.degradation.items() if v is not None)
    lines += ["", f"Protocol: {result.protocol}.", f"Degradation: {deg}. SR is scored against HR, REC against CLEAN."]
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
            for k in keys:
                text = format_mean_std(*result.summary[n]["downstream"][k], 4)
                cells.append(f"**{text}**" if top[k] == n else text)
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines += ["", f"{result.downstream or 'Downstream: tissue Dice against the segmentation of HR'}."]
        if result.reference:
            ref = ", ".join(f"{k.removeprefix('expert_dice_').upper()} {format_mean_std(*v, 4)}"
                            for k, v in result.reference.items())
            lines += ["", f"Reference, how good the fixed model is at all: Dice of HR's segmentation against the expert "
                          f"labels ({result.reference_mapping}), mean ± std over volumes: {ref}."]
    return "\n".join(lines)

"""The model card (``model_card.md``) of an exported model: what the weights are, what they
were trained on and how, their validation scores and protocol, and what they are not for.

:func:`render_card` builds the Markdown from data :func:`iconet.export.export_run` has already
read and checked; it reads no file and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from iconet.data.normalize import describe_reference
from iconet.domain import describe
from iconet.hub import MODEL_FORMAT

__all__ = ["render_card"]


_GRID_TEXT = {
    "kspace": (
        "k-space truncation with centred FFTs: LR pixel *m* sits on HR pixel *s·m* (the FFT centre "
        "is shared). Output geometry: the spacing of each upscaled axis becomes *d/s*, the "
        "direction cosines stay, and the **origin stays where it is** (first output voxel = first "
        "input voxel)."
    ),
    "centre": (
        "area / bicubic downsampling: the pixel *centres* of the field of view stay aligned. Output "
        "geometry: the spacing of each upscaled axis becomes *d/s*, the direction cosines stay, and "
        "the **origin moves by −(d − d/s)/2** along each upscaled axis (copying the input origin "
        "would shift the image)."
    ),
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _table(d: Mapping[str, Any]) -> list[str]:
    if not d:
        return ["(none recorded)"]
    rows = ["| key | value |", "|---|---|"]
    rows += [f"| `{k}` | {_fmt(v)} |" for k, v in d.items()]
    return rows


def _recipe(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe rows: the optimiser and schedule sections whole, then the keys of
    :class:`~iconet.engine.config.TrainConfig` a reader compares runs by (``run.steps``,
    ``data.batch_size``, ``data.patch_size``, ``run.precision``, ``run.seed``), and the models a
    run started from (``init``) or was distilled from (``distill.teacher``)."""
    optim = cfg.get("optim") or {}
    sched = cfg.get("schedule") or {}
    run = cfg.get("run") or {}
    data = cfg.get("data") or {}
    out: dict[str, Any] = {}
    if isinstance(optim, Mapping) and optim:
        out["optimiser"] = ", ".join(f"{k}={_fmt(v)}" for k, v in optim.items())
    if isinstance(sched, Mapping) and sched:
        out["schedule"] = ", ".join(f"{k}={_fmt(v)}" for k, v in sched.items())
    for label, section, key in (
        ("steps", run, "steps"),
        ("batch", data, "batch_size"),
        ("patch", data, "patch_size"),
        ("precision", run, "precision"),
        ("seed", run, "seed"),
    ):
        val = section.get(key) if isinstance(section, Mapping) else None
        if val is not None:
            out[label] = val
    if cfg.get("init"):
        out["initialised from"] = cfg["init"]
    distill = cfg.get("distill")
    if isinstance(distill, Mapping) and distill.get("teacher"):
        out["distilled from"] = f"{distill['teacher']} (its outputs as extra targets, weight {_fmt(distill.get('weight', 1.0))})"
    return out


def _hardware(cfg: Mapping[str, Any], ckpt: Mapping[str, Any]) -> Any:
    """What the run recorded (the checkpoint's ``hardware``), else what its config asked for
    (``run.device``), else ``None``."""
    if ckpt.get("hardware") is not None:
        return ckpt["hardware"]
    run = cfg.get("run") or {}
    if isinstance(run, Mapping) and run.get("device") is not None:
        return {"device": run["device"]}
    return None


def render_card(
    *,
    model_cfg: dict[str, Any],
    params: int,
    degradation: dict[str, Any],
    grid: str,
    data_export: dict[str, Any],
    norm_source: str,
    cfg: Mapping[str, Any],
    ckpt: Mapping[str, Any],
    checkpoint: str,
    step: int | None,
    weights: str,
    metrics: Mapping[str, Any],
    protocol: str | None,
    command: str | None,
    notes: list[str],
    domain: Mapping[str, Any],
) -> str:
    """The Markdown model card of an exported run.

    Args:
        model_cfg: the resolved ``model`` section (``name``, ``scale`` and every field).
        params: the model's parameter count.
        degradation: the resolved degradation (plain data) the LR inputs were made with.
        grid: its sampling grid (``kspace`` or ``centre``), which fixes the output geometry.
        data_export: the ``data`` section written to ``config.yaml`` (``normalization``).
        norm_source: where the normalisation came from, in words.
        cfg: the training config as plain data (``data``, ``optim``, ``schedule``, ``run``).
        ckpt: the checkpoint's entries other than weights and optimiser state (``hardware``).
        checkpoint: ``"best"`` or ``"last"``.
        step: the training step exported (``None``: not recorded).
        weights: ``"ema"`` or ``"model"``.
        metrics: the validation row of that checkpoint.
        protocol: the run's metric protocol line (``None``: not recorded).
        command: the training command (``command.txt``), if any.
        notes: what the export changed or fell back on, one line each.
        domain: the ``domain`` section (:mod:`iconet.domain`).
    """
    name = model_cfg["name"]
    scale = model_cfg.get("scale")
    effective: list[str] = []
    if degradation.get("kind") == "kspace" and degradation.get("mask") != "none":
        from iconet.data.degrade import DEFAULT_CENTRE_FRACTION

        cf = degradation.get("centre_fraction")
        if cf is None:
            cf = DEFAULT_CENTRE_FRACTION.get(str(degradation.get("mask")))
        effective = [f"Effective centre fraction (fully sampled k-space lines around DC): {_fmt(cf)}.", ""]
    L: list[str] = [f"# iconet model card: {name} x{scale}", ""]
    L += [
        f"Exported by `iconet export` from the **{checkpoint}** checkpoint, training step **{step}**, "
        f"{'EMA' if weights == 'ema' else 'raw (non-EMA)'} weights. Format `{MODEL_FORMAT}`; "
        f"load with `iconet.hub.load_model(FOLDER)` (safetensors, no pickle).",
        "",
        "## Model",
        "",
        f"- architecture: `{name}`, scale x{scale}, {model_cfg.get('in_channels', 1)} input channel(s)",
        f"- parameters: {params:,}",
        "",
        "Resolved configuration (`config.yaml`, section `model`):",
        "",
        *_table(model_cfg),
        "",
        "## Training data",
        "",
    ]
    data = cfg.get("data") or {}
    L += [f"Domain: **{describe(domain)}** (`config.yaml` `domain`); `iconet infer` refuses scans of "
          "another modality unless `--allow-domain-mismatch` is given.", ""]
    L += ["Data section of the training config:", "", *_table(data if isinstance(data, Mapping) else {}), ""]
    norm = data_export["normalization"]
    L += [
        f"Intensity normalisation ({norm_source}): "
        + ", ".join(f"{k}={_fmt(v)}" for k, v in norm.items())
        + ". Inputs must be normalised the same way and outputs un-normalised before scoring.",
        "",
        f"Which volume the statistic is taken on: {describe_reference(norm)}.",
        "",
        "## Degradation",
        "",
        f"The LR inputs were synthesised with the `{degradation.get('kind')}` degradation at x"
        f"{degradation.get('scale')}; the model is meant for inputs degraded this way:",
        "",
        *_table(degradation),
        "",
        *effective,
        "## Sampling grid and output geometry",
        "",
        f"Sampling grid: **`{grid}`** — {_GRID_TEXT.get(grid, 'unknown grid')}",
        "",
    ]
    if model_cfg.get("grid") not in (None, grid):
        L += [
            f"Note: the model config says grid `{model_cfg.get('grid')}` but the degradation it was "
            f"trained with samples on `{grid}`; output geometry follows the degradation.",
            "",
        ]
    recipe = _recipe(cfg)
    if step is not None:
        recipe["step exported"] = step
    L += ["## Training recipe", "", *_table(recipe), ""]
    if command:
        L += ["Training command (`command.txt`):", "", "```", command.strip(), "```", ""]
    hw = _hardware(cfg, ckpt)
    L += ["Hardware: " + (_fmt(hw) if hw is not None else "not recorded") + ".", ""]
    L += ["## Validation metrics", ""]
    L += [f"At step {step} ({checkpoint} checkpoint):", "", *_table(metrics), ""]
    L += [
        "Protocol: " + (protocol if protocol else "not recorded by the run — compare these numbers "
                         "with others only after checking how they were computed (docs/design.md §3)."),
        "",
        "## Intended use",
        "",
        f"- Research on {scale}x super-resolution of images degraded like the training data "
        f"(`{degradation.get('kind')}` degradation, `{grid}` grid), normalised as above.",
        "- Comparisons with other methods under the stated metric protocol.",
        "",
        "## Not for",
        "",
        "- Clinical diagnosis or any decision about a patient: the output is a model's estimate, "
        "and it can invent or remove structures.",
        "- Inputs degraded differently (another scale, mask, noise level, modality or contrast) "
        "without re-validation: the figures above do not transfer.",
        "- Images whose geometry is then handled without the sampling-grid rule above.",
        "",
    ]
    if notes:
        L += ["## Export notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(L)

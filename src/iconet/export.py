"""Export a training run as a self-contained model folder (safetensors + config + card + metrics).

A run folder (written by the training engine)::

    RUN/config.yaml  RUN/command.txt  RUN/metrics.jsonl
    RUN/checkpoints/last.pt  RUN/checkpoints/best.pt     # format "iconet-checkpoint/1"

becomes a model folder (format ``iconet-model/1``, read by :func:`iconet.hub.load_model`)::

    OUT/model.safetensors  OUT/config.yaml  OUT/model_card.md  OUT/metrics.json

Decisions:

* The **EMA** weights are exported (they are what validation scores in a run with EMA); when
  the checkpoint has ``ema: None`` the raw ``model`` weights are exported and the card and
  ``config.yaml`` (``weights: model``) say so.
* The checkpoint is read by the engine's reader (:func:`iconet.engine.checkpoint.load_checkpoint`,
  ``torch.load(weights_only=True)``); the *config inside the
  checkpoint* is the one used (it is the one the weights were trained with), not
  ``RUN/config.yaml``, which could have been edited after the run.
* The model section is written **resolved** (every field, defaults included), so a later change
  of a default cannot change an exported model.
* The card (``model_card.md``) is written by :func:`iconet.model_card.render_card` from what
  was read here; the normalisation and modality come from the ``data`` section read as the
  engine's :class:`~iconet.engine.config.DataConfig`.
* The folder is built in a hidden temporary folder next to ``OUT`` and renamed into place, so
  ``OUT`` is either complete or absent. ``overwrite=True`` only replaces a folder that is empty
  or is a previous export (holds ``model.safetensors``), and never the run folder itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from iconet.config import ConfigError, from_dict, load_yaml, to_dict
from iconet.data.writing import replacing_folder
from iconet.domain import training_domain
from iconet.engine.checkpoint import FORMAT, load_checkpoint
from iconet.hub import (
    CARD_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FORMAT,
    WEIGHTS_FILE,
    check_state_dict,
)
from iconet.model_card import render_card

#: format tag of a training checkpoint (written by the engine)
CHECKPOINT_FORMAT = FORMAT
CHECKPOINTS: tuple[str, ...] = ("best", "last")

#: prefixes that wrappers add to state-dict keys (DDP / AveragedModel, torch.compile)
_WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")


@dataclass
class _Export:
    """Everything written, gathered before anything is written."""

    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    card: str
    metrics: dict[str, Any]
    meta: dict[str, str]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading the run


def _read_checkpoint(run_dir: Path, checkpoint: str) -> tuple[Path, dict[str, Any]]:
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {list(CHECKPOINTS)}, got {checkpoint!r}")
    if not run_dir.exists():
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a run folder")
    ckdir = run_dir / "checkpoints"
    path = ckdir / f"{checkpoint}.pt"
    if not path.is_file():
        present = sorted(p.name for p in ckdir.glob("*.pt")) if ckdir.is_dir() else []
        listed = ", ".join(present) if present else "none"
        raise FileNotFoundError(f"{path}: checkpoint not found (checkpoints in {ckdir}: {listed})")
    return path, load_checkpoint(path)


def _strip_wrappers(state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Drop wrapper prefixes shared by *every* key and AveragedModel's ``n_averaged``."""
    out = dict(state)
    notes = []
    if "n_averaged" in out and not isinstance(out.get("n_averaged"), dict):
        out.pop("n_averaged")
        notes.append("dropped 'n_averaged' (AveragedModel counter)")
    changed = True
    while changed and out:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                notes.append(f"stripped key prefix '{prefix}'")
                changed = True
    return out, notes


def _normalisation(data: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The normalisation the run trained with, resolved, and where it came from: the
    recipe's ``data.normalization``, else the default of ``data.modality``
    (:func:`iconet.data.normalize.default_config`). ``data`` is the checkpoint's ``data``
    section, read as the engine's :class:`~iconet.engine.config.DataConfig`."""
    from iconet.data.normalize import default_config
    from iconet.engine.config import DataConfig

    typed = from_dict(DataConfig, dict(data), "data")
    modality = typed.modality
    if typed.normalization is not None:
        cfg = typed.normalization
        source = "as configured for training"
    else:
        cfg = default_config(modality)
        source = f"not set in the training config: the per-modality default ({modality or 'MR'})"
    out: dict[str, Any] = {"normalization": to_dict(cfg)}
    if modality is not None:
        out["modality"] = modality
    return out, source


def _validation_protocol(protocol: Any, data: Mapping[str, Any]) -> str | None:
    """The run's recorded protocol line with the slice axis the run validated on: the trainer
    scores stacks whose slices lie along their axis 0, whatever ``data.val_axis`` was."""
    if not isinstance(protocol, str) or not protocol:
        return None
    axis = data.get("val_axis") if isinstance(data, Mapping) else None
    if axis is None:
        axis = data.get("axis", 2) if isinstance(data, Mapping) else 2
    where = ("slices along all three axes (0, 1, 2) of each validation volume" if axis == "all"
             else f"slices along axis {axis} of each validation volume")
    return protocol.replace("slices along axis 0", where)


def _plain(x: Any) -> Any:
    """YAML/JSON-safe copy (tensors → numbers/lists, tuples → lists, other → str)."""
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    return str(x)


# --------------------------------------------------------------------------- build + write


def _prepare(run_dir: Path, checkpoint: str) -> _Export:
    from iconet.data.degrade import Degradation
    from iconet.models import build_model, make_config, saved_model_config
    from iconet.models.summary import count_parameters

    path, ckpt = _read_checkpoint(run_dir, checkpoint)
    cfg = ckpt.get("config")
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{path}: the checkpoint holds no 'config' mapping")
    if not isinstance(cfg.get("model"), Mapping):
        raise ValueError(f"{path}: the checkpoint config has no 'model' section")
    if not isinstance(cfg.get("degradation"), Mapping):
        raise ValueError(f"{path}: the checkpoint config has no 'degradation' section")
    notes: list[str] = []
    try:
        model_cfg = to_dict(make_config(saved_model_config(dict(cfg["model"]))))
        deg = from_dict(Degradation, dict(cfg["degradation"]), "degradation")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    if deg.scale != model_cfg["scale"]:
        raise ValueError(
            f"{path}: degradation scale {deg.scale} differs from model scale {model_cfg['scale']}"
        )
    grid = deg.grid
    try:
        data_export, norm_source = _normalisation(cfg.get("data") or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None

    ema = ckpt.get("ema")
    if ema is not None:
        raw_state, weights, what = ema, "ema", f"EMA weights of {path}"
    else:
        raw_state, weights, what = ckpt.get("model"), "model", f"model weights of {path}"
        notes.append("the checkpoint has no EMA weights (ema: None): the raw model weights were exported")
    if not isinstance(raw_state, Mapping):
        raise ValueError(f"{path}: no state dict under '{weights}'")
    state, strip_notes = _strip_wrappers(raw_state)
    notes += [f"{n} in the {weights} state" for n in strip_notes]
    model = build_model(model_cfg)
    check_state_dict(model, state, what)
    try:
        model.load_state_dict(state, strict=True)  # the real check (dtypes, custom hooks)
    except RuntimeError as err:
        raise ValueError(f"{what} do not load into the model: {str(err).strip().splitlines()[0]}") from None
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}

    step = ckpt.get("step")
    step = int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None
    all_metrics = _plain(ckpt.get("metrics") or {})
    chosen = all_metrics.get(checkpoint) if isinstance(all_metrics.get(checkpoint), dict) else None
    if chosen is None and checkpoint == "best" and isinstance(all_metrics.get("last"), dict):
        chosen = all_metrics["last"]
    chosen = dict(chosen or {})
    protocol = _validation_protocol(chosen.pop("protocol", None) or all_metrics.get("protocol"), cfg.get("data") or {})
    if not chosen:
        notes.append("the checkpoint records no validation metrics")

    command = None
    cmd_path = run_dir / "command.txt"
    if cmd_path.is_file():
        command = cmd_path.read_text(errors="replace")
    run_cfg = run_dir / "config.yaml"
    if not run_cfg.is_file():
        notes.append("the run folder has no config.yaml; the config stored in the checkpoint was used")
    else:
        try:
            on_disk = load_yaml(run_cfg)
        except ConfigError:
            on_disk = {}
        for section in ("model", "degradation", "data"):
            if section in on_disk and _plain(on_disk.get(section)) != _plain(cfg.get(section)):
                notes.append(
                    f"the '{section}' section of {run_cfg.name} differs from the config stored in the "
                    "checkpoint; the checkpoint's (the one the weights were trained with) was used"
                )

    export_cfg: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "model": model_cfg,
        "degradation": to_dict(deg),
        "data": data_export,
        "grid": grid,
        "domain": training_domain(cfg.get("data") or {}, model_cfg),
        "step": step,
        "weights": weights,
    }
    metrics_doc = {
        "format": MODEL_FORMAT,
        "checkpoint": checkpoint,
        "step": step,
        "weights": weights,
        "protocol": protocol,
        "validation": chosen,
        "all": all_metrics,
    }
    card = render_card(
        model_cfg=model_cfg,
        params=count_parameters(model),
        degradation=to_dict(deg),
        grid=grid,
        data_export=data_export,
        norm_source=norm_source,
        cfg=_plain(cfg),
        ckpt={k: v for k, v in ckpt.items() if k not in ("model", "ema", "optimizer", "scheduler", "scaler", "rng")},
        checkpoint=checkpoint,
        step=step,
        weights=weights,
        metrics=chosen,
        protocol=protocol,
        command=command,
        notes=notes,
        domain=export_cfg["domain"],
    )
    meta = {
        "format": MODEL_FORMAT,
        "name": str(model_cfg["name"]),
        "scale": str(model_cfg["scale"]),
        "grid": grid,
        "weights": weights,
        "step": "" if step is None else str(step),
    }
    return _Export(state=tensors, config=export_cfg, card=card, metrics=metrics_doc, meta=meta, notes=notes)


def _write(exp: _Export, folder: Path) -> None:
    from safetensors.torch import save_file

    save_file(exp.state, str(folder / WEIGHTS_FILE), metadata=exp.meta)
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(exp.config, sort_keys=False))
    (folder / CARD_FILE).write_text(exp.card)
    (folder / METRICS_FILE).write_text(json.dumps(exp.metrics, indent=2, sort_keys=False) + "\n")


def _check_target(out_dir: Path, run_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not overwrite:
        raise ValueError(f"{out_dir}: already exists; pass --overwrite (overwrite=True) to replace it")
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir}: exists and is not a folder; refusing to replace it")
    out_r, run_r = out_dir.resolve(), run_dir.resolve()
    if out_r == run_r or out_r in run_r.parents:
        raise ValueError(f"{out_dir}: is (or holds) the run folder {run_dir}; refusing to replace it")
    if any(out_dir.iterdir()) and not (out_dir / WEIGHTS_FILE).is_file():
        raise ValueError(
            f"{out_dir}: is not empty and not an exported model (no {WEIGHTS_FILE}); refusing to replace it"
        )


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str = "best",
    overwrite: bool = False,
    onnx: bool = False,
) -> Path:
    """Export checkpoint ``checkpoint`` of ``run_dir`` as a model folder ``out_dir``.

    Args:
        run_dir: a training run folder (``checkpoints/best.pt`` / ``last.pt`` inside).
        out_dir: the model folder to create.
        checkpoint: ``"best"`` (default) or ``"last"``.
        overwrite: replace an existing ``out_dir`` (only an empty folder or a previous export).
        onnx: also write ``model.onnx`` (:func:`iconet.onnx_export.write_onnx`); a model that
            cannot be exported leaves nothing written.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: no run folder, or no such checkpoint (the message lists those present).
        ValueError: wrong format tag, weights that do not fit the config (first mismatching key
            named), an existing ``out_dir`` without ``overwrite``.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check_target(out_dir, run_dir, overwrite)  # fail before the (slow) reading
    exp = _prepare(run_dir, checkpoint)

    # checked again before the swap: the target may have appeared meanwhile
    with replacing_folder(out_dir, check=lambda: _check_target(out_dir, run_dir, overwrite)) as tmp:
        _write(exp, tmp)
        if onnx:
            from iconet.onnx_export import write_onnx

            write_onnx(tmp)
    return out_dir


__all__ = ["CHECKPOINT_FORMAT", "export_run"]

"""Load an exported model: a folder written by :func:`iconet.export.export_run`, or a shipped name.

An exported model is a folder of four files (format ``iconet-model/1``)::

    model.safetensors   weights (safetensors: no pickle is ever read to load a model)
    config.yaml         model section, degradation, normalisation, sampling grid
    model_card.md       what the model is, how it was trained, what it scored, what not to use it for
    metrics.json        validation metrics of the exported step and their protocol

:func:`load_model` returns ``(model, info)``: the model built from ``config.yaml``, with the
weights loaded strictly, in ``eval()`` mode on ``device``; and a :class:`ModelInfo` holding the
config sections, the metrics and the path of the card. A tuple (rather than an attribute on the
module) keeps the ``nn.Module`` a plain registry model and makes the metadata visible in the
signature::

    model, info = load_model("models/iconet_x2")     # an exported folder
    model, info = load_model("iconet-t1-x2")          # a shipped model (src/iconet/zoo/<name>/)
    info.grid, info.degradation["kind"], info.metrics["val/sr_psnr"]

Names are looked up in the ``iconet.zoo`` package folder (``importlib.resources``); a name
that is not there is a ``FileNotFoundError`` listing the available names.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from iconet.config import ConfigError, load_yaml
from iconet.models.registry import saved_model_config

#: format tag of an exported model (config.yaml ``format`` and safetensors metadata ``format``)
MODEL_FORMAT = "iconet-model/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
CARD_FILE = "model_card.md"
METRICS_FILE = "metrics.json"
FILES: tuple[str, ...] = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, METRICS_FILE)

#: package whose sub-folders are the shipped models
ZOO_PACKAGE = "iconet.zoo"
#: shipped ICONet models are named ``<prefix><scale>`` (see :func:`shipped_name`)
SHIPPED_PREFIX = "iconet-t1-x"


@dataclass
class ModelInfo:
    """What an exported model says about itself (all plain data, from ``config.yaml`` and
    ``metrics.json``).

    Attributes:
        name: registry name of the architecture (``model.name``).
        scale: upscaling factor.
        grid: sampling grid of the training degradation, ``"kspace"`` or ``"centre"``
            (decides the output origin, docs/design.md §6).
        model: the resolved ``model`` section (every field, defaults included).
        degradation: the ``degradation`` section the model was trained with.
        data: the normalisation part of the training ``data`` section
            (``{"normalization": {...}}``, plus ``modality`` where the config had one).
        metrics: validation metrics of the exported step (e.g. ``"val/sr_psnr"``).
        protocol: the one-line metric protocol, or ``None`` when the run did not record one.
        step: training step of the exported weights.
        weights: ``"ema"`` or ``"model"`` (raw weights, when the run kept no EMA).
        path: the model folder.
        card: path of ``model_card.md`` (``None`` when the folder has none).
        source: what was passed to :func:`load_model`.
        extra: any other top-level entry of ``config.yaml``.
    """

    name: str
    scale: int
    grid: str
    model: dict[str, Any]
    degradation: dict[str, Any]
    data: dict[str, Any]
    metrics: dict[str, Any]
    protocol: str | None
    step: int | None
    weights: str
    path: Path
    card: Path | None
    source: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def normalization(self) -> dict[str, Any] | None:
        """The normalisation config the model was trained with (``data.normalization``)."""
        return self.data.get("normalization")

    @property
    def domain(self) -> dict[str, Any] | None:
        """What the model was trained on (``config.yaml`` ``domain``: modality, contrast,
        intensity convention; see :mod:`iconet.domain`), ``None`` for models exported without it."""
        d = self.extra.get("domain")
        return dict(d) if isinstance(d, dict) else None


# --------------------------------------------------------------------------- state checks


def check_state_dict(model: torch.nn.Module, state: Mapping[str, Any], what: str) -> None:
    """Raise ``ValueError`` unless ``state`` fits ``model`` exactly (same keys, same shapes).

    The message names the first mismatching key (in the model's key order): a missing key,
    an unexpected key, or a shape that differs.
    """
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise ValueError(f"{what} do not fit the config: missing key '{key}' ({len(expected)} expected)")
        got = state[key]
        if not isinstance(got, torch.Tensor):
            raise ValueError(f"{what} do not fit the config: '{key}' is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(ref.shape):
            raise ValueError(
                f"{what} do not fit the config: '{key}' has shape {tuple(got.shape)}, "
                f"the model expects {tuple(ref.shape)}"
            )
    for key in state:
        if key not in expected:
            raise ValueError(f"{what} do not fit the config: unexpected key '{key}'")


# --------------------------------------------------------------------------- zoo


def _zoo_root() -> Any | None:
    """The ``iconet.zoo`` folder as a Traversable, or ``None`` when the package is absent."""
    try:
        root = importlib.resources.files(ZOO_PACKAGE)
    except (ModuleNotFoundError, TypeError):
        return None
    try:
        return root if root.is_dir() else None
    except OSError:  # pragma: no cover - exotic loaders
        return None


def available_models() -> list[str]:
    """Names of the shipped models (sub-folders of ``iconet.zoo`` holding ``model.safetensors``)."""
    root = _zoo_root()
    if root is None:
        return []
    names = []
    for entry in root.iterdir():
        if entry.is_dir() and not entry.name.startswith(("_", ".")) and entry.joinpath(WEIGHTS_FILE).is_file():
            names.append(entry.name)
    return sorted(names)


def shipped_name(scale: int) -> str:
    """Name of the shipped ICONet model for ``scale`` (``"iconet-t1-x2"``; T1-weighted MRI)."""
    return f"{SHIPPED_PREFIX}{int(scale)}"


def shipped_model(scale: int, *, hint: str = "") -> str:
    """The name of the shipped ICONet model for ``scale``, if it is in the zoo.

    Raises:
        FileNotFoundError: no shipped model of that scale; the one-line message names the
            shipped models (or says there are none yet) and ends with ``hint`` (what to do
            instead, e.g. how to pass an exported model).
    """
    name = shipped_name(scale)
    names = available_models()
    if name in names:
        return name
    listed = ", ".join(names) if names else "none yet"
    raise FileNotFoundError(
        f"no shipped model for x{scale} ({name}); shipped models: {listed}" + (f". {hint}" if hint else "")
    )


def _zoo_folder(name: str) -> Path:
    names = available_models()
    if name not in names:
        listed = ", ".join(names) if names else "none yet"
        raise FileNotFoundError(
            f"no exported model folder or shipped model named '{name}'; shipped models: {listed}"
        )
    root = _zoo_root()
    entry = root.joinpath(name)  # type: ignore[union-attr]
    if isinstance(entry, Path):
        return entry
    # A zipped or otherwise virtual install: materialise the folder's files next to each other.
    import tempfile

    dest = Path(tempfile.mkdtemp(prefix=f"iconet-zoo-{name}-"))
    for fname in FILES:
        src = entry.joinpath(fname)
        if src.is_file():
            (dest / fname).write_bytes(src.read_bytes())
    return dest


def _resolve(source: str | os.PathLike[str]) -> Path:
    """A folder path for ``source``: an existing folder, else a shipped model name."""
    if isinstance(source, os.PathLike):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: model folder not found")
        return path
    if not isinstance(source, str) or not source:
        raise ValueError(f"a model source must be a folder path or a model name, got {source!r}")
    path = Path(source)
    if path.exists():
        return path
    looks_like_path = os.sep in source or "/" in source or source.startswith(".")
    if looks_like_path:
        raise FileNotFoundError(f"{source}: model folder not found")
    return _zoo_folder(source)


# --------------------------------------------------------------------------- loading


def read_info(source: str | os.PathLike[str]) -> ModelInfo:
    """Read ``config.yaml`` and ``metrics.json`` of an exported model without touching weights."""
    folder = _resolve(source)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a model folder (expected a folder with {', '.join(FILES)})")
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE} (not an exported iconet model)")
    cfg = load_yaml(cfg_path)
    fmt = cfg.get("format")
    if fmt != MODEL_FORMAT:
        raise ValueError(f"{cfg_path}: format {fmt!r} is not {MODEL_FORMAT!r}")
    model = cfg.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise ConfigError(f"{cfg_path}: 'model' must be a mapping with a 'name'")
    metrics: dict[str, Any] = {}
    protocol = None
    step = cfg.get("step")
    weights = str(cfg.get("weights", "ema"))
    mpath = folder / METRICS_FILE
    if mpath.is_file():
        try:
            mdata = json.loads(mpath.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{mpath}: not valid JSON ({err})") from None
        metrics = dict(mdata.get("validation") or {})
        protocol = mdata.get("protocol")
        step = mdata.get("step", step)
    known = {"format", "model", "degradation", "data", "grid", "step", "weights"}
    card = folder / CARD_FILE
    return ModelInfo(
        name=model["name"],
        scale=int(model.get("scale", 2)),
        grid=str(cfg.get("grid") or model.get("grid", "kspace")),
        model=saved_model_config(model),  # keys it predates read as they were then
        degradation=dict(cfg.get("degradation") or {}),
        data=dict(cfg.get("data") or {}),
        metrics=metrics,
        protocol=protocol,
        step=None if step is None else int(step),
        weights=weights,
        path=folder,
        card=card if card.is_file() else None,
        source=str(source),
        extra={k: v for k, v in cfg.items() if k not in known},
    )


def load_model(source: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> tuple[Any, ModelInfo]:
    """Load an exported model; returns ``(model, info)``.

    Args:
        source: an exported model folder (``str`` or ``Path``), or the name of a shipped model
            (a sub-folder of ``src/iconet/zoo/``). A ``str`` that is an existing path is a
            folder; one without a path separator that is not, a name.
        device: where to put the model (the weights are read straight onto it).

    Returns:
        ``(model, info)``: the :class:`~iconet.models.base.SRModel` built from ``config.yaml``
        with the weights loaded strictly, in ``eval()`` mode; and its :class:`ModelInfo`.

    Raises:
        FileNotFoundError: no such folder or name (the message lists the shipped names), or a
            file of the folder is missing.
        ValueError: wrong format tag, or weights that do not fit the config (the first
            mismatching key is named).

    Only ``safetensors.torch.load_file`` reads weights: no pickle is ever loaded.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from iconet.models import build_model

    info = read_info(source)
    wpath = info.path / WEIGHTS_FILE
    if not wpath.is_file():
        raise FileNotFoundError(f"{info.path}: no {WEIGHTS_FILE}")
    dev = torch.device(device)
    try:
        with safe_open(str(wpath), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(wpath), device=str(dev))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{wpath}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{wpath}: format {meta.get('format')!r} is not {MODEL_FORMAT!r}")
    model = build_model(info.model)
    check_state_dict(model, state, f"weights in {wpath}")
    model.load_state_dict(state, strict=True)
    model.to(dev).eval()
    return model, info


__all__ = [
    "MODEL_FORMAT",
    "ModelInfo",
    "available_models",
    "check_state_dict",
    "load_model",
    "read_info",
    "shipped_model",
    "shipped_name",
]

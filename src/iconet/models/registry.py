"""Model registry: one name → (config dataclass, module class); ``build_model`` for all.

Models register themselves with :func:`register`. :data:`MODULES` says which module defines
each name, and only that module is imported when the name is used, so a broken or slow module
can never stop ``build_model`` for the others. :func:`build_model` accepts a config
dataclass, a mapping with a ``name`` key (e.g. the ``model:`` section of a YAML recipe) or a
bare name, so every peer in a comparison is built the same way.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, TypeVar

from iconet.config import ConfigError, from_dict
from iconet.models.base import ModelConfig, SRModel

_REGISTRY: dict[str, tuple[type[ModelConfig], type[SRModel]]] = {}

#: registry name → module that registers it (imported on first use of the name)
MODULES: dict[str, str] = {
    "iconet": "iconet.models.iconet",
    "edsr": "iconet.models.edsr",
    "t2net": "iconet.models.t2net",
    "swinir": "iconet.models.swinir",
    "bicubic": "iconet.models.interpolation",
    "zerofill": "iconet.models.interpolation",
}
M = TypeVar("M", bound=type[SRModel])


def register(name: str, config_cls: type[ModelConfig]) -> Callable[[M], M]:
    """Class decorator: make ``name`` buildable with ``config_cls``."""

    def deco(cls: M) -> M:
        if name in _REGISTRY:
            raise RuntimeError(f"model name {name!r} registered twice")
        _REGISTRY[name] = (config_cls, cls)
        return cls

    return deco


def model_names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(set(MODULES) | set(_REGISTRY))


def _lookup(name: str) -> tuple[type[ModelConfig], type[SRModel]]:
    if name not in _REGISTRY and name in MODULES:
        importlib.import_module(MODULES[name])
    if name not in _REGISTRY:
        names = model_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown model '{name}'{hint}; available: {', '.join(names)}")
    return _REGISTRY[name]


def make_config(spec: ModelConfig | dict[str, Any] | str, **overrides: Any) -> ModelConfig:
    """Turn a name, a mapping with ``name`` or a config into a validated config dataclass."""
    if isinstance(spec, ModelConfig):
        data: dict[str, Any] = {k: v for k, v in vars(spec).items()}
    elif isinstance(spec, str):
        data = {"name": spec}
    elif isinstance(spec, dict):
        data = dict(spec)
    else:
        raise ConfigError(f"a model spec must be a name, a mapping or a ModelConfig, got {type(spec).__name__}")
    data.update(overrides)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("model config needs a 'name' (one of: " + ", ".join(model_names()) + ")")
    cfg_cls, _ = _lookup(name)
    return from_dict(cfg_cls, data, "model")


def saved_model_config(data: dict[str, Any]) -> dict[str, Any]:
    """A model section as an earlier iconet saved it, with the keys it predates filled in.

    ``data`` is the ``model`` mapping of an exported ``config.yaml`` or of a checkpoint. A key
    of the model's ``SAVED_BEFORE`` that ``data`` lacks gets the value it had when the model
    was saved (e.g. ICONet's ``ffn_activation``: ``"gelu"``); everything else is returned as
    is, and a mapping without a known ``name`` unchanged (building it reports the problem).
    """
    name = data.get("name")
    if not isinstance(name, str) or name not in model_names():
        return dict(data)
    cfg_cls, _ = _lookup(name)
    return {**cfg_cls.SAVED_BEFORE, **data}


def build_model(spec: ModelConfig | dict[str, Any] | str, **overrides: Any) -> SRModel:
    """Build a model from a config, a mapping with ``name``, or a name (defaults otherwise).

    Example::

        build_model("iconet", scale=4)
        build_model({"name": "edsr", "scale": 2, "in_channels": 1})
    """
    cfg = make_config(spec, **overrides)
    _, cls = _lookup(cfg.name)
    return cls(cfg)

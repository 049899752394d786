"""Model registry: one name → (config dataclass, module class); ``build_model`` for all.

Models register themselves with :func:`register`; :func:`build_model` accepts a config
dataclass, a mapping with a ``name`` key (e.g. the ``model:`` section of a YAML recipe) or a
bare name, so every peer in a comparison is built the same way.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, TypeVar

from iconet.config import ConfigError, from_dict
from iconet.models.base import ModelConfig, SRModel

_REGISTRY: dict[str, tuple[type[ModelConfig], type[SRModel]]] = {}
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
    _import_all()
    return sorted(_REGISTRY)


def _lookup(name: str) -> tuple[type[ModelConfig], type[SRModel]]:
    _import_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown model '{name}'{hint}; available: {', '.join(sorted(_REGISTRY))}")
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


def build_model(spec: ModelConfig | dict[str, Any] | str, **overrides: Any) -> SRModel:
    """Build a model from a config, a mapping with ``name``, or a name (defaults otherwise).

    Example::

        build_model("iconet", scale=4)
        build_model({"name": "edsr", "scale": 2, "in_channels": 1})
    """
    cfg = make_config(spec, **overrides)
    _, cls = _lookup(cfg.name)
    return cls(cfg)


def _import_all() -> None:
    # Importing the modules runs their @register decorators; kept lazy to avoid import cycles.
    from iconet.models import edsr, iconet, interpolation, swinir, t2net  # noqa: F401

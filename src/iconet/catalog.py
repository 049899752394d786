"""What models there are, and what one of them is: the text behind ``iconet model``.

* :func:`catalog` — the architectures of the registry (:mod:`iconet.models.registry`) and the
  shipped models (``src/iconet/zoo/``) with their scale, training domain and size.
* :func:`describe_model` — one model, named the way every command names one:

  - a trained model: a shipped name (``iconet-t1-x2``) or an exported folder (``iconet
    export``), read with :func:`iconet.hub.load_model`. Its summary is the cost (parameters,
    FLOPs at an input size, output shapes) plus what the model's folder says: sampling grid,
    training domain, normalisation, exported step, model card and validation metrics;
  - an architecture: a registry name (``iconet``, ``edsr``, ...) or the ``model:`` section of a
    YAML recipe, with ``key=value`` overrides: the cost only (untrained weights).

Both summaries are plain data with a ``format()`` method; the command line only prints them.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iconet.config import ConfigError, apply_overrides, load_yaml
from iconet.models.summary import ModelSummary, summarize

if TYPE_CHECKING:
    from iconet.hub import ModelInfo

#: validation metrics shown as a trained model's headline: (key in metrics.json, label, unit, digits)
HEADLINE_METRICS: tuple[tuple[str, str, str, int], ...] = (
    ("val/sr_psnr", "PSNR", " dB", 2),
    ("val/sr_ssim", "SSIM", "", 4),
)


# --------------------------------------------------------------------------- naming


def _is_recipe(spec: str) -> bool:
    path = Path(spec)
    return path.suffix in (".yaml", ".yml") or path.is_file()


def architecture_spec(spec: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """The model mapping named by ``spec``: a registry name, or a YAML recipe (its ``model:``
    section, or the whole file when it has none), with dotted ``key=value`` overrides applied."""
    if _is_recipe(spec):
        path = Path(spec)
        data = load_yaml(path)
        data = data.get("model", data)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: 'model' must be a mapping")
    else:
        data = {"name": spec}
    return apply_overrides(data, list(overrides or []))


def _unknown(spec: str) -> ConfigError:
    from iconet.hub import available_models
    from iconet.models import model_names

    archs, shipped = model_names(), available_models()
    close = difflib.get_close_matches(spec, [*archs, *shipped], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(
        f"unknown model '{spec}'{hint}: not a shipped model ({', '.join(shipped) or 'none'}), an "
        f"architecture ({', '.join(archs)}), an exported model folder or a YAML recipe"
    )


def is_trained_model(spec: str) -> bool:
    """Whether ``spec`` names a trained model: an existing folder or a shipped name."""
    from iconet.hub import available_models

    return Path(spec).is_dir() or (not _is_recipe(spec) and spec in available_models())


# --------------------------------------------------------------------------- one model


def domain_text(domain: dict[str, Any] | None) -> str:
    """``"MR T1 (magnitude): <trained_on>"`` for a ``domain`` section, ``"unknown"`` without one."""
    if not domain:
        return "unknown"
    from iconet.domain import describe

    text = describe(domain)
    trained_on = domain.get("trained_on")
    return f"{text}: {trained_on}" if trained_on else text


def normalization_text(norm: dict[str, Any] | None) -> str:
    """``"percentile (percentile=99.5); statistic of the LR volume (reference: lr), ..."``: the
    method, the fields that are set, and which volume the statistic is taken on."""
    from iconet.data.normalize import describe_reference

    if not norm:
        return "unknown"
    rest = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in norm.items() if k not in ("method", "reference") and v is not None)
    return f"{norm.get('method', '?')}" + (f" ({rest})" if rest else "") + f"; {describe_reference(norm, short=True)}"


def headline_text(metrics: dict[str, Any], step: int | None) -> str | None:
    """``"PSNR 23.83 ± 1.00 dB, SSIM 0.8104 ± 0.0507 (mean ± std over 3 volumes)"``; with one
    volume the values alone and ``n = 1``; ``None`` when the model has no such metrics."""
    n = metrics.get("val/volumes")
    n = None if n is None else int(n)
    parts = []
    for key, label, unit, digits in HEADLINE_METRICS:
        if key not in metrics:
            continue
        value, std = float(metrics[key]), metrics.get(f"{key}_std")
        spread = f" ± {float(std):.{digits}f}" if std is not None and (n is None or n > 1) else ""
        parts.append(f"{label} {value:.{digits}f}{spread}{unit}")
    if not parts:
        return None
    if n is None:
        over = "validation set"
    elif n == 1:
        over = "n = 1 volume"
    else:
        over = f"mean ± std over {n} volumes"
    at = f", step {step}" if step is not None else ""
    return f"{', '.join(parts)} ({over}{at})"


@dataclass
class TrainedModelSummary:
    """What ``iconet model NAME_OR_DIR`` prints for a shipped or exported model: its cost and
    what its folder says (:class:`~iconet.hub.ModelInfo`: grid, domain, normalisation, step,
    weights, card, metrics)."""

    source: str
    shipped: bool
    cost: ModelSummary
    info: ModelInfo

    def format(self) -> str:
        c, info = self.cost, self.info
        kind = "shipped model" if self.shipped else "exported model"
        weights = "EMA weights" if info.weights == "ema" else f"{info.weights} weights"
        lines = [
            f"model        {self.source}  ({kind}, {info.path})",
            f"architecture {c.name}  (scale x{c.scale}, {c.in_channels} channel(s))",
            f"grid         {info.grid}",
            f"domain       {domain_text(info.domain)}",
            f"normalise    {normalization_text(info.normalization)}",
            f"exported     step {info.step if info.step is not None else 'unknown'}, {weights}",
            f"card         {info.card if info.card is not None else '(none)'}",
        ]
        headline = headline_text(info.metrics, info.step)
        if headline:
            lines.append(f"validation   {headline}")
        return "\n".join([*lines, *c.cost_lines()])


def describe_trained(source: str, size: tuple[int, int] = (128, 128)) -> TrainedModelSummary:
    """Summary of a shipped name or an exported folder (weights loaded on the CPU)."""
    from iconet.hub import available_models, load_model

    model, info = load_model(source)
    return TrainedModelSummary(
        source=str(source),
        shipped=not Path(source).exists() and str(source) in available_models(),
        cost=summarize(model, size),
        info=info,
    )


def describe_model(spec: str, overrides: list[str] | None = None,
                   size: tuple[int, int] = (128, 128)) -> TrainedModelSummary | ModelSummary:
    """The summary of whatever ``spec`` names (see the module docstring).

    Raises:
        ConfigError: an unknown name (the message lists the shipped models and architectures),
            overrides given for a trained model, or a bad override/recipe.
        ValueError: ``size`` not positive.
    """
    from iconet.models import build_model, model_names

    if min(size) < 1:
        raise ValueError(f"size must be positive, got {size[0]} {size[1]}")
    if is_trained_model(spec):
        if overrides:
            raise ConfigError(f"'{spec}' is a trained model, its configuration is fixed; key=value "
                              f"overrides apply to an architecture or a recipe (e.g. iconet model iconet "
                              f"{' '.join(overrides)})")
        return describe_trained(spec, size)
    if not _is_recipe(spec) and spec not in model_names():
        raise _unknown(spec)
    return summarize(build_model(architecture_spec(spec, overrides)).eval(), size)


# --------------------------------------------------------------------------- the list


def architecture_blurb(name: str) -> str:
    """First clause of the docstring of the module that registers ``name`` (read, not imported)."""
    from iconet.models.registry import MODULES

    spec = importlib.util.find_spec(MODULES[name]) if name in MODULES else None
    if spec is None or spec.origin is None:
        return ""
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""
    text = " ".join(doc.split("\n\n")[0].split()).replace("``", "")
    for stop in (" (", ". "):
        text = text.split(stop)[0]
    return text.rstrip(".")


@dataclass
class ArchitectureEntry:
    name: str
    parameters: int  # at the default configuration
    blurb: str


@dataclass
class ShippedEntry:
    name: str
    architecture: str
    scale: int
    domain: dict[str, Any] | None
    parameters: int


@dataclass
class Catalog:
    """What ``iconet model --list`` prints."""

    architectures: list[ArchitectureEntry]
    shipped: list[ShippedEntry]

    def format(self) -> str:
        from iconet.domain import describe

        lines = ["architectures (iconet model NAME [key=value ...]; parameters at the defaults):"]
        w = max((len(a.name) for a in self.architectures), default=0)
        for a in self.architectures:
            lines.append(f"  {a.name:<{w}s}  {a.parameters:>11,}  {a.blurb}")
        lines.append("")
        if not self.shipped:
            lines.append("shipped models: none")
            return "\n".join(lines)
        lines.append("shipped models (iconet infer --model NAME, iconet.super_resolve(x, NAME)):")
        rows = [("name", "architecture", "scale", "domain", "parameters")]
        for s in self.shipped:
            rows.append((s.name, s.architecture, f"x{s.scale}", describe(s.domain) if s.domain else "unknown",
                         f"{s.parameters:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            cells = [f"{c:<{widths[i]}s}" if i < 4 else f"{c:>{widths[i]}s}" for i, c in enumerate(r)]
            lines.append("  " + "  ".join(cells))
        return "\n".join(lines)


def catalog() -> Catalog:
    """The registry's architectures (parameters at their default configuration) and the shipped
    models (architecture, scale, domain and parameters, from their ``config.yaml``)."""
    from iconet.hub import available_models, read_info
    from iconet.models import build_model, model_names
    from iconet.models.summary import count_parameters

    archs = [ArchitectureEntry(n, count_parameters(build_model(n)), architecture_blurb(n)) for n in model_names()]
    shipped = []
    for name in available_models():
        info = read_info(name)
        shipped.append(ShippedEntry(name, info.name, info.scale, info.domain,
                                    count_parameters(build_model(info.model))))
    return Catalog(archs, shipped)


__all__ = [
    "ArchitectureEntry",
    "Catalog",
    "ShippedEntry",
    "TrainedModelSummary",
    "architecture_spec",
    "catalog",
    "describe_model",
    "describe_trained",
    "is_trained_model",
]

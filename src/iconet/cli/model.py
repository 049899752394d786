"""``iconet model CONFIG_OR_NAME``: print a model's size, FLOPs and outputs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from iconet.config import ConfigError, apply_overrides, load_yaml


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "model",
        help="print a model summary (parameters, FLOPs, output shapes)",
        description="Print parameters, FLOPs (torch.utils.flop_counter) and output shapes of a "
        "registered model or of the model section of a YAML recipe.",
    )
    p.add_argument("spec", nargs="?", default="iconet", metavar="CONFIG_OR_NAME",
                   help="a model name (iconet, edsr, t2net, swinir, bicubic, zerofill) or a YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. scale=4 width=64")
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                   help="LR input size for the FLOP count (default: 128 128)")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")
    p.set_defaults(func=run)


def model_spec(spec: str, overrides: list[str]) -> dict[str, Any]:
    """The model mapping named by ``spec``: a registry name, or a YAML file (its ``model:`` section)."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        data = load_yaml(path)
        data = data.get("model", data)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: 'model' must be a mapping")
    else:
        data = {"name": spec}
    return apply_overrides(data, overrides)


def run(args: argparse.Namespace) -> int:
    from iconet.models import build_model, model_names
    from iconet.models.summary import summarize

    if args.list:
        print("\n".join(model_names()))
        return 0
    if min(args.size) < 1:
        raise ConfigError(f"--size must be positive, got {args.size[0]} {args.size[1]}")
    model = build_model(model_spec(args.spec, args.overrides)).eval()
    print(summarize(model, tuple(args.size)).format())
    return 0

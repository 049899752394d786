"""``iconet export RUN_DIR --out MODEL_DIR``: turn a training run into a shippable model folder."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a training run as a model folder (safetensors, config, model card, metrics)",
        description="Export the EMA weights of a run's best (or last) checkpoint as a model folder: "
        "model.safetensors, config.yaml, model_card.md and metrics.json, loadable with "
        "iconet.hub.load_model.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="training run folder (with checkpoints/best.pt, last.pt)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to create")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint to export (default: best)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace MODEL_DIR if it exists (only an empty folder or a previous export)")
    p.set_defaults(func=run)


def summary_lines(model: Any, info: Any) -> list[str]:
    """Three lines: the model, the weights exported, the validation figures with their protocol."""
    from iconet.models.summary import count_parameters

    lines = [
        f"model        {info.name} x{info.scale}, {count_parameters(model):,} parameters, grid {info.grid}",
        f"weights      {'EMA' if info.weights == 'ema' else 'raw (no EMA in the run)'} at step {info.step}",
    ]
    shown = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.metrics.items()][:4]
    text = ", ".join(shown) if shown else "none recorded"
    lines.append(f"validation   {text}" + (f"  [{info.protocol}]" if info.protocol else "  [protocol not recorded]"))
    return lines


def run(args: argparse.Namespace) -> int:
    from iconet.export import export_run
    from iconet.hub import load_model

    out = export_run(args.run_dir, args.out, checkpoint=args.checkpoint, overwrite=args.overwrite)
    model, info = load_model(out)  # proves the folder loads the way users will load it
    print(f"wrote {out} ({args.checkpoint} checkpoint of {args.run_dir})")
    print("\n".join(summary_lines(model, info)))
    return 0

"""``iconet export RUN_DIR --out MODEL_DIR [--onnx]``: turn a training run into a shippable model
folder; ``iconet export MODEL --onnx [--out DIR]``: add the ONNX graph to an exported or shipped
model (:mod:`iconet.onnx_export`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a training run as a model folder (safetensors, config, model card, metrics)",
        description="Export the EMA weights of a run's best (or last) checkpoint as a model folder: "
        "model.safetensors, config.yaml, model_card.md and metrics.json, loadable with "
        "iconet.hub.load_model. With --onnx, also model.onnx: the SR path as an ONNX graph "
        "(dynamic batch and slice size) for iconet infer --runtime onnx; given an exported model "
        "folder, --onnx adds the graph to it (or to a copy in --out); a shipped model name needs --out.",
    )
    p.add_argument("run_dir", metavar="RUN_OR_MODEL",
                   help="training run folder (with checkpoints/best.pt, last.pt), or with --onnx an "
                        "exported model folder or shipped model name")
    p.add_argument("--out", default=None, metavar="MODEL_DIR",
                   help="model folder to create (needed for a run and for a shipped model)")
    p.add_argument("--onnx", action="store_true",
                   help="also write model.onnx (needs the onnx extra: pip install iconet[onnx])")
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
    from iconet.cli import UserError
    from iconet.export import export_run
    from iconet.hub import load_model

    if is_model(args.run_dir):
        if not args.onnx:
            raise UserError(f"{args.run_dir}: is an exported model, not a training run; "
                            "--onnx adds its ONNX graph")
        return run_onnx(args)
    if args.out is None:
        raise UserError(f"{args.run_dir}: exporting a training run needs --out MODEL_DIR")
    out = export_run(args.run_dir, args.out, checkpoint=args.checkpoint, overwrite=args.overwrite,
                     onnx=args.onnx)
    model, info = load_model(out)  # proves the folder loads the way users will load it
    print(f"wrote {out} ({args.checkpoint} checkpoint of {args.run_dir})" + (" with model.onnx" if args.onnx else ""))
    print("\n".join(summary_lines(model, info)))
    return 0


def is_model(source: str) -> bool:
    """An exported model folder (holds model.safetensors) or a shipped model name."""
    from pathlib import Path

    from iconet.hub import WEIGHTS_FILE, available_models

    path = Path(source)
    return (path / WEIGHTS_FILE).is_file() or (not path.exists() and source in available_models())


def run_onnx(args: argparse.Namespace) -> int:
    """Write model.onnx for an exported or shipped model (into it, or into a copy at --out)."""
    from iconet.onnx_export import export_onnx

    path = export_onnx(args.run_dir, args.out, overwrite=args.overwrite)
    print(f"wrote {path} (ONNX graph of {args.run_dir}'s SR path: input lr (B, 1, h, w), output sr)")
    return 0

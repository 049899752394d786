"""``iconet model NAME_OR_DIR``: what a model is (trained or not), and ``--list`` of them all.

The summaries come from :mod:`iconet.catalog`; this module only parses and prints.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "model",
        help="summarise a model (shipped, exported or architecture); --list lists them",
        description="Summarise a model. A shipped model name (iconet-t1-x2) or an exported model "
        "folder: architecture, scale, sampling grid, training domain, normalisation, exported "
        "step, model card, validation metrics, parameters and FLOPs. An architecture (a registry "
        "name such as iconet or edsr, or the model section of a YAML recipe, with key=value "
        "overrides): parameters, FLOPs (torch.utils.flop_counter) and output shapes. --list "
        "lists the architectures and the shipped models.",
    )
    p.add_argument("spec", nargs="?", default="iconet", metavar="NAME_OR_DIR",
                   help="a shipped model name, an exported model folder, an architecture name "
                        "(iconet, edsr, t2net, swinir, bicubic, zerofill) or a YAML recipe "
                        "(default: iconet)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides of an architecture or recipe, e.g. scale=4 width=64")
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                   help="LR input size for the FLOP count (default: 128 128)")
    p.add_argument("--list", action="store_true",
                   help="list the architectures and the shipped models (scale, domain, parameters) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from iconet.catalog import catalog, describe_model

    if args.list:
        print(catalog().format())
        return 0
    print(describe_model(args.spec, args.overrides, tuple(args.size)).format())
    return 0

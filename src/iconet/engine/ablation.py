"""Ablations as the paper runs them: one recipe, a set of model switches, one table.

An ablation spec (``configs/ablation/*.yaml``) names a training recipe and the variants::

    base: ../zoo_t1_x4.yaml          # relative to the spec file
    variants:
      full: []                       # the reference (required)
      fusion_add: [model.fusion=add] # dotted key=value overrides of the recipe

Every variant is the base recipe + its overrides + the user's overrides, trained into
``OUT/<variant>``. Only ``model.*`` keys may differ between a variant and ``full``: data,
degradation, loss, optimiser, schedule and run budget are shared, so the deltas measure the
switch and nothing else (:func:`variant_configs` refuses anything else, naming the key).

:func:`ablation_rows` reads each run's validation row of the checkpoint used (the row ``best.pt``
was kept for: the best row of ``metrics.jsonl`` by the run's ``run.best_metric``) and its
parameter count, from the run's logs alone (``config.yaml``, ``metrics.jsonl``, ``train.jsonl``);
:func:`ablation_table` renders the Markdown table with the deltas against ``full``.
``iconet ablate`` (:mod:`iconet.cli.ablate`) trains and tabulates.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iconet.config import ConfigError, load_yaml, to_dict
from iconet.engine.config import TrainConfig, load_train_config

#: the reference variant every spec must have
REFERENCE = "full"
#: validation keys reported by :func:`ablation_rows` (with their ``_std`` where the run has it)
METRIC_KEYS = ("val/sr_psnr", "val/sr_ssim", "val/rec_psnr")
#: run keys that say how a run is executed or logged, not what it computes; a run folder whose
#: saved config differs from the asked one only in these is still the same run
RUN_HOW_KEYS = ("run.out_dir", "run.overwrite", "run.progress", "run.threads", "run.log_every", "run.ckpt_every")

_SPEC_KEYS = ("base", "variants")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class AblationSpec:
    """A parsed ablation spec.

    Attributes:
        base: the training recipe (resolved against the spec file's folder).
        variants: variant name → dotted ``key=value`` overrides, in file order, ``full`` first.
        path: the spec file (for messages).
    """

    base: Path
    variants: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None


def load_ablation(path: str | Path) -> AblationSpec:
    """Read and check an ablation spec (see the module docstring).

    Raises:
        ConfigError: one line naming the file and the problem (unknown top-level key, missing
            or unreadable ``base``, no ``variants`` / no ``full`` variant, a variant name that is
            not a folder name, an override that is not ``key=value``).
    """
    path = Path(path)
    data = load_yaml(path)
    unknown = [k for k in data if k not in _SPEC_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r} (an ablation spec has: base, variants)")
    base = data.get("base")
    if not base or not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' is missing: give the training recipe, relative to this file "
                          "(e.g. base: ../zoo_t1_x4.yaml)")
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"{path}: base recipe {base} not found (looked for {base_path})")
    raw = data.get("variants")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: 'variants' must be a mapping of name → [key=value, ...] "
                          f"with a '{REFERENCE}' entry")
    if REFERENCE not in raw:
        raise ConfigError(f"{path}: no '{REFERENCE}' variant: add '{REFERENCE}: []' (the reference of the deltas)")
    variants: dict[str, list[str]] = {}
    for name in [REFERENCE] + [n for n in raw if n != REFERENCE]:
        items = raw[name]
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{path}: variant name {name!r} must be a folder name (letters, digits, _ . -)")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise ConfigError(f"{path}: variant {name!r} must be a list of key=value overrides, got {items!r}")
        for item in items:
            if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
                raise ConfigError(f"{path}: variant {name!r}: override {item!r} must look like key=value "
                                  "(e.g. model.fusion=add)")
        variants[name] = [str(x) for x in items]
    return AblationSpec(base=base_path, variants=variants, path=path)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys → leaf values of nested mappings."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: data}


def config_differences(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two plain configs (sorted; ``ignore`` skipped)."""
    fa, fb = _flat(a), _flat(b)
    return sorted(k for k in set(fa) | set(fb)
                  if k not in ignore and fa.get(k, "<absent>") != fb.get(k, "<absent>"))


def variant_configs(spec: AblationSpec, overrides: list[str] | None, out_root: str | Path) -> dict[str, TrainConfig]:
    """The training config of every variant: base + variant overrides + ``overrides``, with
    ``run.out_dir = out_root/<variant>``.

    Raises:
        ConfigError: a variant's config is invalid (named), ``overrides`` sets ``run.out_dir``
            (use the output root), or a variant differs from ``full`` in a key outside
            ``model.*`` (variant and key named).
    """
    overrides = list(overrides or [])
    where = spec.path or spec.base
    for item in overrides:
        if item.split("=", 1)[0].strip() == "run.out_dir":
            raise ConfigError(f"{item}: an ablation puts each variant in OUT/<variant>; choose OUT with --out")
    out_root = Path(out_root)
    cfgs: dict[str, TrainConfig] = {}
    for name, items in spec.variants.items():
        try:
            cfgs[name] = load_train_config(spec.base, [*items, *overrides, f"run.out_dir={out_root / name}"])
        except ConfigError as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"{where}: variant {name!r}: {msg}") from None
    ref = to_dict(cfgs[REFERENCE])
    for name, cfg in cfgs.items():
        mine = to_dict(cfg)
        diff = [k for k in config_differences(ref, mine, ("run.out_dir",)) if not k.startswith("model.")]
        if diff:
            k = diff[0]
            fr, fm = _flat(ref), _flat(mine)
            raise ConfigError(
                f"{where}: variant {name!r} changes {k} ({fr.get(k)!r} in {REFERENCE}, {fm.get(k)!r} here); "
                "an ablation variant may only change model.* keys (same data, degradation, loss, optim, "
                "schedule and run budget as full)"
            )
    return cfgs


# ----------------------------------------------------------------------------- reading runs


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The validation rows of ``metrics.jsonl``, one per step (a step validated twice, e.g.
    after a resume from an earlier checkpoint, keeps its latest row), in step order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (the run has not validated yet)")
    by_step: dict[int, dict[str, Any]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}: line {i} is not JSON") from None
        if isinstance(row, dict) and "step" in row:
            by_step[int(row["step"])] = row
    return [by_step[s] for s in sorted(by_step)]


def best_row(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The row the trainer kept ``best.pt`` for: the first row with the best ``metric``."""
    best = None
    for row in rows:
        v = row.get(metric)
        if not isinstance(v, (int, float)) or math.isnan(v):
            continue
        if best is None or (v > best[metric] if mode == "max" else v < best[metric]):
            best = row
    return best


def _parameters(model_cfg: dict[str, Any]) -> int:
    from iconet.models import build_model
    from iconet.models.summary import count_parameters

    return count_parameters(build_model(model_cfg))


def ablation_rows(runs: dict[str, str | Path], metric_keys: tuple[str, ...] = METRIC_KEYS) -> list[dict[str, Any]]:
    """One row per run: the validation row of its best checkpoint and its size.

    Args:
        runs: variant name → run folder; ``full`` (when present) is the reference of the deltas.
        metric_keys: validation keys to report (a key the run lacks, e.g. ``val/rec_psnr`` of a
            variant without reconstruction branch, is ``None``).

    Returns:
        ``[{"variant", "run", "parameters", "step", "steps_done", "steps", "best_metric",
        "best_mode", "volumes", "protocol", "metrics": {key: value, key_std: value},
        "delta": {key: value − full's}}]`` in the order of ``runs``; ``delta`` is ``None`` per
        key where either side lacks it, and empty without a ``full`` run.

    Raises:
        FileNotFoundError / ConfigError: a run folder lacks ``config.yaml``, ``metrics.jsonl``
            or a validation row with its ``run.best_metric``.
    """
    import yaml

    from iconet.engine.config import train_config_from_dict

    rows: list[dict[str, Any]] = []
    for name, run in runs.items():
        run = Path(run)
        if not run.is_dir():
            raise FileNotFoundError(f"{run}: run folder of variant {name!r} not found")
        # the run's own record (config.yaml + metrics.jsonl + train.jsonl), not its checkpoints:
        # a table can be rebuilt where only the logs were kept (e.g. runs fetched from a GPU box)
        cfg_path = run / "config.yaml"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cfg_path}: resolved config of variant {name!r} not found")
        cfg = train_config_from_dict(yaml.safe_load(cfg_path.read_text()))
        logged = read_metrics(run / "train.jsonl") if (run / "train.jsonl").is_file() else []
        metric, mode = cfg.run.best_metric, cfg.run.resolved_best_mode
        row = best_row(read_metrics(run / "metrics.jsonl"), metric, mode)
        if row is None:
            raise ConfigError(f"{run / 'metrics.jsonl'}: no validation row with {metric} (run.val_every=0?)")
        metrics: dict[str, float | None] = {}
        for key in metric_keys:
            metrics[key] = row.get(key)
            if f"{key}_std" in row:
                metrics[f"{key}_std"] = row[f"{key}_std"]
        rows.append({
            "variant": name,
            "run": str(run),
            "parameters": _parameters(cfg.model),
            "step": int(row["step"]),
            "steps_done": max([int(r["step"]) for r in logged] + [int(row["step"])]),
            "steps": int(cfg.run.steps),
            "best_metric": metric,
            "best_mode": mode,
            "volumes": row.get("val/volumes"),
            "protocol": row.get("protocol"),
            "metrics": metrics,
            "delta": {},
        })
    ref = next((r for r in rows if r["variant"] == REFERENCE), None)
    if ref is not None:
        for r in rows:
            r["delta"] = {k: (None if r["metrics"].get(k) is None or ref["metrics"].get(k) is None
                              else r["metrics"][k] - ref["metrics"][k]) for k in metric_keys}
    return rows


# ----------------------------------------------------------------------------- the table


def _num(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _delta(r: dict[str, Any], key: str, digits: int) -> str:
    if r["variant"] == REFERENCE:
        return f"{0:.{digits}f}"
    d = r["delta"].get(key)
    return "—" if d is None else f"{d:+.{digits}f}"


def ablation_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown ablation table of :func:`ablation_rows`, with the protocol line under it.

    Columns: variant | parameters | SR PSNR | Δ PSNR vs full | SR SSIM | Δ SSIM | REC PSNR
    ("—" without reconstruction branch) | step (of the best checkpoint; unfinished runs say so).
    """
    head = ["variant", "parameters", "SR PSNR (dB)", "Δ PSNR vs full", "SR SSIM", "Δ SSIM", "REC PSNR (dB)", "step"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        m = r["metrics"]
        step = str(r["step"])
        if r["steps_done"] < r["steps"]:
            step += f" (unfinished: {r['steps_done']}/{r['steps']})"
        cells = [r["variant"], f"{r['parameters']:,}", _num(m.get("val/sr_psnr"), 2), _delta(r, "val/sr_psnr", 2),
                 _num(m.get("val/sr_ssim"), 4), _delta(r, "val/sr_ssim", 4), _num(m.get("val/rec_psnr"), 2), step]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(protocol_line(rows))
    return "\n".join(lines) + "\n"


def protocol_line(rows: list[dict[str, Any]]) -> str:
    """One line: which checkpoint, which budget, how many volumes, the metric protocol."""
    if not rows:
        return "No runs."
    metrics = sorted({f"{r['best_metric']} ({r['best_mode']})" for r in rows})
    steps = sorted({r["steps"] for r in rows})
    vols = sorted({int(r["volumes"]) for r in rows if isinstance(r.get("volumes"), (int, float))})
    protos = list(dict.fromkeys(str(r["protocol"]) for r in rows if r.get("protocol")))
    parts = [f"Best checkpoint of each run by {', '.join(metrics)}",
             f"run.steps = {', '.join(map(str, steps))}"]
    if vols:
        parts.append(f"{', '.join(map(str, vols))} validation volume(s)")
    parts.append(f"Δ = variant − {REFERENCE}" if any(r["variant"] == REFERENCE for r in rows)
                 else f"no '{REFERENCE}' run: no deltas")
    line = "Protocol: " + "; ".join(parts) + "."
    if len(protos) == 1:
        line += f" Metrics: {protos[0]}."
    elif protos:
        line += " Metrics: the runs used different protocols: " + " | ".join(protos) + "."
    return line

r"""The quality benchmark: ICONet and its peers trained alike on S1, scored on Colin27.

Every model of a group trains with the same recipe (data: the S1 training part, all three
planes; degradation; batch; patch; steps; seed); only the ``model`` section differs. Groups:

    kspace_x2, kspace_x4     k-space truncation + Cartesian mask (docs/design.md §2), the default
    bicubic_x2, bicubic_x4   plain bicubic downsampling (the common SR setting)
    ablation_x4              the variants of configs/ablation/ablation_t1_x4.yaml
                             (their "full" is kspace_x4's iconet; scored on S1's held-out slab)

Steps (one command each, from a fresh clone after ``pip install -e .``):

    iconet data fetch-samples --dest data && python scripts/make_s1_holdout.py
    python benchmarks/quality.py train [--groups ...] [--steps-x2 N --steps-x4 N | --budget SECONDS]
    python benchmarks/quality.py score [--groups ...] [--draws 8]   # iconet eval on data/colin27_T1.nii.gz
    python benchmarks/quality.py table                     # benchmarks/results/quality.md
    python benchmarks/quality.py figure --groups kspace_x2 kspace_x4   # docs/img/colin27_<group>.png
    python benchmarks/quality.py input                     # the LR input vs CLEAN (the bar for REC)

A second seed of some runs, in a root of its own (``--only`` takes GROUP/MODEL names in
``train``, ``export`` and ``score``; ``table --results`` keeps it apart from the main tables):

    python benchmarks/quality.py train --groups kspace_x4 --only kspace_x4/iconet kspace_x4/edsr --steps-x4 1250 \
        --device cpu --threads 2 --set run.seed=1 --root runs/seed1
    python benchmarks/quality.py export --groups kspace_x4 --only kspace_x4/iconet kspace_x4/edsr --root runs/seed1
    python benchmarks/quality.py score --groups kspace_x4 --only kspace_x4/iconet kspace_x4/edsr --root runs/seed1
    python benchmarks/quality.py table --groups kspace_x4 --root runs/seed1 --results benchmarks/results/seed1

``score --also PATH ...`` scores more exported models beside the runs (another root's, another
seed's: each is named by its folder's name), and ``table --pairs MODEL:OVER ...`` adds their
paired differences.

``score`` scores every model on K seeded mask draws of Colin27 (``--draws``, default 8) with the
statistic of normalisation taken on the LR (``--normalize-on hr`` for the older convention);
``table`` adds, under each group's table, every ICONet's paired difference to every trained peer
on the same draws with its 95 % interval: a lead is claimed only where it excludes 0.

``train`` runs every run of the chosen groups *at the same time* (``--jobs``, default all; one
GPU is shared, each process gets ``--threads`` CPU threads). With ``--budget`` it first trains
every run for ``--probe-steps`` steps (throwaway runs under ``ROOT/probe``), measures each run's
step rate while all run together, and gives each scale the most steps that the slowest run of
that scale finishes in the budget (rounded down to a multiple of 250; ``--equal-time``: every run
the steps it finishes itself, so a peer faster than ICONet trains for as long, not as many steps);
the step counts are printed and recorded in ``ROOT/plan.json``. Run folders: ``ROOT/<group>/<model>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
RECIPES = {2: REPO / "configs/zoo_t1_x2.yaml", 4: REPO / "configs/zoo_t1_x4.yaml"}
ABLATION_SPEC = REPO / "configs/ablation/ablation_t1_x4.yaml"
COLIN27 = Path("data/colin27_T1.nii.gz")

#: the peers' model sections (everything else comes from the recipe)
PEER_MODELS: dict[str, dict[str, Any]] = {
    "iconet_small": {"name": "iconet"},  # the package's default ICONet config (width 40, 2 groups; ReLU since the H200 rows, which are GELU)
    # the package-default size with the shipped recipe's Fourier branch and clamp: an ICONet at EDSR-baseline's speed (issue 6)
    "iconet_fast": {"name": "iconet", "spectral_branch": "rec", "nonnegative": True},
    # iconet_fast distilled from the shipped model of its scale (issue 21): that model's outputs as
    # extra targets of every step (distill.teacher, PEER_TRAINING below), same data, steps and seed
    "iconet_fast_kd": {"name": "iconet", "spectral_branch": "rec", "nonnegative": True},
    # iconet_fast_kd's size with a block whose time is dense convolutions and matmuls (issue 21): no
    # large-kernel depth-wise attention, no layer norm before the mixing; at EDSR-baseline's speed in
    # fp32 and bf16 at 256² on this CPU where iconet_fast is not (benchmarks/speed_budget.py --block lean);
    # 0.3 dB below iconet_fast_kd with two training seeds, not kept (benchmarks/results/lean_x2)
    "iconet_lean_kd": {"name": "iconet", "spectral_branch": "rec", "nonnegative": True,
                       "spatial_branch": False, "mix_norm": False},
    "edsr": {"name": "edsr"},
    # all pairs are still searched; bigger query chunks only mean fewer, larger GPU kernels
    "t2net": {"name": "t2net", "attn_chunk": 2**26},
}
#: where a peer's section differs by scale: (model, scale) → keys laid over PEER_MODELS[model].
#: At 4x the package-default size runs at 0.41x EDSR's speed (its second stage works at twice the
#: LR size), so the fast 4x model is narrower and shallower: width 32, groups [3, 1], 1 block each.
PEER_SCALE_OVERRIDES: dict[tuple[str, int], dict[str, Any]] = {
    ("iconet_fast", 4): {"width": 32, "groups_per_stage": [3, 1], "blocks_per_group": 1},
    ("iconet_fast_kd", 4): {"width": 32, "groups_per_stage": [3, 1], "blocks_per_group": 1},
}
#: (model, reference) pairs whose paired difference is reported too: a lever's run against the
#: run without it, and against the shipped models scored beside them (``score --with-shipped``);
#: a run name is the group's model (``iconet_fast``), a shipped name stands for itself
LEVER_PAIRS: list[tuple[str, str]] = [
    ("iconet_fast_kd", "iconet_fast"), ("iconet_fast_kd", "iconet-t1-x2-fast"), ("iconet-t1-x2-fast", "iconet_fast"),
    ("iconet-t1-x2", "iconet_fast_kd"), ("iconet_lean_kd", "iconet_fast_kd"), ("iconet_lean_kd", "iconet-t1-x2-fast"),
]
#: the shipped models ``score --with-shipped`` adds, per scale
SHIPPED = {2: ["iconet-t1-x2", "iconet-t1-x2-fast"], 4: ["iconet-t1-x4"]}
#: recipe overrides of a run beyond its model section ({scale} is the run's scale)
PEER_TRAINING: dict[str, list[str]] = {
    "iconet_fast_kd": ["distill.teacher=iconet-t1-x{scale}"],
    "iconet_lean_kd": ["distill.teacher=iconet-t1-x{scale}"],
}
GROUPS: dict[str, dict[str, Any]] = {
    "kspace_x2": {"scale": 2, "kind": "kspace", "models": ["iconet", "iconet_fast", "iconet_fast_kd", "iconet_lean_kd",
                                                           "iconet_small", "edsr", "t2net"]},
    "kspace_x4": {"scale": 4, "kind": "kspace", "models": ["iconet", "iconet_fast", "iconet_fast_kd", "iconet_small", "edsr",
                                                           "t2net"]},
    "bicubic_x2": {"scale": 2, "kind": "bicubic", "models": ["iconet", "edsr"]},
    "bicubic_x4": {"scale": 4, "kind": "bicubic", "models": ["iconet", "edsr"]},
    "ablation_x4": {"scale": 4, "kind": "kspace", "models": []},  # filled from ABLATION_SPEC
}


def ablation_variants() -> dict[str, list[str]]:
    """Variant name → overrides, from the ablation spec (``full`` excluded: it is kspace_x4/iconet)."""
    from iconet.engine.ablation import load_ablation

    return {k: list(v) for k, v in load_ablation(ABLATION_SPEC).variants.items() if k != "full"}


def run_specs(groups: list[str], root: Path) -> list[dict[str, Any]]:
    """One dict per run: group, model, scale, out dir and the recipe overrides."""
    specs = []
    for g in groups:
        grp = GROUPS[g]
        scale = grp["scale"]
        base = [f"degradation.kind={grp['kind']}", "model.grid=centre"] if grp["kind"] != "kspace" else []
        if g == "ablation_x4":
            for name, overrides in ablation_variants().items():
                specs.append({"group": g, "model": name, "scale": scale, "overrides": overrides, "peer": None})
            continue
        for m in grp["models"]:
            peer = PEER_MODELS.get(m)
            if peer is not None:
                peer = {**peer, **PEER_SCALE_OVERRIDES.get((m, scale), {})}
            training = [o.format(scale=scale) for o in PEER_TRAINING.get(m, [])]
            specs.append({"group": g, "model": m, "scale": scale, "overrides": base + training, "peer": peer})
    for s in specs:
        s["out"] = str(root / s["group"] / s["model"])
    return specs


def selected(specs: list[dict[str, Any]], only: list[str]) -> list[dict[str, Any]]:
    """The runs named ``GROUP/MODEL`` in ``only`` (all when it is empty)."""
    return [s for s in specs if not only or f"{s['group']}/{s['model']}" in only]


def resolved_recipe(recipe: Path, model: dict[str, Any] | None, overrides: list[str]) -> Any:
    """A training recipe with its ``model`` section replaced (``None``: kept) and dotted
    overrides applied, validated as a :class:`~iconet.engine.config.TrainConfig`."""
    from iconet.config import apply_overrides
    from iconet.engine.config import train_config_from_dict

    data = yaml.safe_load(recipe.read_text())
    if model is not None:
        data["model"] = dict(model)
    return train_config_from_dict(apply_overrides(data, overrides))


def save_recipe(cfg: Any, path: Path) -> Path:
    """Write a resolved config as the YAML recipe ``iconet train`` runs."""
    from iconet.config import to_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def write_recipe(spec: dict[str, Any], steps: int, path: Path, extra: list[str]) -> Path:
    """The run's full recipe: the zoo recipe, the peer's model section, overrides, steps."""
    model = {**spec["peer"], "scale": spec["scale"]} if spec["peer"] is not None else None
    overrides = spec["overrides"] + [f"run.steps={steps}", f"run.out_dir={spec['out']}"] + extra
    return save_recipe(resolved_recipe(RECIPES[spec["scale"]], model, overrides), path)


def launch(specs: list[dict[str, Any]], steps: dict[Any, int], root: Path, tag: str, extra: list[str],
           threads: int, deadline: float | None) -> dict[str, int]:
    """Train every run at once; returns run → exit status (-9: stopped at the deadline).
    ``steps`` maps a run (``GROUP/MODEL``) or, for the runs it does not name, a scale to steps."""
    procs: dict[str, tuple[subprocess.Popen, Any]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    recipes = {  # every recipe is written (and so checked) before the first run starts
        f"{s['group']}/{s['model']}": write_recipe(
            s, steps.get(f"{s['group']}/{s['model']}", steps.get(s["scale"], 0)),
            root / "recipes" / tag / f"{s['group']}_{s['model']}.yaml",
            extra + [f"run.threads={threads}", "run.progress=false"])
        for s in specs
    }
    for s in specs:
        key = f"{s['group']}/{s['model']}"
        recipe = recipes[key]
        log = open(logs / f"{tag}_{s['group']}_{s['model']}.log", "w")
        cmd = [sys.executable, "-m", "iconet", "train", str(recipe)]
        procs[key] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True), log)
    status: dict[str, int] = {}
    while len(status) < len(procs):
        for key, (p, log) in procs.items():
            if key not in status and p.poll() is not None:
                status[key] = p.returncode
                log.close()
                print(f"[{time.strftime('%H:%M:%S')}] {tag} {key}: exit {p.returncode}", flush=True)
        if deadline is not None and time.time() > deadline:
            for key, (p, log) in procs.items():
                if key not in status:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    status[key] = -9
                    log.close()
                    print(f"{tag} {key}: stopped at the deadline", flush=True)
        time.sleep(1)
    return status


def step_rate(run_dir: Path) -> float:
    """Steps per second between the first and last logged rows of ``train.jsonl``."""
    rows = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "time" in r]
    if len(rows) < 2:
        raise RuntimeError(f"{run_dir}: too few timed log rows to measure a step rate")
    return (rows[-1]["step"] - rows[0]["step"]) / (rows[-1]["time"] - rows[0]["time"])


def cmd_train(args: argparse.Namespace) -> int:
    root: Path = args.root
    specs = selected(run_specs(args.groups, root), args.only)
    plan: dict[str, Any] = {"groups": args.groups, "runs": [f"{s['group']}/{s['model']}" for s in specs]}
    # a root trained in several invocations (e.g. one run at a time) keeps every plan
    old = json.loads((root / "plan.json").read_text()) if (root / "plan.json").exists() else None
    if old is not None:
        plan["earlier"] = old.pop("earlier", []) + [old]
    t0 = time.time()
    extra = [f"run.device={args.device}", *args.set]
    if args.budget:
        probe_root = root / "probe"
        shutil.rmtree(probe_root, ignore_errors=True)
        pspecs = [{**s, "out": str(probe_root / s["group"] / s["model"])} for s in specs]
        n = args.probe_steps
        probe = launch(pspecs, {2: n, 4: n}, probe_root, "probe",
                       extra + ["run.val_every=0", "run.ckpt_every=0", f"run.log_every={max(n // 4, 1)}"],
                       args.threads, deadline=t0 + args.probe_timeout)
        rates = {}
        for s in pspecs:
            key = f"{s['group']}/{s['model']}"
            if probe[key] == 0:
                rates[key] = step_rate(Path(s["out"]))
        failed = [k for k, v in probe.items() if v != 0]
        if failed:
            print(f"probe: excluded (failed): {failed}", flush=True)
            specs = [s for s in specs if f"{s['group']}/{s['model']}" not in failed]
        left = args.budget - (time.time() - t0) - args.reserve
        steps = {}
        for scale in (2, 4):
            r = [rates[f"{s['group']}/{s['model']}"] for s in specs if s["scale"] == scale]
            if r:
                steps[scale] = max(250, int(min(r) * left * args.efficiency) // 250 * 250)
        if args.equal_time:  # every run the steps it finishes in the budget: a faster peer trains longer
            steps = {f"{s['group']}/{s['model']}": max(250, int(rates[f"{s['group']}/{s['model']}"] * left
                                                              * args.efficiency) // 250 * 250) for s in specs}
        plan.update({"probe_rates": rates, "probe_failed": failed, "seconds_for_training": left})
    else:
        steps = {2: args.steps_x2, 4: args.steps_x4}
    plan["steps"] = steps
    print(f"plan: steps {steps} for {len(specs)} runs", flush=True)
    (root).mkdir(parents=True, exist_ok=True)
    (root / "plan.json").write_text(json.dumps(plan, indent=1))
    deadline = t0 + args.budget + args.grace if args.budget else None
    status = launch(specs, steps, root, "train", extra, args.threads, deadline)
    plan["status"] = status
    plan["wall_seconds"] = round(time.time() - t0, 1)
    (root / "plan.json").write_text(json.dumps(plan, indent=1))
    return 0 if all(v == 0 for v in status.values()) else 1


def cmd_export(args: argparse.Namespace) -> int:
    """Export every finished run (best EMA checkpoint) to ``ROOT/exports/<group>_<model>``, in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = []
    specs = [s for s in selected(run_specs(args.groups, args.root), args.only) if s["group"] != "ablation_x4"]
    for s in specs:
        if not (Path(s["out"]) / "checkpoints" / "best.pt").exists():
            print(f"{s['out']}: no best.pt, skipped", flush=True)
            continue
        out = args.root / "exports" / f"{s['group']}_{s['model']}"
        jobs.append([sys.executable, "-m", "iconet", "export", s["out"], "--out", str(out), "--overwrite"])
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        codes = list(pool.map(lambda c: subprocess.run(c, capture_output=True, text=True), jobs))
    for cmd, r in zip(jobs, codes):
        print(f"{cmd[4]}: exit {r.returncode} {r.stderr.strip()[-300:]}", flush=True)
    return 1 if any(r.returncode for r in codes) or len(jobs) < len(specs) else 0


def cmd_score(args: argparse.Namespace) -> int:
    """``iconet eval`` per group on Colin27 (axis 2), peers bicubic and zero-filled included."""
    bad = 0
    for g in args.groups:
        if g == "ablation_x4":
            continue
        grp = GROUPS[g]
        models = ["bicubic", "zerofill"]
        for m in grp["models"]:
            if args.only and f"{g}/{m}" not in args.only:
                continue
            exported = args.root / "exports" / f"{g}_{m}"
            models.append(str(exported if exported.exists() else args.root / g / m))
        if args.with_shipped:
            models += SHIPPED[grp["scale"]]
        models += [str(m) for m in args.also]
        out = args.root / f"eval_{g}"
        cmd = [sys.executable, "-m", "iconet", "eval", str(args.data), "--models", *models, "--scale",
               str(grp["scale"]), "--degradation", grp["kind"], "--axis", "2", "--downstream", "--draws", str(args.draws),
               *(["--normalize-on", args.normalize_on] if args.normalize_on else []), "--out", str(out), "--overwrite"]
        print(" ".join(cmd), flush=True)
        bad += subprocess.run(cmd).returncode != 0
    return 1 if bad else 0


def cmd_table(args: argparse.Namespace) -> int:
    """Gather the groups' eval summaries into benchmarks/results/quality.md / .json."""
    lines = ["# Quality benchmark: trained on S1, scored on Colin27", ""]
    plan = json.loads((args.root / "plan.json").read_text()) if (args.root / "plan.json").exists() else {}
    gathered: dict[str, Any] = {"plan": plan, "groups": {}}
    for g in args.groups:
        if g == "ablation_x4":
            continue
        path = args.root / f"eval_{g}" / "table.md"
        if not path.exists():
            print(f"{path}: missing, group {g} left out", flush=True)
            continue
        lines += [f"## {g}", "", path.read_text().strip(), ""]
        gathered["groups"][g] = json.loads((args.root / f"eval_{g}" / "summary.json").read_text())
        leads = peer_leads(g, args.root / f"eval_{g}" / "per_volume.csv", args.pairs)
        if leads:
            gathered["groups"][g]["leads"] = leads
            lines += [f"Paired differences on the same draws ({g}): each ICONet over each trained peer, and the pairs of "
                      "LEVER_PAIRS (a lever's run over the run without it and over the shipped models):", "",
                      "| model | over | Δ PSNR (dB) [95 %] | Δ SSIM [95 %] | claim (PSNR / SSIM) |", "|---|---|---:|---:|---|"]
            lines += [f"| {x['model']} | {x['over']} | {x['psnr_text']} | {x['ssim_text']} | "
                      f"{x['psnr']['claim']} / {x['ssim']['claim']} |" for x in leads]
            lines.append("")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "quality.md").write_text("\n".join(lines) + "\n")
    (args.results / "quality.json").write_text(json.dumps(gathered, indent=1))
    print("\n".join(lines))
    return 0


def peer_leads(group: str, per_volume: Path, extra: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """Paired differences of every ICONet run of ``group`` to every trained peer (EDSR-baseline,
    T2Net-style), of each lever's run to the run without it (:data:`LEVER_PAIRS`) and of the
    ``extra`` (model, over) pairs, on the same volumes and draws, read back from the group's
    ``per_volume.csv``."""
    import csv

    from iconet.evaluation.runner import paired_from_rows
    from iconet.evaluation.stats import Interval, format_interval

    if not per_volume.exists():
        return []
    rows = list(csv.DictReader(open(per_volume)))
    names = {r["model"] for r in rows}
    out = []
    pairs = [(mine, peer) for mine in ("iconet", "iconet_fast", "iconet_fast_kd", "iconet_lean_kd", "iconet_small")
             for peer in ("edsr", "t2net")] + LEVER_PAIRS + list(extra)
    for mine, peer in pairs:
        a, b = (m if m in names else f"{group}_{m}" for m in (mine, peer))
        if a in names and b in names:
            x = {"model": a, "over": b, **{m: paired_from_rows(rows, a, b, m) for m in ("psnr", "ssim")}}
            for m, digits in (("psnr", 2), ("ssim", 4)):
                iv = Interval(**{k: x[m][k] for k in ("mean", "low", "high", "n_volumes", "n_draws", "method")})
                x[f"{m}_text"] = format_interval(iv, digits, signed=True)
            out.append(x)
    return out


def cmd_figure(args: argparse.Namespace) -> int:
    """One Colin27 slice per group: LR | bicubic | EDSR | T2Net-style | ICONet | HR, insets, error maps.

    The LR is the evaluation's own (the same foreground stack, degraded with the volume's
    seeded mask, then one slice picked), so the panels show what the table scored.
    """
    import numpy as np
    import torch

    from iconet.data.degrade import Degradation
    from iconet.data.io import read_volume
    from iconet.data.normalize import NormalizeConfig
    from iconet.evaluation.figures import comparison_figure
    from iconet.evaluation.metrics import FASTMRI, evaluate_volume
    from iconet.evaluation.runner import _slices, load_candidate

    vol = read_volume(args.data)
    names = {"bicubic": "bicubic", "edsr": "EDSR-baseline", "t2net": "T2Net-style", "iconet": "ICONet"}
    for g in args.groups:
        grp = GROUPS[g]
        deg = Degradation(kind=grp["kind"], scale=grp["scale"])
        hr, _norm = _slices(vol, 2, deg.multiple, NormalizeConfig())[:2]
        made = deg.degrade(hr, vol.name)
        k = hr.shape[0] // 2
        x = made["lr"][k : k + 1, None]
        outputs, scores = {}, {}
        for key, label in names.items():
            spec = key if key == "bicubic" else str(args.root / "exports" / f"{g}_{key}")
            if key != "bicubic" and not Path(spec).exists():
                continue
            cand = load_candidate(spec, grp["scale"], deg.grid)
            with torch.inference_mode():
                out = cand.model(x.contiguous(memory_format=torch.channels_last))["sr"][-1][0, 0].float()
            outputs[label] = out.numpy()
            m = evaluate_volume(out[None].double().numpy(), hr[k : k + 1].double().numpy(),
                                type(FASTMRI)(**{**vars(FASTMRI), "slice_axis": 0}))
            scores[label] = f"{m['psnr']:.2f} dB / {m['ssim']:.3f}"
        show = lambda t: np.flipud(np.asarray(t).T)  # noqa: E731  RAS axial slice, anterior up
        path = args.figures / f"colin27_{g}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        comparison_figure(show(made["lr"][k].numpy()), {n: show(o) for n, o in outputs.items()},
                          show(hr[k].numpy()), path, scores=scores,
                          title=f"Colin27 (never trained on), axial slice {k} of the scored stack, x{grp['scale']}, "
                                + ("k-space truncation + Cartesian mask" if grp["kind"] == "kspace" else "bicubic"))
        print(f"wrote {path}")
    return 0


def cmd_input(args: argparse.Namespace) -> int:
    """The undersampled LR input itself scored against CLEAN, the bar for the REC outputs.

    The same stack, degradation (seeded from the volume's name) and protocol as ``iconet eval``,
    so it sits beside the REC column of the group tables.
    """
    import numpy as np

    from iconet.data.degrade import Degradation
    from iconet.data.io import read_volume
    from iconet.data.normalize import NormalizeConfig, denormalize
    from iconet.evaluation.metrics import FASTMRI, evaluate_volume
    from iconet.evaluation.runner import _slices

    vol = read_volume(args.data)
    protocol = type(FASTMRI)(**{**vars(FASTMRI), "slice_axis": 0})
    lines = ["| group | LR input vs CLEAN: PSNR (dB) | SSIM |", "|---|---:|---:|"]
    for g in args.groups:
        grp = GROUPS[g]
        if grp["kind"] != "kspace" or g == "ablation_x4":
            continue
        deg = Degradation(kind="kspace", scale=grp["scale"])
        hr, norm = _slices(vol, 2, deg.multiple, NormalizeConfig())[:2]
        made = deg.degrade(hr, vol.name)
        m = evaluate_volume(*(np.asarray(denormalize(t.double().numpy(), norm)) for t in (made["lr"], made["clean"])),
                            protocol)
        lines.append(f"| {g} | {m['psnr']:.2f} | {m['ssim']:.4f} |")
    text = "\n".join(lines) + f"\n\n{args.data}, axis 2, every foreground slice; {protocol.describe()}\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "quality_input.md").write_text(text)
    print(text)
    return 0


def _pair(text: str) -> tuple[str, str]:
    """``MODEL:OVER`` → ``(MODEL, OVER)`` for ``table --pairs``."""
    model, sep, over = text.partition(":")
    if not (sep and model and over) or ":" in over:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL:OVER")
    return model, over


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("train", "export", "score", "table", "figure", "input"):
        p = sub.add_parser(name)
        p.add_argument("--groups", nargs="+", choices=list(GROUPS), default=list(GROUPS))
        p.add_argument("--root", type=Path, default=Path("runs/quality"))
        if name == "train":
            p.add_argument("--steps-x2", type=int, default=3000)
            p.add_argument("--steps-x4", type=int, default=3000)
            p.add_argument("--budget", type=float, default=0.0, help="seconds for probe + training (0: fixed steps)")
            p.add_argument("--probe-steps", type=int, default=40)
            p.add_argument("--probe-timeout", type=float, default=90.0)
            p.add_argument("--reserve", type=float, default=30.0, help="seconds kept for validation and saving")
            p.add_argument("--efficiency", type=float, default=0.85, help="share of the measured rate planned")
            p.add_argument("--grace", type=float, default=30.0, help="seconds past the budget before runs are stopped")
            p.add_argument("--equal-time", action="store_true",
                           help="with --budget: each run gets the steps it finishes in the budget (equal wall-clock), "
                                "not the slowest run's of its scale (equal steps)")
            p.add_argument("--device", default="auto")
            p.add_argument("--threads", type=int, default=1)
            p.add_argument("--set", nargs="*", default=[], help="extra key=value overrides for every run")
        if name in ("train", "export", "score"):
            p.add_argument("--only", nargs="*", default=[], help="GROUP/MODEL names to take (default: all)")
        if name == "export":
            p.add_argument("--jobs", type=int, default=8)
        if name in ("score", "figure", "input"):
            p.add_argument("--data", type=Path, default=COLIN27)
        if name == "score":
            p.add_argument("--draws", type=int, default=8, help="seeded mask draws per volume (iconet eval --draws)")
            p.add_argument("--normalize-on", choices=("lr", "hr"), default=None,
                           help="the normalisation statistic's volume (iconet eval --normalize-on; default lr)")
            p.add_argument("--with-shipped", action="store_true",
                           help="score the shipped models of each group's scale beside the runs")
            p.add_argument("--also", nargs="*", type=Path, default=[],
                           help="more exported models to score beside the runs (e.g. another root's or seed's); "
                                "each is named by its folder's name")
        if name == "figure":
            p.add_argument("--figures", type=Path, default=REPO / "docs/img")
        if name in ("table", "input"):
            p.add_argument("--results", type=Path, default=REPO / "benchmarks/results")
        if name == "table":
            p.add_argument("--pairs", nargs="*", default=[], type=_pair, metavar="MODEL:OVER",
                           help="more MODEL:OVER pairs (names as in the group's per_volume.csv) to difference")
    args = ap.parse_args(argv)
    return {"train": cmd_train, "export": cmd_export, "score": cmd_score, "table": cmd_table,
            "figure": cmd_figure, "input": cmd_input}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Design experiments for ICONet's quality gap: short 2x runs on S1, scored on S1's held-out slab.

Why ICONet trails EDSR-baseline at short budgets (the quality benchmark) is probed with short
CPU runs that differ in one thing each: initialisation, LayerScale, learning rate, size.
Every run uses ``configs/zoo_t1_x2.yaml`` (S1 training part, k-space degradation, fresh mask per
sample) with a CPU-sized batch (8 HR patches of 96²), 500 steps (1,500 for the ``_1500`` pair),
validation every 250 (500) steps on
S1's held-out slab (never Colin27), seed 0, bf16 autocast on this CPU.

    python benchmarks/design_x2.py train [--only NAME ...] [--root runs/design_x2] [--threads 1]
    python benchmarks/design_x2.py score [--only NAME ...] [--root runs/design_x2]  # axial slices only
    python benchmarks/design_x2.py table [--root runs/design_x2]   # benchmarks/results/design_x2_cpu.md
    python benchmarks/design_x2.py init                            # untrained outputs vs bicubic

``train`` runs the chosen variants one after another (each in its own ``iconet train``
process); ``table`` gathers ``val/sr_psnr`` at every validation and the training L1 at the end.
``score`` re-scores each run's best checkpoint on the slab's *axial* slices alone (``iconet
eval --axis 2``): the slab is 80 slices thick along axis 2, so two of the validation's three
planes are 80-pixel strips cut through tissue, whose borders weigh far more than in a whole
head slice (Colin27's axial test slices have background all around).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from quality import resolved_recipe, save_recipe  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs/zoo_t1_x2.yaml"
COMMON = ["data.batch_size=8", "data.patch_size=96", "data.slices_per_volume=12", "data.num_workers=1",
          "run.steps=500", "run.val_every=250", "run.ckpt_every=250", "schedule.warmup_steps=50",
          "run.progress=false", "run.log_every=25"]
# GELU pinned: the feed-forward activation these rows were run with (the package default was
# GELU then; it is ReLU since the _relu rows below)
W40 = {"name": "iconet", "scale": 2, "ffn_activation": "gelu"}  # the package-default ICONet (width 40, 2 groups)
W56 = {"name": "iconet", "scale": 2, "width": 56, "groups_per_stage": 3, "ffn_activation": "gelu"}  # the shipped x2 config

#: name → (model section, extra overrides, what it tests)
VARIANTS: dict[str, tuple[dict[str, Any], list[str], str]] = {
    "edsr": ({"name": "edsr", "scale": 2}, [], "EDSR-baseline, lr 4e-4 (the recipe's)"),
    "edsr_lr1e3": ({"name": "edsr", "scale": 2}, ["optim.lr=1e-3"], "EDSR-baseline, lr 1e-3"),
    "iconet_w40_default_init": ({**W40, "zero_tails": False}, [], "ICONet w40, PyTorch default init"),
    "iconet_w40_zero_tails": ({**W40, "zero_tails": True}, [], "ICONet w40, zero tails (starts as bicubic)"),
    "iconet_w40_zt_ls01": ({**W40, "zero_tails": True, "layer_scale": 0.1}, [], "+ LayerScale 0.1"),
    "iconet_w40_zt_nonorm": ({**W40, "zero_tails": True, "mix_norm": False}, [], "+ no LayerNorm before the mixing"),
    "iconet_w40_zt_rec01": ({**W40, "zero_tails": True}, ["loss.rec_weight=0.1"], "+ reconstruction loss weight 0.1 (not 0.5)"),
    "iconet_w40_zt_lr1e3": ({**W40, "zero_tails": True}, ["optim.lr=1e-3"], "+ lr 1e-3"),
    "iconet_w56g3_zero_tails": ({**W56, "zero_tails": True}, [], "ICONet shipped x2 config, zero tails"),
    "iconet_w56g3_zt_lr1e3": ({**W56, "zero_tails": True}, ["optim.lr=1e-3"], "shipped x2 config, zero tails, lr 1e-3"),
    # where the parameters go: depth moved from the reconstruction branch to the SR branch
    "iconet_w56g3b3_rec1": ({**W56, "zero_tails": True, "blocks_per_group": 3, "rec_blocks_per_group": 1}, [],
                            "shipped x2 size (1.23 M), SR branch 3 blocks/group, rec branch 1"),
    "iconet_w64g3_rec1": ({**W56, "width": 64, "zero_tails": True, "rec_blocks_per_group": 1}, [],
                          "width 64, rec branch 1 block/group (1.31 M)"),
    "iconet_w56g3b1_rec3": ({**W56, "zero_tails": True, "blocks_per_group": 1, "rec_blocks_per_group": 3}, [],
                            "shipped x2 size (1.23 M), SR branch 1 block/group, rec branch 3"),
    # training patches cut from the degraded whole slice, not degraded alone (no wrap-around ringing)
    "edsr_whole": ({"name": "edsr", "scale": 2}, ["data.degrade_whole_slice=true"],
                   "EDSR-baseline, patches cut from the degraded whole slice"),
    "iconet_w56g3_zt_whole": ({**W56, "zero_tails": True}, ["data.degrade_whole_slice=true"],
                              "shipped x2 config, zero tails, patches cut from the degraded whole slice"),
    # how far apart two seeds of the same run land (the noise level of this table)
    "edsr_seed1": ({"name": "edsr", "scale": 2}, ["run.seed=1"], "EDSR-baseline, second seed"),
    "iconet_w56g3_zt_seed1": ({**W56, "zero_tails": True}, ["run.seed=1"], "shipped x2 config, zero tails, second seed"),
    # does the collaboration pay? the fusion's gate, the fusion, and the reconstruction branch itself
    "iconet_w56g3_zt_add": ({**W56, "zero_tails": True, "fusion": "add"}, [],
                            "shipped x2 config, zero tails, fusion without the gate (fixed mixing)"),
    "iconet_w56g3_zt_nofusion": ({**W56, "zero_tails": True, "fusion": "none"}, [],
                                 "shipped x2 config, zero tails, no fusion (the prior enters only at the stage end)"),
    "iconet_w56g6_zt_norec": ({**W56, "groups_per_stage": 6, "zero_tails": True, "rec_branch": False}, [],
                              "SR branch alone, 6 groups (1.19 M: the reconstruction branch's parameters as SR depth)"),
    # the block itself: RSCFL's mixing branches off (conv feed-forward blocks, as EDSR's), or one of them
    "iconet_w62g3_zt_conv": ({**W56, "width": 62, "zero_tails": True, "spatial_branch": False, "channel_branch": False}, [],
                             "both RSCFL mixing branches off (feed-forward conv blocks only), width 62 (1.23 M)"),
    "iconet_w56g3_zt_nochannel": ({**W56, "zero_tails": True, "channel_branch": False}, [],
                                  "shipped x2 config without the channel (transposed-attention) branch (1.12 M)"),
    "iconet_w62g6_zt_conv_norec": ({**W56, "width": 62, "groups_per_stage": 6, "zero_tails": True, "rec_branch": False,
                                    "spatial_branch": False, "channel_branch": False}, [],
                                   "SR branch alone with conv blocks only, width 62, 6 groups: ICONet's skeleton as a plain network"),
    "iconet_w56g3_zt_relu": ({**W56, "zero_tails": True, "ffn_activation": "relu"}, [],
                             "shipped x2 config, ReLU (EDSR's) instead of GELU in the feed-forward convs"),
    "iconet_w56g3_zt_relu_seed1": ({**W56, "zero_tails": True, "ffn_activation": "relu"}, ["run.seed=1"],
                                   "shipped x2 config, ReLU, second seed"),
    # with ReLU: the knobs that moved the GELU network, asked again (one change each)
    "iconet_w56g3_zt_relu_lr1e3": ({**W56, "zero_tails": True, "ffn_activation": "relu"}, ["optim.lr=1e-3"],
                                   "shipped x2 config, ReLU, lr 1e-3 (compare edsr_lr1e3)"),
    "iconet_w56g3_zt_relu_nonorm": ({**W56, "zero_tails": True, "ffn_activation": "relu", "mix_norm": False}, [],
                                    "shipped x2 config, ReLU, no LayerNorm before the mixing (EDSR has no norm)"),
    "iconet_w56g3_zt_relu_rec01": ({**W56, "zero_tails": True, "ffn_activation": "relu"}, ["loss.rec_weight=0.1"],
                                   "shipped x2 config, ReLU, reconstruction loss weight 0.1 (not 0.5)"),
    "iconet_w44g3_zt_relu_ffn2": ({**W56, "width": 44, "zero_tails": True, "ffn_activation": "relu", "ffn_expansion": 2.0}, [],
                                  "ReLU, width 44 with a 2x-wide feed-forward (1.19 M)"),
    "iconet_w62g3_zt_relu_conv": ({**W56, "width": 62, "zero_tails": True, "ffn_activation": "relu",
                                   "spatial_branch": False, "channel_branch": False}, [],
                                  "ReLU, both RSCFL mixing branches off, width 62 (1.23 M): does RSCFL still pay with ReLU?"),
    "iconet_w40_zt_relu": ({**W40, "zero_tails": True, "ffn_activation": "relu"}, [],
                           "the package-default ICONet (w40) with ReLU (compare iconet_w40_zero_tails)"),
    "edsr_zero_tail": ({"name": "edsr", "scale": 2, "zero_tail": True}, [],
                       "EDSR-baseline with ICONet's zero-initialised output conv (starts as bicubic)"),
    # k-space knowledge in the network (docs/design.md §1: the paper is image-domain only): the prior is
    # sinc-interpolated (the inverse of k-space truncation), and/or the SR estimate's low band
    # is the prior's (the SR branch adds only what the LR lacks)
    "iconet_w56g3_zt_relu_fourier": ({**W56, "zero_tails": True, "ffn_activation": "relu", "prior_upsampler": "fourier"}, [],
                                     "shipped x2 config, ReLU, prior sinc-interpolated (not bicubic) for the SR residual"),
    "iconet_w56g3_zt_relu_band": ({**W56, "zero_tails": True, "ffn_activation": "relu", "band_consistency": True}, [],
                                  "shipped x2 config, ReLU, SR low band replaced by the prior's"),
    "iconet_w56g3_zt_relu_fourier_band": ({**W56, "zero_tails": True, "ffn_activation": "relu", "prior_upsampler": "fourier",
                                           "band_consistency": True}, [],
                                          "shipped x2 config, ReLU, sinc-interpolated prior and its low band kept"),
    "iconet_w56g3_zt_relu_band_seed1": ({**W56, "zero_tails": True, "ffn_activation": "relu", "band_consistency": True}, ["run.seed=1"],
                                        "shipped x2 config, ReLU, SR low band replaced by the prior's, second seed"),
    # de-aliasing needs mixing along the whole phase-encoding row: an FFC-style Fourier branch in the rec branch
    "iconet_w56g3_zt_relu_spec": ({**W56, "zero_tails": True, "ffn_activation": "relu", "spectral_branch": "rec",
                                   "spectral_gate": False}, [],
                                  "shipped x2 config, ReLU, Fourier mixing along the phase-encoding axis in the rec branch (1.31 M)"),
    "iconet_w56g3_zt_relu_spec_gate": ({**W56, "zero_tails": True, "ffn_activation": "relu", "spectral_branch": "rec"}, [],
                                       "... with a sigmoid gate from the local content on the Fourier branch (1.32 M)"),
    # issue 6's speed goal: the package-default size (faster than EDSR-baseline) with the Fourier branch and the clamp
    "iconet_w40_zt_relu_spec_nn": ({**W40, "zero_tails": True, "ffn_activation": "relu", "spectral_branch": "rec",
                                    "nonnegative": True}, [],
                                   "the package-default ICONet (w40, 0.48 M) with the shipped recipe's Fourier branch and clamp"),
    # three quarters of the error is de-aliasing inside the LR band (benchmarks/error_bands.py): weigh the reconstruction up
    "iconet_w56g3_zt_relu_rec1": ({**W56, "zero_tails": True, "ffn_activation": "relu"}, ["loss.rec_weight=1.0"],
                                  "shipped x2 config, ReLU, reconstruction loss weight 1.0 (not 0.5)"),
    # does the gap close with steps? the same pair for 3x longer
    "edsr_1500": ({"name": "edsr", "scale": 2}, ["run.steps=1500", "run.val_every=500"], "EDSR-baseline, 1,500 steps"),
    "iconet_w56g3_zt_1500": ({**W56, "zero_tails": True}, ["run.steps=1500", "run.val_every=500"],
                             "shipped x2 config, zero tails, 1,500 steps"),
    "iconet_w56g3_zt_relu_1500": ({**W56, "zero_tails": True, "ffn_activation": "relu"},
                                  ["run.steps=1500", "run.val_every=500"], "shipped x2 config, ReLU, 1,500 steps"),
}


def write_recipe(name: str, root: Path, threads: int) -> Path:
    model, extra, _ = VARIANTS[name]
    overrides = COMMON + extra + [f"run.threads={threads}", f"run.out_dir={root / name}"]
    return save_recipe(resolved_recipe(RECIPE, model, overrides), root / f"{name}.yaml")


def cmd_train(args: argparse.Namespace) -> int:
    bad = 0
    for name in args.only or list(VARIANTS):
        recipe = write_recipe(name, args.root, args.threads)
        print(f"== {name}: iconet train {recipe}", flush=True)
        bad += subprocess.run([sys.executable, "-m", "iconet", "train", str(recipe)]).returncode != 0
    return 1 if bad else 0


def cmd_score(args: argparse.Namespace) -> int:
    bad = 0
    for name in args.only or list(VARIANTS):
        run, out = args.root / name, args.root / "axial" / name
        if not (run / "checkpoints").is_dir() or (out / "summary.json").exists():
            continue
        print(f"== {name}: axial slices of the held-out slab", flush=True)
        cmd = [sys.executable, "-m", "iconet", "eval", str(REPO / "data/s1_holdout/S1_val.nii.gz"), "--models", str(run),
               "--axis", "2", "--scale", "2", "--out", str(out)]
        bad += subprocess.run(cmd).returncode != 0
    return 1 if bad else 0


def _axial(root: Path, name: str) -> str:
    path = root / "axial" / name / "summary.json"
    if not path.exists():
        return "–"
    summary = json.loads(path.read_text())
    sr = summary["models"][name]["sr"]
    return f"{sr['psnr'][0]:.2f} / {sr['ssim'][0]:.4f}"


def cmd_table(args: argparse.Namespace) -> int:
    lines = ["| variant | what it tests | val PSNR by step | last val SSIM | train L1 (sr) at the end | axial PSNR / SSIM (best) |",
             "|---|---|---|---:|---:|---:|"]
    for name, (_m, _e, what) in VARIANTS.items():
        run = args.root / name
        if not (run / "metrics.jsonl").exists():
            continue
        val = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        train = [json.loads(x) for x in (run / "train.jsonl").read_text().splitlines()]
        key = next(k for k in train[-1] if k.startswith("train/sr_"))
        by_step = ", ".join(f"{r['step']}: {r['val/sr_psnr']:.2f}" for r in val)
        lines.append(f"| {name} | {what} | {by_step} | {val[-1]['val/sr_ssim']:.4f} | {train[-1][key]:.4f} "
                     f"| {_axial(args.root, name)} |")
    lines += ["", "S1's held-out slab (3 planes), docs/design.md §3 protocol; 500 (or 1,500) steps of batch 8 (HR 96²), "
              "k-space degradation x2, bf16 on the 2-core CPU; one seed "
              "unless a `_seed1` row says otherwise. Axial: the best checkpoint (by the 3-plane validation) on the slab's "
              "axial slices only, fp32. `python benchmarks/design_x2.py train && python benchmarks/design_x2.py score && "
              "python benchmarks/design_x2.py table`."]
    text = "\n".join(lines) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "design_x2_cpu.md").write_text(text)
    print(text)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """How far each *untrained* network's output is from HR, against bicubic's (L1, 16 S1 patches).

    The patches are S1 training patches of the x2 recipe under plain bicubic degradation (so
    "no change" = bicubic is the natural reference); models built with seed 0.
    """
    import torch

    from iconet.data.datasets import collate
    from iconet.engine.data import build_datasets, find_split
    from iconet.models import build_model
    from iconet.ops.grid import upsample

    cfg = resolved_recipe(RECIPE, None, ["degradation.kind=bicubic", "model.grid=centre", "data.num_workers=0"])
    train, _val, _ = build_datasets(cfg, find_split(cfg.data))
    train.set_epoch(0)
    batch = collate([train[i] for i in range(0, 160, 10)])
    x, hr = batch["lr"], batch["hr_stages"][-1]
    rows = [("bicubic (reference)", float((upsample(x, 2, "centre") - hr).abs().mean()))]
    specs = {"ICONet shipped x2 config, PyTorch default init": {**W56, "grid": "centre", "zero_tails": False},
             "ICONet shipped x2 config, zero tails": {**W56, "grid": "centre", "zero_tails": True},
             "EDSR-baseline": {"name": "edsr", "scale": 2, "grid": "centre"},
             "T2Net-style": {"name": "t2net", "scale": 2, "grid": "centre"}}
    for label, spec in specs.items():
        torch.manual_seed(0)
        with torch.no_grad():
            out = build_model(spec).eval()(x)["sr"][-1]
        rows.append((label, float((out - hr).abs().mean())))
    ref = rows[0][1]
    lines = ["| untrained network | L1 to HR | × bicubic's |", "|---|---:|---:|"]
    lines += [f"| {n} | {v:.4f} | {v / ref:.1f}× |" for n, v in rows]
    text = "\n".join(lines) + "\n\n16 S1 training patches (HR 128²) of configs/zoo_t1_x2.yaml, bicubic degradation, seed 0.\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "design_x2_init.md").write_text(text)
    print(text)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--only", nargs="*", choices=list(VARIANTS), default=[])
    t.add_argument("--threads", type=int, default=2)
    sc = sub.add_parser("score")
    sc.add_argument("--only", nargs="*", choices=list(VARIANTS), default=[])
    tb = sub.add_parser("table")
    ini = sub.add_parser("init")
    for p in (tb, ini):
        p.add_argument("--results", type=Path, default=REPO / "benchmarks/results")
    for p in (t, sc, tb):
        p.add_argument("--root", type=Path, default=Path("runs/design_x2"))
    args = ap.parse_args()
    return {"train": cmd_train, "score": cmd_score, "table": cmd_table, "init": cmd_init}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())

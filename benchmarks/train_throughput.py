"""Training throughput: steps/s and samples/s of a recipe, single process and DDP.

Runs the recipe (default: the demo recipe ``configs/demo_s1_x2.yaml``, real S1 and Colin27
volumes under ``data/`` as ``iconet data fetch-samples --dest data`` writes them) for
``--warmup`` steps, then times ``--steps`` more, without validation. Then the same global batch
under ``torchrun --nproc_per_node=K`` with gloo (CPU) or NCCL (GPU), each rank with
``threads / K`` threads, and prints the speed-up. Every number is for the precision the recipe
resolves to (``run.precision``; printed).

    python benchmarks/train_throughput.py                                   # demo x2, CPU
    python benchmarks/train_throughput.py --recipe configs/demo_s1_x4.yaml
    python benchmarks/train_throughput.py --nproc 0                         # skip the DDP run
    python benchmarks/train_throughput.py run.precision=fp32                # any recipe override
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(recipe: str, overrides: list[str], warmup: int, steps: int, threads: int, result: str) -> None:
    """One (possibly distributed) timing run; rank 0 writes a JSON result."""
    import torch

    from iconet.engine.config import load_train_config
    from iconet.engine.trainer import Trainer
    from iconet.runtime import keep_freed_memory, machine_name

    keep_freed_memory()
    torch.set_num_threads(threads)
    out = tempfile.mkdtemp(prefix="iconet-throughput-")
    cfg = load_train_config(Path(recipe), [
        *overrides, f"run.out_dir={out}", f"run.steps={warmup + steps}", "run.val_every=0",
        "run.ckpt_every=0", "run.progress=false", f"run.threads={threads}",
    ])
    trainer = Trainer(cfg)
    trainer.fit(stop_at=warmup)
    start = time.perf_counter()
    trainer.fit()  # writes last.pt once at the end (a few MB): included in the time
    seconds = time.perf_counter() - start
    if trainer.is_main:
        world = trainer.dist.world_size
        global_batch = cfg.data.batch_size * world
        Path(result).write_text(json.dumps({
            "world_size": world, "threads_per_rank": threads, "steps": steps, "seconds": seconds,
            "steps_per_s": steps / seconds, "samples_per_s": steps * global_batch / seconds,
            "global_batch": global_batch, "precision": trainer.precision, "device": str(trainer.device),
            "processor": machine_name(trainer.device), "model": cfg.model.get("name"),
            "lr_patch": cfg.data.patch_size // cfg.degradation.scale,
        }))
    trainer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(REPO / "configs" / "demo_s1_x2.yaml"))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2, help="threads in total (split over DDP ranks)")
    ap.add_argument("--nproc", type=int, default=2, help="DDP processes for the second run (0: skip)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    opts = ap.parse_args()
    if opts.worker:
        worker(opts.recipe, opts.overrides, opts.warmup, opts.steps, opts.threads, opts.result)
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        single = Path(tmp) / "single.json"
        base = [sys.executable, __file__, "--worker", "--recipe", opts.recipe, "--warmup", str(opts.warmup),
                "--steps", str(opts.steps)]
        subprocess.run([*base, "--threads", str(opts.threads), "--result", str(single), *opts.overrides],
                       check=True)
        rows.append(json.loads(single.read_text()))
        if opts.nproc > 1:
            ddp = Path(tmp) / "ddp.json"
            # the same global batch: each rank takes batch / nproc
            from iconet.engine.config import load_train_config

            batch = load_train_config(Path(opts.recipe), opts.overrides).data.batch_size
            if batch % opts.nproc:
                sys.exit(f"batch {batch} is not divisible by --nproc {opts.nproc}")
            per_rank = [f"data.batch_size={batch // opts.nproc}", "data.shard=strided"]
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, opts.threads // opts.nproc))}
            subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={opts.nproc}",
                            __file__, "--worker", "--recipe", opts.recipe, "--warmup", str(opts.warmup),
                            "--steps", str(opts.steps), "--threads", str(max(1, opts.threads // opts.nproc)),
                            "--result", str(ddp), *opts.overrides, *per_rank], check=True, env=env)
            rows.append(json.loads(ddp.read_text()))

    r0 = rows[0]
    print(f"\n### Training throughput: {Path(opts.recipe).name}, model {r0['model']}, LR patch "
          f"{r0['lr_patch']}², global batch {r0['global_batch']}, precision {r0['precision']}, "
          f"device {r0['device']} ({r0['processor']})\n")
    print("| processes | threads each | steps/s | samples/s | s/step | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['world_size']} | {r['threads_per_rank']} | {r['steps_per_s']:.2f} | {r['samples_per_s']:.1f} | "
              f"{1 / r['steps_per_s']:.3f} | {r['steps_per_s'] / r0['steps_per_s']:.2f}× |")


if __name__ == "__main__":
    main()

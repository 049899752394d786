"""Shared by the speed benchmarks: time one forward pass of a model in a fresh process.

Each measurement runs in its own process (``python _runner.py --child ...``) so that its peak
memory can be read (CPU: growth of ``ru_maxrss`` during the passes; CUDA:
``torch.cuda.max_memory_allocated``) and so that a model that passes the time or memory limit
can be killed without taking the benchmark down. The parent polls the child's resident set.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Point:
    """One measurement: ``model`` at LR side ``size`` (square), ``batch`` slices per pass."""

    model: str
    size: int
    scale: int = 2
    batch: int = 1
    precision: str = "fp32"
    device: str = "cpu"
    compiled: bool = False  # torch.compile (inductor, default mode); compile time is reported apart


@dataclass
class Limits:
    threads: int = 2
    repeats: int = 5
    budget: float = 20.0  # seconds of timed passes per point at most
    max_seconds: float = 60.0
    max_gib: float = 16.0
    allocator: str = "keep"
    flops: bool = False


def _child(p: Point, lim: Limits) -> dict:
    import torch

    from iconet.models import build_model
    from iconet.models.summary import count_flops

    torch.set_num_threads(lim.threads)
    torch.manual_seed(0)
    if lim.allocator == "keep":
        from iconet.runtime import keep_freed_memory

        keep_freed_memory()
    device = torch.device(p.device)
    if p.model == "conv3x3":  # a plain 3x3 convolution of ICONet's width: the machine's reference
        width = build_model("iconet").cfg.width
        model: torch.nn.Module = torch.nn.Conv2d(width, width, 3, padding=1)
        shape = (p.batch, width, p.size, p.size)
        flops = 2 * width * width * 9 * p.size * p.size * p.batch
    else:
        from iconet.models import model_names

        if p.model in model_names():
            model = build_model(p.model, scale=p.scale)
        else:  # a shipped name or an exported model folder (its own config and scale)
            from iconet.hub import load_model

            model, _info = load_model(p.model)
        shape = (p.batch, model.in_channels, p.size, p.size)
        flops = 0
    params = sum(t.numel() for t in model.parameters())
    model = model.eval().to(device, memory_format=torch.channels_last)
    x = torch.rand(shape, device=device).contiguous(memory_format=torch.channels_last)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(p.precision)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    compile_s = 0.0
    if p.compiled:
        model = torch.compile(model)
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        t = time.perf_counter()
        model(x)  # warm-up (kernel selection; compilation when compiled)
        sync()
        if p.compiled:
            model(x)  # a second pass, so no recompilation lands in the timed ones
            sync()
            compile_s = time.perf_counter() - t
            if device.type == "cuda":  # the compiler's own memory is not the model's
                torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        while len(times) < lim.repeats and (time.perf_counter() - start < lim.budget or not times):
            t = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - t)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kib) / 1024
    if lim.flops and p.model != "conv3x3" and not p.compiled:  # counted after timing: it runs a forward pass too
        flops = count_flops(model, shape)
    times.sort()
    return {**asdict(p), "params": params, "flops": flops, "seconds": times[len(times) // 2],
            "min_seconds": times[0], "max_seconds": times[-1],
            "runs": len(times), "peak_mib": peak_mib, "compile_s": compile_s}


def _rss_gib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def measure(p: Point, lim: Limits) -> dict:
    """Run ``p`` in a subprocess; a row with ``seconds`` or with ``stopped`` (why)."""
    cmd = [sys.executable, __file__, "--child", json.dumps(asdict(p)), json.dumps(asdict(lim))]
    env = {**os.environ, "OMP_NUM_THREADS": str(lim.threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    start, stopped = time.time(), None
    while proc.poll() is None:  # the child runs a warm-up and >= 1 timed pass: allow both
        if time.time() - start > 2 * lim.max_seconds + (600 if p.compiled else 30):  # + compilation
            stopped = f"> {lim.max_seconds:.0f} s"
        elif _rss_gib(proc.pid) > lim.max_gib:
            stopped = f"> {lim.max_gib:.0f} GiB"
        if stopped:
            proc.kill()
            proc.wait()
            return {**asdict(p), "stopped": stopped}
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        return {**asdict(p), "stopped": "failed: " + (err.strip().splitlines() or ["?"])[-1]}
    row = json.loads(out.strip().splitlines()[-1])
    if row["seconds"] > lim.max_seconds:
        row["stopped"] = f"> {lim.max_seconds:.0f} s"
    return row


def machine(device: str = "cpu") -> str:
    """CPU model (or GPU name), for table captions."""
    from iconet.runtime import machine_name

    return machine_name(device)


def add_limit_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per point (median reported)")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timed passes per point at most")
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--max-gib", type=float, default=16.0)
    ap.add_argument("--allocator", choices=("keep", "system"), default="keep",
                    help="keep: glibc keeps freed memory for reuse (iconet.runtime.keep_freed_memory, as "
                         "jemalloc/tcmalloc would); system: glibc defaults (large blocks are unmapped on "
                         "free and page-faulted again)")


def limits_from(opts: argparse.Namespace, flops: bool = False) -> Limits:
    return Limits(opts.threads, opts.repeats, opts.budget, opts.max_seconds, opts.max_gib, opts.allocator, flops)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--child":
    print(json.dumps(_child(Point(**json.loads(sys.argv[2])), Limits(**json.loads(sys.argv[3])))))

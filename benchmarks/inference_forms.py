r"""Exact inference forms of ICONet's blocks, timed side by side, and where a forward's time goes.

Each lever is an exact reformulation of a module (the same outputs up to float rounding;
``tests/test_iconet.py`` checks them against the textbook forms), so it changes no weights and no
score, only speed:

* ``one_gram``: :class:`~iconet.models.rscfl.ChannelAttention` computes q and k with one 1×1
  conv and takes the cosines *and* the norms from one Gram matrix of the ``(B, N, 2C)`` tokens;
  before: two convs and three Gram products over the N pixels.
* ``bf16_dft`` (bf16 rows only; fp32 is untouched by it): :class:`~iconet.models.rscfl.SpectralMixing`
  takes its real FFT pair as DFT matrix products in bf16 under CPU bf16 autocast; before: float32
  FFTs with conversions around them. Exact in fp32 maths; in bf16 its output is as close to the
  fp32 model's as the FFT form's (``tests/test_iconet.py``).
Tried and not kept: the spectral output handed back channels_last (whole-model time −4 % to
+5 % in A/B runs while other jobs shared the CPU); the FFTs taken along rows made contiguous
once, with the 1×1 mix as one matmul (0.95–1.04× in a run of this script alone).

For each model (the shipped ones and EDSR-baseline, which none of the levers touches: its rows
show the noise): the whole forward of a batch of ``--batch`` HR ``--hr``² slices (LR 128² at x2,
64² at x4), fp32 and bf16 autocast, channels_last, ``torch.inference_mode``, ``--threads``
threads; the forms *before* (every lever undone), each lever alone (when there are several), and
*after* (the code as it is), timed in turn, ``--repeats`` rounds, median and spread. Then a breakdown of the current
code's forward by module kind (forward hooks; nested modules counted in their parents too).

    python benchmarks/inference_forms.py      # writes benchmarks/results/inference_forms_cpu.{json,md}
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "inference_forms_cpu.json"
MODELS = ("edsr", "iconet-t1-x2-fast", "iconet-t1-x2", "iconet-t1-x4")


# --------------------------------------------------------------------------- the forms before


def three_gram_attention(self: Any, x: torch.Tensor) -> torch.Tensor:
    """ChannelAttention.attention before ``one_gram``: q and k by two convs, three Gram products."""
    b, c, h, w = x.shape
    q = self.q(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
    k = self.k(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
    dtype = torch.promote_types(q.dtype, torch.float32)
    qt = q.transpose(1, 2)
    floor = self.eps * h * w
    q_norm = ((qt @ q).diagonal(dim1=1, dim2=2).to(dtype) + floor).sqrt()
    k_norm = ((k.transpose(1, 2) @ k).diagonal(dim1=1, dim2=2).to(dtype) + floor).sqrt()
    cos = (qt @ k).to(dtype) / (q_norm[:, :, None] * k_norm[:, None, :])
    logits = cos * self.temperature.reshape(-1)[self.head_of][None, :, None]
    return torch.softmax(logits.masked_fill(~self.same_head, float("-inf")), dim=-1)


def _levers() -> dict[str, tuple[type, str, Any]]:
    """lever → (class, attribute, its value before the lever: a method or a switch)."""
    from iconet.models.rscfl import ChannelAttention, SpectralMixing

    return {"one_gram": (ChannelAttention, "attention", three_gram_attention),
            "bf16_dft": (SpectralMixing, "dft_in_bf16", False)}


@contextlib.contextmanager
def undone(levers: list[str]) -> Iterator[None]:
    """The code with ``levers`` replaced by their forms before."""
    table = _levers()
    saved = [(table[n][0], table[n][1], getattr(table[n][0], table[n][1])) for n in levers]
    try:
        for n in levers:
            cls, name, before = table[n]
            setattr(cls, name, before)
        yield
    finally:
        for cls, name, method in saved:
            setattr(cls, name, method)


# --------------------------------------------------------------------------- timing


def _model(name: str, scale: int) -> torch.nn.Module:
    from iconet.hub import load_model
    from iconet.models import build_model

    net = build_model("edsr", scale=scale) if name == "edsr" else load_model(name)[0]
    return net.eval().to(memory_format=torch.channels_last)


def _scale(name: str) -> int:
    return 4 if name.endswith("x4") else 2


def time_forms(name: str, scale: int, hr: int, batch: int, precision: str, repeats: int) -> dict[str, Any]:
    net = _model(name, scale)
    x = torch.rand(batch, 1, hr // scale, hr // scale, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    levers = list(_levers())
    alone = {f"{n} alone": [m for m in levers if m != n] for n in levers} if len(levers) > 1 else {}
    forms = {"before": levers, **alone, "after": []}
    times: dict[str, list[float]] = {f: [] for f in forms}
    outputs = {}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for form, undo in forms.items():  # warm-up, and the outputs to compare
            with undone(undo):
                net(x)
                outputs[form] = net(x)["sr"][-1].float()
        for _ in range(repeats):
            for form, undo in forms.items():
                with undone(undo):
                    t = time.perf_counter()
                    net(x)
                    times[form].append(time.perf_counter() - t)
    diff = max((outputs[f] - outputs["before"]).abs().max().item() for f in forms)
    row = {"model": name, "scale": scale, "hr": hr, "batch": batch, "precision": precision,
           "max_abs_diff": diff,
           "ms_per_slice": {f: round(statistics.median(v) / batch * 1e3, 2) for f, v in times.items()},
           "range_ms_per_slice": {f: [round(min(v) / batch * 1e3, 2), round(max(v) / batch * 1e3, 2)]
                                  for f, v in times.items()}}
    ms = row["ms_per_slice"]
    row["speedup"] = {f: round(ms["before"] / ms[f], 3) for f in forms}
    return row


def breakdown(name: str, scale: int, hr: int, batch: int, precision: str, repeats: int) -> dict[str, Any]:
    """Share of the current code's forward per module kind (convs keyed by kernel, groups, width)."""
    net = _model(name, scale)
    x = torch.rand(batch, 1, hr // scale, hr // scale).contiguous(memory_format=torch.channels_last)
    spent: dict[str, float] = collections.defaultdict(float)
    started: dict[int, float] = {}

    def key(m: torch.nn.Module) -> str | None:
        if isinstance(m, torch.nn.Conv2d):
            kind = "depth-wise" if m.groups > 1 else "dense"
            dil = f" dil {m.dilation[0]}" if m.dilation[0] > 1 else ""
            return f"conv {m.kernel_size[0]}x{m.kernel_size[1]} {kind}{dil}"
        n = type(m).__name__
        keep = ("ChannelAttention", "SpatialAttention", "SpectralMixing", "ConvFeedForward", "ChannelLayerNorm",
                "SRRecFusion", "RSCFLBlock", "RSCFLGroup", "PixelShuffle", "ResBlock")
        return n if n in keep else None

    for m in net.modules():
        k = key(m)
        if k is None:
            continue
        m.register_forward_pre_hook(lambda mod, _i: started.__setitem__(id(mod), time.perf_counter()))
        m.register_forward_hook(lambda mod, _i, _o, k=k: spent.__setitem__(
            k, spent[k] + time.perf_counter() - started[id(mod)]))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        net(x)
        spent.clear()
        t = time.perf_counter()
        for _ in range(repeats):
            net(x)
        total = time.perf_counter() - t
    return {"model": name, "precision": precision, "ms_per_slice": round(total / repeats / batch * 1e3, 2),
            "share": {k: round(v / total, 3) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--hr", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--results", type=Path, default=RESULTS)
    opts = ap.parse_args(argv)
    torch.set_num_threads(opts.threads)
    from iconet.runtime import machine_name

    rows, shares = [], []
    for precision in ("fp32", "bf16"):
        for name in opts.models:
            rows.append(time_forms(name, _scale(name), opts.hr, opts.batch, precision, opts.repeats))
            print(json.dumps(rows[-1]), flush=True)
    for precision in ("fp32", "bf16"):
        for name in opts.models:
            if name != "edsr":
                shares.append(breakdown(name, _scale(name), opts.hr, opts.batch, precision, 3))
                print(json.dumps(shares[-1]), flush=True)
    out = {"machine": machine_name("cpu"), "threads": opts.threads, "torch": torch.__version__, "hr": opts.hr,
           "batch": opts.batch, "repeats": opts.repeats, "forms": rows, "breakdown": shares}
    opts.results.parent.mkdir(parents=True, exist_ok=True)
    opts.results.write_text(json.dumps(out, indent=1) + "\n")
    forms = list(rows[0]["ms_per_slice"])
    lines = ["# Exact inference forms of ICONet's blocks, side by side", "",
             f"{out['machine']}, {opts.threads} torch threads, torch {out['torch']}; batch {opts.batch} of HR "
             f"{opts.hr}² slices, channels_last, inference_mode; ms per slice, median of {opts.repeats} rounds "
             "(the forms timed in turn each round); speed-up against 'before'; max |Δ|: the largest "
             "difference of any form's output from 'before' in the same precision (0 in fp32: the "
             "forms are exact; in bf16 the rounding of the DFT matmuls). "
             "Generated by `python benchmarks/inference_forms.py`.", "",
             "| model | precision | " + " | ".join(forms) + " | speed-up (after) | max |Δ| |",
             "|---|---|" + "---:|" * len(forms) + "---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | "
                     + " | ".join(f"{r['ms_per_slice'][f]:.1f}" for f in forms)
                     + f" | {r['speedup']['after']:.2f}× | {r['max_abs_diff']:.1e} |")
    lines += ["", "Where the current code's forward spends its time (share of the whole forward; a module's "
              "time includes the modules inside it, so the shares overlap):", ""]
    for s in shares:
        top = ", ".join(f"{k} {100 * v:.0f} %" for k, v in s["share"].items() if v >= 0.02)
        lines.append(f"- **{s['model']}, {s['precision']}** ({s['ms_per_slice']} ms/slice): {top}")
    opts.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {opts.results} and {opts.results.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

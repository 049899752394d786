"""Every results table of README.md and docs/ is generated here from benchmarks/results/*.json.

    python benchmarks/tables.py            # rewrite every table between its markers
    python benchmarks/tables.py --check    # exit 1 naming each stale table, write nothing

A generated table sits in a Markdown file between ``<!-- table:NAME -->`` and
``<!-- /table -->``; NAME is a key of :data:`TABLES`, and everything between the two markers is
replaced. A benchmark writes its JSON (``benchmarks/quality.py table``,
``benchmarks/inference_speed.py --json``, ``benchmarks/complexity.py --json``); this script
turns the JSON into the tables that the README and docs show, so that no number there is typed
by hand. A marker whose NAME is unknown, or a file without its closing marker, is an error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from complexity import fit_exponent

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
#: the Markdown files that hold generated tables
FILES = ("README.md", "docs/results.md", "docs/cli.md", "benchmarks/results/seed1/README.md")
MARKER = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.S)

REBUILD_QUALITY = "`python benchmarks/quality.py table && python benchmarks/tables.py`"


def load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def setting(name: str) -> str:
    """The run's own description of its setting (batch, threads, torch, CPU): the ``###`` line the
    benchmark wrote into the ``.md`` beside its JSON."""
    md = (RESULTS / name).with_suffix(".md")
    heads = [ln.lstrip("# ").strip() for ln in md.read_text().splitlines() if ln.startswith("###")] if md.exists() else []
    return heads[0] if heads else "setting not recorded"


# ---------------------------------------------------------------- quality (benchmarks/quality.py)

#: quality.py's run names (the part after ``<group>_``) in table order, peers first
ORDER = ("bicubic", "zerofill", "edsr", "t2net", "iconet_small", "iconet_fast", "iconet")


def label(run: str, group: str) -> str:
    """A reader's name for a run of a quality group (shipped models by their shipped name)."""
    scale = group.rsplit("_x", 1)[1]
    kspace = group.startswith("kspace")
    shipped = {"iconet": f"**`iconet-t1-x{scale}`** (shipped)"}
    if scale == "2":
        shipped["iconet_fast"] = "`iconet-t1-x2-fast` (shipped)"
    names = {
        "bicubic": "bicubic", "zerofill": "zero-filled", "edsr": "EDSR-baseline", "t2net": "T2Net-style",
        "iconet_small": "ICONet, package-default config (w40)",
        "iconet_fast": "ICONet fast (w32, [3, 1], 1 block; not shipped)",
        "iconet": "ICONet, shipped recipe" if kspace else "ICONet, shipped configs",
    }
    return (shipped if kspace else {}).get(run) or names.get(run, run)


def runs(group: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    """``(short run name, result)`` pairs of one group, in :data:`ORDER`."""
    short = {k.removeprefix(f"{name}_"): v for k, v in group["models"].items()}
    return sorted(short.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER))


def mean(cell: list[float] | None, digits: int) -> str:
    """A ``[mean, std]`` cell of eval's summary as text (the std is over volumes)."""
    return "–" if not cell else f"{cell[0]:.{digits}f}"


def protocol(group: dict[str, Any]) -> str:
    deg = group["degradation"]
    kind = (f"k-space truncation + Cartesian mask ({deg['mask_lines']} of {deg['mask_width']} lines, "
            f"centre {deg['centre_fraction']:.0%}, seeded from the volume name)" if deg["kind"] == "kspace"
            else deg["kind"])
    return f"Degradation: {kind}, x{deg['scale']}, {deg['grid']} grid. Protocol: {group['protocol']}."


def quality(name: str, results: str = "quality.json") -> Callable[[], str]:
    """One quality group: every model's SR and REC scores and its tissue Dice, on Colin27."""

    def render() -> str:
        group = load(results)["groups"][name]
        # REC is scored against CLEAN, which only the k-space task has (under bicubic it is the input)
        rec = group["degradation"]["kind"] == "kspace"
        lines = ["| model | parameters | SR PSNR (dB) | SR SSIM |" + (" REC PSNR (dB) |" if rec else "")
                 + " tissue Dice |", "|---|---:|---:|---:|" + ("---:|" if rec else "") + "---:|"]
        for run, r in runs(group, name):
            lines.append(f"| {label(run, name)} | {r['params']:,} | {mean(r['sr']['psnr'], 2)} | "
                         f"{mean(r['sr']['ssim'], 4)} | " + (f"{mean(r.get('rec', {}).get('psnr'), 2)} | " if rec else "")
                         + f"{mean(r.get('downstream', {}).get('dice_mean'), 3)} |")
        return "\n".join(lines + ["", protocol(group) + f" Rebuild: {REBUILD_QUALITY}."])

    return render


def seeds(scale: int) -> Callable[[], str]:
    """The runs that were trained twice (seed 0 and ``run.seed=1``): both and their mean."""

    def render() -> str:
        name = f"kspace_x{scale}"
        a, b = load("quality.json")["groups"][name], load("seed1/quality.json")["groups"][name]
        lines = ["| model | seed 0 PSNR / SSIM | seed 1 PSNR / SSIM | mean PSNR / SSIM | spread PSNR |",
                 "|---|---:|---:|---:|---:|"]
        other = dict(runs(b, name))
        for run, r0 in runs(a, name):
            r1 = other.get(run)
            if r1 is None or run in ("bicubic", "zerofill"):
                continue
            p, s = (r0["sr"]["psnr"][0], r1["sr"]["psnr"][0]), (r0["sr"]["ssim"][0], r1["sr"]["ssim"][0])
            lines.append(f"| {label(run, name)} | {p[0]:.2f} / {s[0]:.4f} | {p[1]:.2f} / {s[1]:.4f} | "
                         f"{sum(p) / 2:.2f} / {sum(s) / 2:.4f} | {abs(p[0] - p[1]):.2f} |")
        return "\n".join(lines + ["", f"Colin27, x{scale}; spread = |seed 0 − seed 1|. Rebuild: `python "
                                  "benchmarks/quality.py table --root runs/seed1 --results benchmarks/results/seed1 "
                                  "&& python benchmarks/tables.py`."])

    return render


def band_consistency() -> str:
    """ICONet's shipped recipe with and without ``band_consistency``, both scales."""
    lines = ["| scale | model | SR PSNR (dB) | SR SSIM | REC PSNR (dB) |", "|---:|---|---:|---:|---:|"]
    for scale in (2, 4):
        name = f"kspace_x{scale}"
        for tag, results in (("", "quality.json"), (" + `band_consistency`", "band_consistency/quality.json")):
            r = dict(runs(load(results)["groups"][name], name))["iconet"]
            lines.append(f"| x{scale} | ICONet, shipped recipe{tag} | {mean(r['sr']['psnr'], 2)} | "
                         f"{mean(r['sr']['ssim'], 4)} | {mean(r['rec']['psnr'], 2)} |")
    return "\n".join(lines + ["", "Colin27, same protocol as the quality tables. Rebuild: `python benchmarks/quality.py "
                              "table --root runs/cpu_band --results benchmarks/results/band_consistency && "
                              "python benchmarks/tables.py`."])


# ------------------------------------------------------ speed (inference_speed.py, complexity.py)

def vs_edsr(rows: list[dict[str, Any]], model: str, hr: int, scale: int, precision: str) -> str:
    """``ms/slice (ratio)`` of one point against EDSR-baseline timed in the same run."""
    pick = [r for r in rows if r["hr"] == hr and r["scale"] == scale and r["precision"] == precision
            and not r.get("compiled")]
    this = next((r for r in pick if r["model"] == model), None)
    edsr = next((r for r in pick if r["model"] == "edsr" and "seconds" in r), None)
    if this is None:
        return "–"
    if "seconds" not in this:
        return f"stopped ({this['stopped']})"
    ms = 1000 * this["seconds"] / this["batch"]
    ref = next((r for r in pick if r["model"].startswith("conv3x3") and "seconds" in r and r.get("flops")), None)
    share = ""
    if ref and this.get("flops") and not this["model"].startswith("conv3x3"):
        share = f", {100 * (this['flops'] / this['seconds']) / (ref['flops'] / ref['seconds']):.0f} %"
    return f"{ms:.0f} ms ({edsr['seconds'] / this['seconds']:.2f}×{share})" if edsr else f"{ms:.0f} ms"


#: inference_speed.py's model names (registry names, shipped names, export folders) as readers know them
SPEED_NAMES = {"edsr": "EDSR-baseline", "t2net": "T2Net-style", "iconet": "ICONet, package-default config",
               "runs/cpu_spec/exports/kspace_x4_iconet_fast": "ICONet fast x4 (w32, [3, 1], 1 block; not shipped)"}


def speed(sources: list[tuple[str, list[str], int]], weights: str, command: str) -> Callable[[], str]:
    """ms per HR slice and the speed ratio to EDSR-baseline of the same run, per precision and size.

    ``sources``: ``(results file, models, scale)``; every model is compared with the EDSR-baseline
    of its own file, never across runs.
    """

    def render() -> str:
        points = [(hr, p) for hr in (256, 512) for p in ("fp32", "bf16")]
        lines = ["| model | scale | parameters | " + " | ".join(f"{hr}² {p}" for hr, p in points) + " |",
                 "|---|---:|---:|" + "---:|" * len(points)]
        for results, models, scale in sources:
            rows = load(results)
            for model in models:
                params = next((r["params"] for r in rows if r["model"] == model and r["scale"] == scale), None)
                cells = [vs_edsr(rows, model, hr, scale, p) for hr, p in points]
                lines.append(f"| {SPEED_NAMES.get(model, f'`{model}`')} | x{scale} | "
                             f"{'–' if params is None else f'{params:,}'} | " + " | ".join(cells) + " |")
        runs_ = "; ".join(dict.fromkeys(setting(results) for results, _, _ in sources))
        conv = any(r["model"].startswith("conv3x3") for results, _, _ in sources for r in load(results))
        rate = (" and the share of the dense 3×3-conv rate it reaches (counted FLOPs of its convolutions and "
                "matmuls per second / the FLOP rate of a stack of 64→64 3×3 convs timed in the same run at "
                "the same LR size and precision)") if conv else ""
        return "\n".join(lines + ["", f"ms per HR slice ({weights}) and, in brackets, EDSR-baseline's time over this "
                                  f"model's in the same run (above 1: faster than EDSR){rate}. {runs_}. Rebuild: "
                                  f"`{command}`, then `python benchmarks/tables.py`."])

    return render


def complexity() -> str:
    """Seconds per forward pass against the LR size, and the fitted exponent of time ∝ N^p."""
    rows = [r for r in load("complexity_cpu.json") if r["model"] != "conv3x3"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    sizes = sorted({r["size"] for r in rows})
    lines = ["| model | precision | " + " | ".join(f"{s}² LR" for s in sizes) + " | p (time ∝ N^p) |",
             "|---|---|" + "---:|" * (len(sizes) + 1)]
    for m in models:
        for prec in ("fp32", "bf16"):
            mine = [r for r in rows if r["model"] == m and r["precision"] == prec]
            cell = {r["size"]: (f"{r['seconds']:.3f} s" if "seconds" in r else "stopped") for r in mine}
            p = fit_exponent(mine)
            lines.append(f"| {m} | {prec} | " + " | ".join(cell.get(s, "–") for s in sizes)
                         + f" | {'–' if p is None else f'{p:.2f}'} |")
    return "\n".join(lines + ["", f"Seconds per forward pass, the package-default configs (untrained). "
                              f"{setting('complexity_cpu.json')}. Rebuild: `python benchmarks/complexity.py --json "
                              "benchmarks/results/complexity_cpu.json`, then `python benchmarks/tables.py`."])


# ---------------------------------------------------------------- through-plane (benchmarks/through_plane.py)

#: through_plane.py's methods in table order, and a reader's name for each
THROUGH_PLANE_METHODS = {"cubic": "cubic B-spline", "sinc": "windowed sinc (Lanczos-3)",
                         "inplane": "shipped in-plane model across the slices", "eclare@1x": "ECLARE, iconet's fit CPU time",
                         "eclare@5x": "ECLARE, 5× iconet's fit CPU time", "iconet": "**`--isotropic`** (fitted to the scan)"}


def through_plane(volume: str = "colin27_T1", settings: tuple[str, ...] = ("2mm", "4mm")) -> Callable[[], str]:
    """Held-out volume's rows of ``through_plane.json``: PSNR / SSIM (mean over the thick axes
    scored), the gain over cubic paired by axis, and the CPU seconds of the method."""

    def build() -> str:
        rows = [r for r in load("through_plane.json")["rows"] if r["volume"] == volume]

        def cell(method: str, st: str) -> str:
            # the axes where iconet was scored, so that every row of a column is the same cells
            fitted = {r["axis"] for r in rows if r["method"] == "iconet" and r["setting"] == st}
            mine = [r for r in rows if r["method"] == method and r["setting"] == st
                    and (not fitted or r["axis"] in fitted)]
            if not mine:
                return "–"
            cubic = {r["axis"]: r for r in rows if r["method"] == "cubic" and r["setting"] == st}
            psnr = sum(r["psnr"] for r in mine) / len(mine)
            ssim = sum(r["ssim"] for r in mine) / len(mine)
            text = f"{psnr:.2f} / {ssim:.4f}"
            gains = [r["psnr"] - cubic[r["axis"]]["psnr"] for r in mine if r["axis"] in cubic]
            if method != "cubic" and gains:
                text += f" ({sum(gains) / len(gains):+.2f})"
            cpu = sum(r["cpu_s"] for r in mine) / len(mine)
            axes = ",".join(str(r["axis"]) for r in sorted(mine, key=lambda r: r["axis"]))
            return f"{text}, {cpu:.0f} s, axes {axes}"

        head = "| method | " + " | ".join(f"{st}: PSNR / SSIM (Δ PSNR vs cubic), CPU s" for st in settings) + " |"
        lines = [head, "|---|" + "---|" * len(settings)]
        for m, name in THROUGH_PLANE_METHODS.items():
            if any(r["method"] == m for r in rows):
                lines.append(f"| {name} | " + " | ".join(cell(m, st) for st in settings) + " |")
        steps = sorted({r["iconet"]["fit"]["steps"] for r in rows if r["method"] == "iconet" and "iconet" in r})
        return "\n".join(lines + ["", f"{volume} (held out), 1-mm truth made thick along one axis (Gaussian slice "
                                  "profile, FWHM = spacing), brought back to 1 mm; PSNR and SSIM (3-D) inside the head "
                                  "mask; mean over the axes listed in the cell (they differ between rows: compare rows by the Δ in brackets, "
                                  "paired with cubic axis by axis); CPU s = user + system of the method's processes, "
                                  f"fit included; `--isotropic` fitted for {', '.join(map(str, steps))} steps (bf16). "
                                  "Protocol and every cell: docs/through_plane.md. Rebuild: `python "
                                  "benchmarks/through_plane.py --table-only && python benchmarks/tables.py`."])

    return build


TABLES: dict[str, Callable[[], str]] = {
    "through_plane": through_plane(),
    "quality_x2": quality("kspace_x2"),
    "quality_x4": quality("kspace_x4"),
    "quality_bicubic_x2": quality("bicubic_x2"),
    "quality_bicubic_x4": quality("bicubic_x4"),
    "seeds_x2": seeds(2),
    "seeds_x4": seeds(4),
    "band_consistency": band_consistency,
    "speed_shipped": speed(
        [("inference_speed_fast_cpu.json", ["iconet-t1-x2", "iconet-t1-x2-fast", "edsr"], 2),
         ("inference_speed_shipped_cpu.json", ["iconet-t1-x4", "edsr"], 4)],
        "the shipped weights",
        "python benchmarks/inference_speed.py --models edsr iconet iconet-t1-x2 iconet-t1-x2-fast --scales 2 "
        "--conv-reference --json benchmarks/results/inference_speed_fast_cpu.json` and `python "
        "benchmarks/inference_speed.py --models edsr iconet iconet-t1-x4 --scales 4 --conv-reference --json "
        "benchmarks/results/inference_speed_shipped_cpu.json"),
    "speed_configs": speed(
        [("inference_speed_cpu.json", ["iconet", "edsr", "t2net"], 2),
         ("inference_speed_cpu.json", ["iconet", "edsr", "t2net"], 4)],
        "untrained weights: speed does not depend on them",
        "python benchmarks/inference_speed.py --json benchmarks/results/inference_speed_cpu.json"),
    "speed_fast_x4": speed(
        [("inference_speed_fast_x4_cpu.json",
          ["iconet-t1-x4", "runs/cpu_spec/exports/kspace_x4_iconet_fast", "iconet", "edsr"], 4)],
        "trained weights",
        "python benchmarks/inference_speed.py --models edsr iconet iconet-t1-x4 "
        "runs/cpu_spec/exports/kspace_x4_iconet_fast --scales 4 --json benchmarks/results/inference_speed_fast_x4_cpu.json"),
    "complexity": complexity,
}


def rebuild(text: str, where: str) -> str:
    """``text`` with every generated table rewritten; raises ValueError on an unknown NAME."""

    def one(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise ValueError(f"{where}: unknown table '{name}' (known: {', '.join(TABLES)})")
        return m.group(1) + TABLES[name]().strip() + "\n" + m.group(4)

    if text.count("<!-- table:") != text.count("<!-- /table -->"):
        raise ValueError(f"{where}: a '<!-- table:NAME -->' marker without its '<!-- /table -->'")
    return MARKER.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is not what the JSON gives")
    args = ap.parse_args(argv)
    stale = []
    for rel in FILES:
        path = REPO / rel
        if not path.exists():
            continue
        old = path.read_text()
        new = rebuild(old, rel)
        if new == old:
            continue
        stale.append(rel)
        if not args.check:
            path.write_text(new)
    if args.check and stale:
        print(f"stale tables in {', '.join(stale)}: run python benchmarks/tables.py", file=sys.stderr)
        return 1
    print(("rewrote " + ", ".join(stale)) if stale else "every table is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())

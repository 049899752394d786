"""Put an exported model into the package's zoo, its card completed with the held-out scores.

    python scripts/ship_model.py EXPORTED_DIR --name iconet-t1-x2 --eval EVAL_DIR [--model-key NAME]
    python scripts/ship_model.py --name iconet-t1-x2 --sample-only    # restate a shipped model's sample score

Copies ``model.safetensors``, ``config.yaml`` and ``metrics.json`` of an ``iconet export``
folder to ``src/iconet/zoo/<name>/`` and writes its ``model_card.md``: the exported card (data,
degradation, recipe, hardware, training time, validation on the held-out slab of S1) followed
by the Colin27 results of ``iconet eval`` (every model of that evaluation, so the card shows the
peers trained alike, with the protocol line) and what the model is not for. It also scores the
model on the package's own sample as ``iconet demo`` does and states that score in
``metrics.json`` (``"sample"``) and the card, where ``tests/test_zoo.py`` holds the shipped
weights to it (0.01 dB). Nothing is written unless every input is readable; the folder is built
next to the target and renamed.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ZOO = Path(__file__).resolve().parent.parent / "src" / "iconet" / "zoo"

LIMITS = """## Limits: read before use

- **Trained on one subject.** The training data are the T1 volume of a single healthy adult
  (pycortex S1, 1 mm isotropic, 3 planes, minus a held-out slab used for checkpoint choice).
  The scores above are on one other subject (Colin27, a 27-scan average with higher SNR than a
  single scan). Neither says how the model does on your scanner, population or pathology.
- **One degradation.** The LR inputs were made by {degradation}. Real low-resolution
  acquisitions differ (thick slices, partial Fourier, noise, motion); a scan degraded otherwise
  is outside what the model saw, and the outputs may look plausible while being wrong.
- **Other contrasts and modalities** (T2, FLAIR, PD, CT, PET): fine-tune with the recipes
  (`iconet train configs/ixi_t2_x2.yaml "model={{init: {name}}}" ...`, README, Fine-tuning) and
  validate on your own held-out subjects before trusting it.
- **Short training.** {short}
- Not for clinical diagnosis or any decision about a patient.
"""


def colin27_section(eval_dir: Path, key: str, note: str = "") -> str:
    summary = json.loads((eval_dir / "summary.json").read_text())
    table = (eval_dir / "table.md").read_text().strip()
    mine = summary["models"].get(key)
    if mine is None:
        raise SystemExit(f"{eval_dir}/summary.json: no model named {key!r} (have {sorted(summary['models'])})")
    sr, rec = mine["sr"], mine.get("rec", {})
    head = (f"This model (row `{key}`): SR vs HR **{sr['psnr'][0]:.2f} dB PSNR, {sr['ssim'][0]:.4f} SSIM**"
            + (f"; reconstruction vs CLEAN {rec['psnr'][0]:.2f} dB, {rec['ssim'][0]:.4f}" if rec else "") + ".")
    return "\n".join([
        "## Held-out evaluation: Colin27 (never seen in training or model selection)",
        "",
        f"`iconet eval data/colin27_T1.nii.gz` with the degradation `{json.dumps(summary.get('degradation', {}))}`,"
        " axis 2 (axial), every foreground slice. The peers in the table were trained with the same"
        " recipe, data, batch, patch and steps (benchmarks/quality.py). The ms/slice column was"
        " taken on a shared 2-core CPU while other jobs ran: for speed see benchmarks/inference_speed.py.",
        "",
        head,
        "",
        table,
        "",
        *([note, ""] if note else []),
    ])


SAMPLE_HEAD = "## On the package's sample"


def state_sample_score(folder: Path, name: str) -> dict[str, float]:
    """Score the model in ``folder`` on the shipped sample (:func:`iconet.demo.score_on_sample`) and
    write the score into its ``metrics.json`` (``"sample"``) and ``model_card.md`` (one section)."""
    from iconet.demo import score_on_sample
    from iconet.hub import load_model

    score = score_on_sample(load_model(str(folder))[0])
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["sample"] = {**score, "how": f"iconet demo --model {name}: the 8 shipped Colin27 slices, "
                                         "default k-space degradation, default protocol, fp32 on the CPU"}
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    card_path = folder / "model_card.md"
    card = card_path.read_text().split("\n" + SAMPLE_HEAD)[0].rstrip("\n")
    card_path.write_text(card + f"\n\n{SAMPLE_HEAD}\n\n`iconet demo --model {name}` (8 Colin27 slices shipped with "
                         f"iconet): **{score['psnr']:.2f} dB PSNR, {score['ssim']:.4f} SSIM**. A test checks the "
                         "shipped weights against this number.\n")
    return score


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export_dir", type=Path, nargs="?")
    ap.add_argument("--name", required=True)
    ap.add_argument("--eval", type=Path, help="an iconet eval --out folder that scored this model")
    ap.add_argument("--sample-only", action="store_true",
                    help="only (re)state the shipped model NAME's score on the package's sample")
    ap.add_argument("--model-key", default=None, help="the model's row name in that evaluation (default: folder name)")
    ap.add_argument("--short", default="", help="a sentence on the training budget, for the limits")
    ap.add_argument("--note", default="", help="a paragraph under the Colin27 table (e.g. where each row was trained)")
    args = ap.parse_args()
    if args.sample_only:
        print(f"{args.name}: sample score {state_sample_score(ZOO / args.name, args.name)}")
        return 0
    if args.export_dir is None or args.eval is None:
        ap.error("EXPORTED_DIR and --eval are needed to ship a model")
    key = args.model_key or args.export_dir.name
    card = (args.export_dir / "model_card.md").read_text()
    config = (args.export_dir / "config.yaml").read_text()
    import yaml

    deg = yaml.safe_load(config)["degradation"]
    deg_text = ("k-space truncation plus a Cartesian undersampling mask"
                f" ({deg['sampled_fraction']:.0%} of the lines, a fresh random mask per training sample)"
                if deg["kind"] == "kspace" else f"{deg['kind']} downsampling")
    card = card.replace("# iconet model card:", f"# {args.name} — iconet model card:", 1)
    card += "\n" + colin27_section(args.eval, key, args.note) + "\n" + LIMITS.format(
        degradation=deg_text, name=args.name, short=args.short or "See the training recipe above.")
    target = ZOO / args.name
    tmp = ZOO / f".{args.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in ("model.safetensors", "config.yaml", "metrics.json"):
        shutil.copy2(args.export_dir / f, tmp / f)
    (tmp / "model_card.md").write_text(card)
    state_sample_score(tmp, args.name)
    for f in tmp.iterdir():
        f.chmod(0o644)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    init = ZOO / "__init__.py"
    if not init.exists():
        init.write_text('"""Shipped iconet models: one folder per model (model.safetensors, config.yaml, model_card.md)."""\n')
    print(f"wrote {target} ({(target / 'model.safetensors').stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

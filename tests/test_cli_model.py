"""``iconet model NAME_OR_DIR`` on shipped and exported models, and ``--list`` (issue 18, item 6).

The expected values are read straight from the model folders' files (config.yaml with PyYAML,
metrics.json with json) and from the loaded weights, not from the code under test.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from iconet.cli import main
from iconet.hub import available_models, load_model
from iconet.models.summary import count_flops, count_parameters

SHIPPED = "iconet-t1-x2"


@pytest.fixture(scope="module")
def shipped():
    if SHIPPED not in available_models():
        pytest.skip(f"{SHIPPED} is not shipped in this install")
    model, info = load_model(SHIPPED)
    return model, info


def _field(text: str, label: str) -> str:
    """The value of the line ``<label> <value>`` of a summary."""
    lines = [line for line in text.splitlines() if line.split(" ", 1)[0] == label]
    assert len(lines) == 1, f"no single '{label}' line in:\n{text}"
    return lines[0][len(label):].strip()


def test_a_shipped_name_is_summarised_from_its_folder(shipped, capsys):
    model, info = shipped
    assert main(["model", SHIPPED, "--size", "16", "12"]) == 0
    out = capsys.readouterr().out
    cfg = yaml.safe_load((info.path / "config.yaml").read_text())
    metrics = json.loads((info.path / "metrics.json").read_text())
    assert _field(out, "model").startswith(f"{SHIPPED}  (shipped model, {info.path})")
    assert _field(out, "architecture") == f"{cfg['model']['name']}  (scale x{cfg['model']['scale']}, 1 channel(s))"
    assert _field(out, "grid") == cfg["grid"]
    domain = _field(out, "domain")
    assert domain.startswith(f"{cfg['domain']['modality']} {cfg['domain']['contrast']} ({cfg['domain']['intensity']})")
    assert cfg["domain"]["trained_on"] in domain
    assert _field(out, "normalise") == (f"percentile (percentile={cfg['data']['normalization']['percentile']:g}); "
                                        "statistic of the HR volume (reference: hr, older): iconet infer takes it "
                                        "on the LR, inputs run brighter")
    assert _field(out, "exported") == f"step {metrics['step']}, EMA weights"
    assert _field(out, "card") == str(info.path / "model_card.md")
    val = metrics["validation"]
    assert _field(out, "validation") == (
        f"PSNR {val['val/sr_psnr']:.2f} ± {val['val/sr_psnr_std']:.2f} dB, SSIM {val['val/sr_ssim']:.4f} ± "
        f"{val['val/sr_ssim_std']:.4f} (mean ± std over {int(val['val/volumes'])} volumes, step {metrics['step']})"
    )
    assert _field(out, "parameters") == f"{count_parameters(model):,}"
    assert _field(out, "FLOPs").startswith(f"{count_flops(model, (1, 1, 16, 12)) / 1e9:,.2f} G on a 16x12 LR input")
    assert "1x1x32x24" in _field(out, "outputs.sr")


def test_an_exported_folder_without_domain_and_with_one_volume(shipped, tmp_path, capsys):
    _, info = shipped
    folder = tmp_path / "my_x2"
    shutil.copytree(info.path, folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg.pop("domain", None)  # exported before models knew their domain
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["validation"]["val/volumes"] = 1.0
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert main(["model", str(folder), "--size", "8", "8"]) == 0
    out = capsys.readouterr().out
    assert _field(out, "model").startswith(f"{folder}  (exported model, {folder})")
    assert _field(out, "domain") == "unknown"
    val = metrics["validation"]
    assert _field(out, "validation") == (f"PSNR {val['val/sr_psnr']:.2f} dB, SSIM {val['val/sr_ssim']:.4f} "
                                         f"(n = 1 volume, step {metrics['step']})")


def test_list_shows_architectures_and_every_shipped_model(capsys):
    assert main(["model", "--list"]) == 0
    out = capsys.readouterr().out
    archs, shipped_part = out.split("\n\n")
    assert [line.split()[0] for line in archs.splitlines()[1:]] == ["bicubic", "edsr", "iconet", "swinir", "t2net", "zerofill"]
    rows = {line.split()[0]: line.split() for line in shipped_part.splitlines()[2:]}
    assert sorted(rows) == available_models() and rows
    for name, row in rows.items():
        model, info = load_model(name)
        cfg = yaml.safe_load((info.path / "config.yaml").read_text())
        assert row[1] == cfg["model"]["name"] and row[2] == f"x{cfg['model']['scale']}"
        assert row[3:5] == [cfg["domain"]["modality"], cfg["domain"]["contrast"]]
        assert row[-1] == f"{count_parameters(model):,}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model", SHIPPED, "width=3"], f"'{SHIPPED}' is a trained model, its configuration is fixed"),
        (["model", "iconet-t1-x2-fats"], "unknown model 'iconet-t1-x2-fats' (did you mean 'iconet-t1-x2-fast'?): "
                                         "not a shipped model (iconet-t1-x2"),
    ],
)
def test_one_line_errors(shipped, argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iconet: error: ") and message in err

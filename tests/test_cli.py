"""The thin command line: summaries, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from iconet.cli import main
from iconet.data.samples import sample_path
from iconet.models import build_model
from iconet.models.summary import count_flops, count_parameters


def test_model_summary_prints_parameters_flops_and_outputs(capsys):
    assert main(["model", "iconet", "scale=4", "--size", "16", "12"]) == 0
    text = capsys.readouterr().out
    model = build_model("iconet", scale=4)
    assert f"parameters   {count_parameters(model):,}" in text
    assert f"{count_flops(model, (1, 1, 16, 12)) / 1e9:,.2f} G on a 16x12 LR input" in text
    assert "outputs.sr    1x1x32x24, 1x1x64x48" in text
    assert "outputs.rec   1x1x16x12, 1x1x32x24" in text


def test_model_summary_reads_the_model_section_of_a_yaml_recipe(tmp_path, capsys):
    recipe = tmp_path / "exp.yaml"
    recipe.write_text("model:\n  name: edsr\n  scale: 4\n  n_blocks: 2\n")
    assert main(["model", str(recipe), "--size", "8", "8"]) == 0
    out = capsys.readouterr().out
    assert "edsr  (scale x4" in out and "1x1x32x32" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model", "iconet", "widht=3"], "unknown key 'model.widht' in ICONetConfig (did you mean 'width'?)"),
        (["model", "iconet", "scale=3"], "scale must be one of (2, 4, 8), got 3"),
        (["model", "icnet"], "unknown model 'icnet' (did you mean 'iconet'?)"),
        (["model", "missing.yaml"], "missing.yaml: config file not found"),
        (["data", "info", "no/such/file.nii.gz"], "no/such/file.nii.gz"),
    ],
)
def test_user_errors_are_one_line_with_exit_status_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iconet: error: ") and message in err


def test_data_info_on_the_shipped_sample(capsys):
    assert main(["data", "info", str(sample_path())]) == 0
    out = capsys.readouterr().out
    assert "181 x 217 x 8" in out and "uint8" in out and "1 x 1 x 4 mm" in out and "RAS" in out


def test_console_script_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "iconet", "model", "--list"], capture_output=True, text=True)
    assert proc.returncode == 0
    architectures = proc.stdout.split("\n\n")[0].splitlines()[1:]
    assert [line.split()[0] for line in architectures] == ["bicubic", "edsr", "iconet", "swinir", "t2net", "zerofill"]

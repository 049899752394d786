"""``iconet ablate``: spec checks, shared-budget check, a real two-variant ablation on CPU
(tiny ICONet, the shipped 8-slice sample as three "subjects"), skip/resume of runs, the table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from iconet.cli import main
from iconet.config import ConfigError
from iconet.engine.ablation import (
    AblationSpec,
    ablation_rows,
    ablation_table,
    load_ablation,
    variant_configs,
)
from iconet.engine.checkpoint import load_checkpoint
from iconet.engine.trainer import Trainer
from iconet.models import build_model
from iconet.models.summary import count_parameters
from tests._run_fixtures import make_run

REPO = Path(__file__).resolve().parents[1]


def tiny_recipe(folder: Path, data_root: Path) -> Path:
    """A tiny training recipe (4 steps, validation and checkpoint every 2) in ``folder``."""
    recipe = {
        "model": {"name": "iconet", "width": 8, "heads": 2, "groups_per_stage": 1, "blocks_per_group": 1},
        "data": {"root": str(data_root), "layout": "plain", "train_subjects": ["subA", "subB"],
                 "val_subjects": ["subC"], "axis": 2, "patch_size": 16, "batch_size": 4, "slices_per_volume": 3},
        "degradation": {"mask_mode": "random"},
        "optim": {"lr": 1e-3, "grad_clip": 1.0},
        "schedule": {"warmup_steps": 1},
        "run": {"steps": 4, "precision": "fp32", "log_every": 1, "val_every": 2, "ckpt_every": 2,
                "ema_decay": 0.5, "progress": False, "threads": 1},
    }
    path = folder / "recipes" / "tiny.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    return path


def write_spec(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / "ablation" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


TWO = "base: ../recipes/tiny.yaml\nvariants:\n  full: []\n  fusion_add: [model.fusion=add]\n"


# ----------------------------------------------------------------------------- the spec


@pytest.mark.parametrize("text, expected", [
    ("variants:\n  full: []\n", "'base' is missing"),
    ("base: ../recipes/nope.yaml\nvariants:\n  full: []\n", "base recipe ../recipes/nope.yaml not found"),
    ("base: ../recipes/tiny.yaml\nvariants:\n  add: [model.fusion=add]\n", "no 'full' variant"),
    ("base: ../recipes/tiny.yaml\nvariants:\n  full: []\nsteps: 10\n", "unknown top-level key 'steps'"),
    ("base: ../recipes/tiny.yaml\nvariants:\n  full: []\n  add: [model.fusion]\n",
     "variant 'add': override 'model.fusion' must look like key=value"),
    ("base: ../recipes/tiny.yaml\nvariants:\n  full: []\n  add: model.fusion=add\n",
     "variant 'add' must be a list"),
    ("base: ../recipes/tiny.yaml\nvariants:\n  full: []\n  ../x: []\n", "must be a folder name"),
    ("base: ../recipes/tiny.yaml\n", "'variants' must be a mapping"),
])
def test_spec_errors_name_the_file_and_the_problem(tmp_path, data_root, text, expected):
    tiny_recipe(tmp_path, data_root)
    path = write_spec(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_ablation(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)) and expected in msg


def test_shipped_spec_only_switches_the_model(tmp_path):
    spec = load_ablation(REPO / "configs" / "ablation" / "ablation_t1_x4.yaml")
    assert spec.base.resolve() == (REPO / "configs" / "zoo_t1_x4.yaml").resolve()
    assert list(spec.variants)[0] == "full" and spec.variants["full"] == []
    cfgs = variant_configs(spec, ["run.steps=10"], tmp_path / "out")
    assert set(cfgs) == set(spec.variants)
    for name, cfg in cfgs.items():
        assert Path(cfg.run.out_dir) == tmp_path / "out" / name and cfg.run.steps == 10
    assert cfgs["fusion_add"].model["fusion"] == "add" and cfgs["full"].model["fusion"] == "gated"
    assert cfgs["no_rec_branch"].model["rec_branch"] is False
    assert cfgs["full"].model["spectral_branch"] == "rec" and cfgs["no_spectral_branch"].model["spectral_branch"] == "none"


def test_variant_changing_a_non_model_key_is_refused(tmp_path, data_root, capsys):
    tiny_recipe(tmp_path, data_root)
    path = write_spec(tmp_path, TWO + "  faster: [model.fusion=add, optim.lr=0.01]\n")
    with pytest.raises(ConfigError, match=r"variant 'faster' changes optim.lr \(0.001 in full, 0.01 here\)"):
        variant_configs(load_ablation(path), [], tmp_path / "out")
    assert main(["ablate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "variant 'faster' changes optim.lr" in err and "model.*" in err
    assert not (tmp_path / "out").exists()  # refused before anything was written
    # the user's overrides apply to every variant alike, but never choose the folder
    ok = load_ablation(write_spec(tmp_path, TWO, "two.yaml"))
    with pytest.raises(ConfigError, match="--out"):
        variant_configs(ok, ["run.out_dir=elsewhere"], tmp_path / "out")
    with pytest.raises(ConfigError, match="variant 'full': unknown key 'model.nope'"):
        variant_configs(ok, ["model.nope=1"], tmp_path / "out")


# ----------------------------------------------------------------------------- a real ablation


def best_psnr(run: Path) -> float:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return max(r["val/sr_psnr"] for r in rows)


def table_cells(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0] not in ("variant", "---"):
            rows[cells[0]] = cells
    return rows


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, data_root):
    """A two-variant ablation trained through the CLI; ``full`` was interrupted at step 2
    beforehand, so the command resumes it and trains ``fusion_add`` from scratch."""
    root = tmp_path_factory.mktemp("ablation")
    tiny_recipe(root, data_root)
    spec = write_spec(root, TWO)
    out = root / "out"
    partial = variant_configs(load_ablation(spec), [], out)["full"]
    t = Trainer(partial)
    t.fit(stop_at=2)
    t.close()
    assert load_checkpoint(out / "full" / "checkpoints" / "last.pt")["step"] == 2
    code = main(["ablate", str(spec), "--out", str(out)])
    return spec, out, code


def test_ablation_trains_every_variant_and_tabulates_deltas(ablation, capsys):
    spec, out, code = ablation
    assert code == 0
    for name in ("full", "fusion_add"):
        assert load_checkpoint(out / name / "checkpoints" / "last.pt")["step"] == 4
    assert "step 2: iconet ablate" in (out / "full" / "command.txt").read_text()  # resumed, not restarted
    md = (out / "ablation.md").read_text()
    cells = table_cells(md)
    assert list(cells) == ["full", "fusion_add"]
    full, add = best_psnr(out / "full"), best_psnr(out / "fusion_add")
    assert float(cells["full"][3]) == 0.0
    assert cells["fusion_add"][3] == f"{add - full:+.2f}"
    assert cells["full"][2] == f"{full:.2f}" and cells["fusion_add"][2] == f"{add:.2f}"
    assert cells["full"][6] != "—" and cells["fusion_add"][6] != "—"  # both have a reconstruction branch
    assert "Protocol:" in md and "run.steps = 4" in md and "data_range" in md
    report = json.loads((out / "ablation.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert rows["full"]["delta"]["val/sr_psnr"] == 0.0
    assert rows["fusion_add"]["delta"]["val/sr_psnr"] == add - full
    assert rows["fusion_add"]["metrics"]["val/sr_psnr"] == add
    for name, r in rows.items():
        cfg = load_checkpoint(out / name / "checkpoints" / "best.pt")["config"]
        assert r["parameters"] == count_parameters(build_model(cfg["model"]))
        assert r["steps_done"] == r["steps"] == 4 and r["step"] in (2, 4)
    assert rows["fusion_add"]["parameters"] < rows["full"]["parameters"]  # no gate convolutions
    assert f"{rows['full']['parameters']:,}" == cells["full"][1]


def test_rerun_skips_finished_runs_and_table_only_reads_them(ablation, capsys):
    spec, out, code = ablation
    assert code == 0
    files = [out / n / f for n in ("full", "fusion_add")
             for f in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.jsonl", "train.jsonl")]
    before = {f: f.stat().st_mtime_ns for f in files}
    md = (out / "ablation.md").read_text()
    capsys.readouterr()
    assert main(["ablate", str(spec), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("not retrained") == 2 and "training" not in printed
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert (out / "ablation.md").read_text() == md and md in printed
    assert main(["ablate", str(spec), "--out", str(out), "--table-only"]) == 0
    assert (out / "ablation.md").read_text() == md
    assert {f: f.stat().st_mtime_ns for f in files} == before
    # --only restricts training to the named variants (and full), the table keeps every run
    capsys.readouterr()
    assert main(["ablate", str(spec), "--only", "fusion_add", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("not retrained") == 2 and (out / "ablation.md").read_text() == md
    # a spec with a variant not run yet: tabulated runs plus a note (a key=value after --only is an override)
    three = write_spec(spec.parent.parent, TWO + "  no_fusion: [model.fusion=none]\n", "three.yaml")
    assert main(["ablate", str(three), "--out", str(out), "--table-only", "--only", "fusion_add", "run.steps=4"]) == 0
    printed = capsys.readouterr().out
    assert list(table_cells(printed)) == ["full", "fusion_add"] and "Not run yet: no_fusion." in printed
    assert json.loads((out / "ablation.json").read_text())["not_run"] == ["no_fusion"]
    assert main(["ablate", str(spec), "--out", str(out), "--only", "nope"]) == 2
    assert "--only nope: no such variant" in capsys.readouterr().err


def test_out_dir_holding_another_config_is_an_error(ablation, capsys):
    spec, out, _ = ablation
    before = (out / "full" / "checkpoints" / "last.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["ablate", str(spec), "run.seed=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'full'} holds a run of a different config" in err and "run.seed" in err
    assert (out / "full" / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_table_only_with_missing_runs_exits_2(ablation, tmp_path, capsys):
    spec, out, _ = ablation
    assert main(["ablate", str(spec), "--out", str(tmp_path / "empty"), "--table-only"]) == 2
    err = capsys.readouterr().err
    assert "no run for full, fusion_add" in err and err.count("\n") == 1
    assert not (tmp_path / "empty" / "ablation.md").exists()


# ----------------------------------------------------------------------------- rows and table


def test_rows_pick_the_best_row_and_mark_missing_reconstruction(tmp_path):
    full = make_run(tmp_path / "a", "iconet")  # run.steps 1000, last.pt at 1000
    peer = make_run(tmp_path / "b", "edsr")
    proto = "PSNR over stacked slices"
    rows_full = [{"step": 300, "val/sr_psnr": 30.0, "val/sr_ssim": 0.90, "val/rec_psnr": 33.0, "protocol": proto},
                 {"step": 700, "val/sr_psnr": 31.0, "val/sr_ssim": 0.91, "val/rec_psnr": 34.0, "protocol": proto},
                 # step 700 validated again after a resume: the latest row counts
                 {"step": 700, "val/sr_psnr": 31.5, "val/sr_ssim": 0.92, "val/rec_psnr": 34.5, "protocol": proto},
                 {"step": 1000, "val/sr_psnr": 31.25, "val/sr_ssim": 0.93, "val/rec_psnr": 35.0, "protocol": proto}]
    (full / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_full))
    (peer / "metrics.jsonl").write_text(json.dumps(
        {"step": 1000, "val/sr_psnr": 30.5, "val/sr_ssim": 0.95, "protocol": proto, "val/volumes": 1.0}) + "\n")
    rows = ablation_rows({"full": full, "edsr": peer})
    assert [r["step"] for r in rows] == [700, 1000]
    assert rows[0]["metrics"]["val/sr_psnr"] == 31.5 and rows[1]["metrics"]["val/rec_psnr"] is None
    assert rows[1]["delta"] == {"val/sr_psnr": 30.5 - 31.5, "val/sr_ssim": 0.95 - 0.92, "val/rec_psnr": None}
    md = ablation_table(rows)
    cells = table_cells(md)
    assert cells["full"][3] == "0.00" and cells["full"][5] == "0.0000" and cells["full"][6] == "34.50"
    assert cells["edsr"][3] == "-1.00" and cells["edsr"][5] == "+0.0300" and cells["edsr"][6] == "—"
    assert md.rstrip().splitlines()[-1].startswith("Protocol: Best checkpoint of each run by val/sr_psnr (max)")
    assert proto in md


def test_spec_dataclass_round_trip(tmp_path, data_root):
    base = tiny_recipe(tmp_path, data_root)
    spec = AblationSpec(base=base, variants={"full": [], "no_fusion": ["model.fusion=none"]})
    cfgs = variant_configs(spec, ["run.steps=2"], tmp_path / "o")
    assert cfgs["no_fusion"].model["fusion"] == "none" and cfgs["full"].run.steps == 2


def test_sigterm_stops_a_variant_with_143_and_a_command_that_resumes_it(tmp_path, data_root, monkeypatch, capsys):
    """A SIGTERM during a variant: the step finishes, last.pt is saved, exit 143 (not Ctrl-C's
    130), and the one stderr line names the signal and the ablate command that resumes it."""
    import os
    import shlex
    import signal

    tiny_recipe(tmp_path, data_root)
    spec = write_spec(tmp_path, TWO)
    out = tmp_path / "out"
    orig = Trainer.train_step

    def term_after_step_1(self, batch):  # type: ignore[no-untyped-def]
        result = orig(self, batch)
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(Trainer, "train_step", term_after_step_1)
    assert main(["ablate", str(spec), "--out", str(out)]) == 143
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("iconet:")]
    assert len(err) == 1 and "stopped by SIGTERM after step" in err[0], err
    saved = load_checkpoint(out / "full" / "checkpoints" / "last.pt")["step"]
    assert saved >= 1 and not (out / "fusion_add" / "checkpoints").exists()
    again = shlex.split(err[0].split("continue with: ")[1].split(" (resumes")[0])
    assert again[:2] == ["iconet", "ablate"]
    monkeypatch.setattr(Trainer, "train_step", orig)
    assert main(again[1:]) == 0
    assert f"step {saved}: iconet ablate" in (out / "full" / "command.txt").read_text()  # resumed, not restarted
    assert load_checkpoint(out / "fusion_add" / "checkpoints" / "last.pt")["step"] == 4

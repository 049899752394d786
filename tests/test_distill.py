"""Knowledge distillation: ``distill.teacher`` adds a frozen model's outputs as targets.

Checked: :func:`iconet.losses.distillation_loss` against L1 distances computed by hand (every
stage, a one-output teacher, a teacher without a reconstruction branch, a scale mismatch); a
real training step of a tiny ICONet with a real exported teacher gives exactly the data loss
plus the distance to the hub-loaded teacher's outputs, recomputed here, and leaves the teacher's
weights untouched; a student initialised from its own teacher starts with zero distillation
terms, and its model card names both; a teacher of another scale, grid or unknown name is a one-line ConfigError.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from iconet.config import ConfigError
from iconet.data.datasets import collate
from iconet.engine.trainer import Trainer, train
from iconet.export import export_run
from iconet.hub import load_model
from iconet.losses import LossConfig, distillation_loss, multistage_loss

from _run_fixtures import make_cfg


def _x4_outputs(seed: int, rec: bool = True) -> dict[str, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = {"sr": [torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 32, 32, generator=g)], "rec": []}
    if rec:
        out["rec"] = [torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 16, 16, generator=g)]
    return out


TARGETS_X4 = {"hr": [torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 32, 32)],
              "clean": [torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 16, 16)]}


def test_distillation_loss_is_the_weighted_l1_to_the_teacher_at_every_stage():
    student, teacher = _x4_outputs(0), _x4_outputs(1)
    cfg = LossConfig(sr_weights=[0.5, 1.0], rec_weight=0.25, rec_weights=[1.0, 2.0])
    total, terms = distillation_loss(student, teacher, TARGETS_X4, 3.0, cfg)
    d = [F.l1_loss(s, t) for s, t in zip(student["sr"], teacher["sr"])]
    r = [F.l1_loss(s, t) for s, t in zip(student["rec"], teacher["rec"])]
    expected = 3.0 * (0.5 * d[0] + 1.0 * d[1] + 0.25 * (1.0 * r[0] + 2.0 * r[1]))
    torch.testing.assert_close(total, expected)
    assert sorted(terms) == ["kd_rec_1", "kd_rec_2", "kd_sr_1", "kd_sr_2"]
    torch.testing.assert_close(terms["kd_sr_1"], d[0])
    torch.testing.assert_close(terms["kd_rec_2"], r[1])
    # the teacher as its own student: nothing to learn
    zero, _ = distillation_loss(teacher, teacher, TARGETS_X4, 3.0, cfg)
    assert zero.item() == 0.0


def test_one_output_teacher_supervises_only_the_last_stage_and_wrong_scale_is_refused():
    student = _x4_outputs(0)
    edsr_like = {"sr": [torch.rand(2, 1, 32, 32)], "rec": []}
    total, terms = distillation_loss(student, edsr_like, TARGETS_X4, 1.0, LossConfig())
    assert sorted(terms) == ["kd_sr_2"]
    torch.testing.assert_close(total, F.l1_loss(student["sr"][1], edsr_like["sr"][0]))
    x2_teacher = {"sr": [torch.rand(2, 1, 16, 16)], "rec": [torch.rand(2, 1, 8, 8)]}
    with pytest.raises(ValueError, match=r"none of the student's final size \(32, 32\)"):
        distillation_loss(student, x2_teacher, TARGETS_X4, 1.0, LossConfig())


def test_training_step_adds_the_distance_to_the_real_teachers_outputs(data_root, exported, tmp_path):
    """One real step: the logged loss equals the data loss + weight × distance to the teacher,
    both recomputed here with the hub-loaded teacher on the same batch; the teacher is frozen."""
    cfg = make_cfg(data_root, tmp_path / "run", f"distill.teacher={exported}", "distill.weight=0.7",
                   "run.channels_last=false")
    trainer = Trainer(cfg)
    batch = collate([trainer.train_ds[i] for i in range(cfg.data.batch_size)])
    teacher, _ = load_model(exported)
    with torch.no_grad():
        student_out = trainer.model(batch["lr"])
        teacher_out = teacher(batch["lr"])
    targets = {"hr": batch["hr_stages"], "clean": batch["clean_stages"]}
    data_loss, _ = multistage_loss(student_out, targets, cfg.loss)
    kd, _ = distillation_loss(student_out, teacher_out, targets, 0.7, cfg.loss)
    assert kd.item() > 0
    logs = trainer.train_step(batch)
    torch.testing.assert_close(logs["loss"], data_loss + kd, rtol=1e-5, atol=1e-7)
    assert {"kd_sr_1", "kd_rec_1", "sr_1", "rec_1"} <= set(logs)
    saved = load_file(str(exported / "model.safetensors"))
    for name, value in trainer.teacher.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    trainer.close()


def test_student_started_from_its_teacher_has_nothing_to_distil_at_first(data_root, exported, tmp_path):
    cfg = make_cfg(data_root, tmp_path / "run", f"distill.teacher={exported}", f"init={exported}",
                   "run.steps=1", "run.val_every=0", "run.ckpt_every=0")
    train(cfg)
    rows = (tmp_path / "run" / "train.jsonl").read_text().splitlines()
    first = json.loads(rows[0])
    assert first["train/kd_sr_1"] < 1e-6 and first["train/kd_rec_1"] < 1e-6
    assert first["train/sr_1"] > 1e-3
    # the exported model's card says where it came from
    card = (export_run(tmp_path / "run", tmp_path / "model", checkpoint="last") / "model_card.md").read_text()
    assert f"| `initialised from` | {exported} |" in card
    assert f"| `distilled from` | {exported} (its outputs as extra targets, weight 1) |" in card


@pytest.mark.parametrize("teacher, needle", [
    ("iconet-t1-x4", "distill.teacher iconet-t1-x4 is a x4 model on the 'kspace' grid but this run trains x2"),
    ("no-such-model", "distill.teacher: 'no-such-model' is neither a model folder nor a shipped model"),
    ("./missing/folder", "distill.teacher: ./missing/folder: model folder not found"),
])
def test_a_teacher_that_does_not_fit_is_a_one_line_error(data_root, tmp_path, teacher, needle):
    with pytest.raises(ConfigError) as exc:
        make_cfg(data_root, tmp_path / "run", f"distill.teacher={teacher}")
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_teacher_on_another_grid_is_refused(data_root, tmp_path):
    with pytest.raises(ConfigError, match="on the 'kspace' grid but this run trains x2 on the 'centre' grid"):
        make_cfg(data_root, tmp_path / "run", "distill.teacher=iconet-t1-x2", "degradation.kind=bicubic",
                 "model.grid=centre")

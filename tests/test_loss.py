"""The multi-stage, multi-task loss."""

from __future__ import annotations

import pytest
import torch

from iconet.losses import LossConfig, multistage_loss


def _targets(stages=2, h=4):
    hr = [torch.rand(2, 1, h * 2**k, h * 2**k) for k in range(1, stages + 1)]
    clean = [torch.rand(2, 1, h * 2**k, h * 2**k) for k in range(stages)]
    return {"hr": hr, "clean": clean}


def test_zero_for_perfect_outputs_positive_otherwise():
    t = _targets()
    perfect = {"sr": [x.clone() for x in t["hr"]], "rec": [x.clone() for x in t["clean"]]}
    total, terms = multistage_loss(perfect, t, LossConfig())
    assert total.item() == 0.0 and set(terms) == {"sr_1", "sr_2", "rec_1", "rec_2"}
    perfect["rec"][0] = perfect["rec"][0] + 0.1
    total, terms = multistage_loss(perfect, t, LossConfig())
    assert total.item() > 0 and terms["rec_1"].item() == pytest.approx(0.1, rel=1e-5)


def test_weights_come_from_the_config():
    t = _targets()
    out = {"sr": [x + 1.0 for x in t["hr"]], "rec": [x + 2.0 for x in t["clean"]]}
    total, _ = multistage_loss(out, t, LossConfig(sr_weights=[0.25, 1.0], rec_weight=0.5, rec_weights=[1.0, 0.0]))
    assert total.item() == pytest.approx(0.25 * 1 + 1.0 * 1 + 0.5 * (1.0 * 2 + 0.0 * 2), rel=1e-6)


def test_outputs_align_to_the_last_stages():
    t = _targets(stages=3)
    out = {"sr": [t["hr"][-1] + 1.0], "rec": []}
    total, terms = multistage_loss(out, t, LossConfig(sr_weights=[0.0, 0.0, 2.0]))
    assert set(terms) == {"sr_3"} and total.item() == pytest.approx(2.0)


def test_charbonnier_is_zero_at_equality_and_close_to_l1_far_away():
    t = _targets(stages=1)
    same = {"sr": [t["hr"][0].clone()], "rec": []}
    assert multistage_loss(same, t, LossConfig(criterion="charbonnier"))[0].item() == pytest.approx(0, abs=1e-7)
    far = {"sr": [t["hr"][0] + 1.0], "rec": []}
    assert multistage_loss(far, t, LossConfig(criterion="charbonnier"))[0].item() == pytest.approx(1.0, rel=1e-3)


def test_shape_mismatch_and_bad_weights_are_errors():
    t = _targets(stages=2)
    with pytest.raises(ValueError, match="differ in shape"):
        multistage_loss({"sr": [t["hr"][0], t["hr"][0]], "rec": []}, t, LossConfig())
    with pytest.raises(ValueError, match="stage weights"):
        multistage_loss({"sr": t["hr"], "rec": []}, t, LossConfig(sr_weights=[1.0]))
    with pytest.raises(ValueError, match="criterion"):
        LossConfig(criterion="l2")


def test_reconstruction_outputs_meet_the_clean_target_of_their_size():
    # A one-stage peer at 4x reconstructs its LR input: its rec is CLEAN_0 (LR size), not the
    # last stage's CLEAN_1; ICONet with last-stage supervision exposes rec_2 = CLEAN_1.
    t = _targets(stages=2)
    peer = {"sr": [t["hr"][-1].clone()], "rec": [t["clean"][0] + 0.5]}
    total, terms = multistage_loss(peer, t, LossConfig(rec_weight=1.0))
    assert set(terms) == {"sr_2", "rec_1"} and total.item() == pytest.approx(0.5, rel=1e-5)
    last = {"sr": [t["hr"][-1].clone()], "rec": [t["clean"][1] + 0.25]}
    total, terms = multistage_loss(last, t, LossConfig(rec_weight=1.0))
    assert set(terms) == {"sr_2", "rec_2"} and total.item() == pytest.approx(0.25, rel=1e-5)
    with pytest.raises(ValueError, match="matches no clean target"):
        multistage_loss({"sr": [t["hr"][-1]], "rec": [torch.rand(2, 1, 5, 5)]}, t, LossConfig())

"""A model keeps to its domain: a CT is never clamped to 0 HU, and shipped MR models refuse it.

Real files: pydicom's own test CT (CT_small.dcm, -896..1167 HU) and T2 MR (MR_small.dcm,
TE 240 ms / TR 4000 ms).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file

import iconet
from iconet.cli import main
from iconet.data.io import read_volume, write_volume
from iconet.data.volume import Volume
from iconet.data.modality import scan_kind
from iconet.domain import DomainMismatch, check_input, training_domain
from iconet.hub import available_models, read_info
from iconet.models import build_model

CT = get_testdata_file("CT_small.dcm")
MR_T2 = get_testdata_file("MR_small.dcm")


def test_the_clamp_never_cuts_a_signed_input_and_still_floors_a_magnitude_one():
    torch.manual_seed(0)
    model = build_model({"name": "iconet", "scale": 2, "width": 8, "groups_per_stage": 1,
                         "blocks_per_group": 1, "heads": 2, "zero_tails": False, "nonnegative": True}).eval()
    signed = torch.randn(2, 1, 16, 16) * 3 - 1  # well below 0, like HU / window
    magnitude = signed.abs()
    with torch.no_grad():
        out_signed = model(signed)
        out_mag = model(magnitude)
    for sr in out_signed["sr"] + out_signed["rec"]:
        floor = signed.amin(dim=(1, 2, 3)).view(-1, 1, 1, 1)
        assert (sr >= floor - 1e-6).all()
        assert (sr < 0).float().mean() > 0.2  # negative values survive (the old clamp made them 0)
    for sr in out_mag["sr"] + out_mag["rec"]:
        assert sr.min() >= 0


def test_scan_kind_reads_the_header_and_tells_hounsfield_units_apart():
    ct = read_volume(CT)
    assert scan_kind(ct).modality == "CT"
    kind = scan_kind(read_volume(MR_T2))
    assert (kind.modality, kind.contrast) == ("MR", "T2")
    headerless = Volume(ct.data.astype(np.float32))
    assert scan_kind(headerless).modality == "CT"  # by its air at -896 HU
    assert scan_kind(Volume(np.abs(ct.data).astype(np.float32))).modality is None


@pytest.mark.parametrize("name", available_models())
def test_every_shipped_model_states_its_domain_and_refuses_a_ct(name):
    domain = read_info(name).domain
    assert domain is not None and domain["modality"] == "MR" and domain["contrast"] == "T1"
    with pytest.raises(DomainMismatch, match=r"CT.*trained on MR T1"):
        check_input(domain, read_volume(CT), model=name, source="CT_small.dcm")
    notes = check_input(domain, read_volume(MR_T2), model=name, source="MR_small.dcm")
    assert len(notes) == 1 and "T2" in notes[0]  # a T2 runs, with a note


def test_infer_refuses_a_ct_with_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["infer", CT, str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "iconet-t1-x2 was trained on MR T1" in err[0] and "--model bicubic" in err[0]
    assert "--allow-domain-mismatch" in err[0]
    assert not out.exists()


def test_infer_refuses_ct_like_values_in_a_nifti(tmp_path, capsys):
    src = tmp_path / "ct.nii.gz"
    ct = read_volume(CT)
    write_volume(Volume(ct.data.astype(np.float32), ct.affine), src)
    assert main(["infer", str(src), str(tmp_path / "sr.nii.gz")]) == 2
    assert "this is CT (intensities:" in capsys.readouterr().err
    assert not (tmp_path / "sr.nii.gz").exists()


def test_a_ct_run_knowingly_keeps_its_hounsfield_units(tmp_path):
    """The regression of issue 18: every voxel below 0 HU came back as exactly 0."""
    out = tmp_path / "out"
    assert main(["infer", CT, str(out), "--allow-domain-mismatch"]) == 0
    sr = read_volume(out).data.astype(np.float64)
    lr = read_volume(CT).data
    assert (sr == 0).mean() < 0.01
    assert sr.min() <= lr.min() + 1 and sr.min() < -800
    assert (sr < 0).mean() > 0.4  # the input has 49 % of its voxels below 0 HU


def test_the_python_api_refuses_too_and_offers_bicubic():
    ct = read_volume(CT)
    with pytest.raises(ValueError, match="allow_domain_mismatch=True"):
        iconet.super_resolve(ct)
    with pytest.warns(UserWarning, match="domain mismatch allowed"):
        sr = iconet.super_resolve(ct, allow_domain_mismatch=True)
    assert sr.data.min() < -800
    bicubic = iconet.super_resolve(ct, "bicubic")
    assert bicubic.shape == sr.shape and bicubic.data.min() < -800


@pytest.mark.parametrize("data, model, expected", [
    ({"layout": "plain", "modality": "MR", "contrast": "T1"}, {"nonnegative": True}, ("MR", "T1", "magnitude")),
    ({"layout": "hecktor", "contrast": "ct"}, {}, ("CT", "unknown", "HU")),
    ({"layout": "ixi", "contrast": "T2"}, {}, ("MR", "T2", "any")),
    ({"layout": "plain"}, {}, ("unknown", "unknown", "any")),
])
def test_export_states_the_training_domain(data, model, expected):
    d = training_domain(data, model)
    assert (d["modality"], d["contrast"], d["intensity"]) == expected

"""Slice datasets, normalisation and subject-level splits, on crops of the shipped Colin27 slab
(real T1 values and geometry) written as NIfTI and read back with iconet.data.io.read_volume."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from iconet.config import from_dict
from iconet.data.datasets import SliceConfig, SliceDataset, collate, split_subjects
from iconet.data.degrade import Degradation, seed_from_name
from iconet.data.io import read_volume
from iconet.data.normalize import Normalization, NormalizeConfig, default_config, denormalize, normalize
from iconet.data.samples import sample_path
from iconet.data.volume import Volume

#: regions of the slab (181 x 217 x 8, 1 x 1 x 4 mm): inside the brain, and one reaching the
#: air beside the head along axis 0 (its first 4 sagittal slices are background)
CENTRE = np.s_[78:104, 92:126, :]  # 26 x 34 x 8
CENTRE_4X = np.s_[70:110, 85:133, :]  # 40 x 48 x 8: multiples of 8
EDGE = np.s_[0:26, 92:126, :]


def _crop_file(folder: Path, name: str, region=CENTRE) -> Path:
    """``region`` of the shipped slab written as ``folder/name.nii.gz`` (nibabel keeps the affine)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.nii.gz"
    nib.save(nib.load(sample_path()).slicer[region], path)
    return path


def _crop(folder: Path, name: str = "sub-01", region=CENTRE) -> Volume:
    """``region`` of the slab as iconet reads it from a NIfTI file (the volume's name is ``name``)."""
    return read_volume(_crop_file(folder, name, region))


# ----------------------------------------------------------------------------- normalisation


def test_normalize_percentile_window_range_and_undo():
    x = np.arange(1000, dtype=np.float64)
    y, n = normalize(x, NormalizeConfig(method="percentile", percentile=99.5, clip=False))
    assert n.method == "percentile" and n.percentile == 99.5 and n.high == pytest.approx(np.percentile(x, 99.5))
    np.testing.assert_allclose(denormalize(y, n), x, rtol=1e-5)
    yc, nc = normalize(x)  # MRI default: clipped at the percentile
    assert nc.clip and yc.max() == 1.0 and yc.min() == 0.0
    ct = np.array([-2000.0, -1000.0, 0.0, 1000.0, 3000.0])
    yw, nw = normalize(ct, default_config("CT"))
    np.testing.assert_allclose(yw, [0, 0, 0.5, 1, 1])
    assert nw.method == "window" and (nw.low, nw.high) == (-1000.0, 1000.0)
    yr, nr = normalize(np.array([0.0, 5.0, 10.0]), NormalizeConfig(method="range", low=0.0, high=20.0))
    np.testing.assert_allclose(yr, [0, 0.25, 0.5])
    t = denormalize(torch.tensor(yr), Normalization.from_dict(nr.as_dict()))
    torch.testing.assert_close(t, torch.tensor([0.0, 5.0, 10.0], dtype=t.dtype))
    with pytest.raises(ValueError, match="degenerate"):
        normalize(np.zeros(10))
    with pytest.raises(ValueError):
        NormalizeConfig(method="window")


# ----------------------------------------------------------------------------- samples


def test_eval_samples_whole_slices_shapes_keys_metadata(tmp_path):
    vol = _crop(tmp_path)
    ds = SliceDataset([vol], Degradation(scale=2), SliceConfig(axis=2))
    s = ds[0]
    expected = {"lr", "clean", "hr", "hr_stages", "clean_stages", "volume", "slice", "axis",
                "origin", "norm", "degradation"}
    assert set(s) == expected
    assert s["hr"].shape == (1, 24, 32) and s["hr"].dtype == torch.float32  # 26x34 cropped to x4
    assert s["lr"].shape == s["clean"].shape == (1, 12, 16)
    assert s["origin"] == (1, 1)
    assert [t.shape for t in s["hr_stages"]] == [(1, 24, 32)]
    assert [t.shape for t in s["clean_stages"]] == [(1, 12, 16)]
    assert s["volume"] == "sub-01" and s["axis"] == 2 and s["slice"] == ds.slices_of("sub-01", 2)[0]
    assert s["norm"]["method"] == "percentile" and s["norm"]["percentile"] == 99.5
    p = s["degradation"]
    assert p["kind"] == "kspace" and p["scale"] == 2 and p["seed"] == seed_from_name("sub-01")
    assert p["mask_lines"] == 5 and p["mask_width"] == 16  # round(0.3 * 16)
    # evaluation is deterministic
    assert torch.equal(ds[0]["lr"], s["lr"])
    # the slice is the normalised volume's slice
    arr = ds.array("sub-01")
    np.testing.assert_array_equal(s["hr"][0].numpy(), arr[1:25, 1:33, s["slice"]])


def test_stage_targets_in_samples_at_4x(tmp_path):
    ds = SliceDataset([_crop(tmp_path, region=CENTRE_4X)], Degradation(scale=4), SliceConfig(axis=2))
    s = ds[0]
    assert s["hr"].shape == (1, 40, 48)
    assert [tuple(t.shape) for t in s["hr_stages"]] == [(1, 20, 24), (1, 40, 48)]
    assert [tuple(t.shape) for t in s["clean_stages"]] == [(1, 10, 12), (1, 20, 24)]
    torch.testing.assert_close(s["clean_stages"][0], s["clean"])


def test_foreground_filtering_and_all_axes(tmp_path):
    vol = _crop(tmp_path, region=EDGE)
    ds = SliceDataset([vol], Degradation(scale=2), SliceConfig(axis=0))
    kept = ds.slices_of("sub-01", 0)
    arr = ds.array("sub-01")
    frac = (arr > 0.1).mean(axis=(1, 2))
    assert kept == [k for k in range(arr.shape[0]) if frac[k] > 0.10]
    assert kept[0] > 0 and kept == list(range(kept[0], arr.shape[0]))  # the air beside the head is dropped
    strict = SliceDataset([vol], Degradation(scale=2), SliceConfig(axis=0, foreground_fraction=0.5))
    assert len(strict) < len(ds)
    all_axes = SliceDataset([vol], Degradation(scale=2), SliceConfig(axis="all", fit="pad"))
    assert {a for _, a, _ in all_axes.index} == {0, 1, 2}
    for i in (0, len(all_axes) - 1):
        s = all_axes[i]
        assert s["hr"].shape[-1] % 4 == 0 and s["hr"].shape[-2] % 4 == 0
    with pytest.raises(ValueError, match="no slice"):
        SliceDataset([vol], Degradation(scale=2), SliceConfig(foreground_threshold=5.0))


def test_random_crops_in_range_and_reproducible(tmp_path):
    vol = _crop(tmp_path, region=CENTRE_4X)
    cfg = SliceConfig(axis=2, patch_size=16)
    deg = Degradation(scale=2, mask_mode="random")
    ds = SliceDataset([vol], deg, cfg, seed=7)
    arr = ds.array("sub-01")
    origins = set()
    for i in range(len(ds)):
        s = ds[i]
        assert s["hr"].shape == (1, 16, 16) and s["lr"].shape == (1, 8, 8)
        r, c = s["origin"]
        assert 0 <= r <= 40 - 16 and 0 <= c <= 48 - 16
        np.testing.assert_array_equal(s["hr"][0].numpy(), arr[r : r + 16, c : c + 16, s["slice"]])
        origins.add((r, c))
    assert len(origins) > 1
    again = SliceDataset([vol], deg, cfg, seed=7)
    assert again[0]["origin"] == ds[0]["origin"]
    assert again[0]["degradation"]["seed"] == ds[0]["degradation"]["seed"]
    again.set_epoch(1)
    assert again[0]["degradation"]["seed"] != ds[0]["degradation"]["seed"]


def test_whole_slice_degradation_crops_the_patch_from_the_degraded_slice(tmp_path):
    """degrade_whole_slice: LR, CLEAN and every stage target of a patch are the crops of the
    whole slice's (seeded, so reproducible) degradation under the HR patch, on the LR grid."""
    vol = _crop(tmp_path, region=CENTRE_4X)
    deg = Degradation(scale=4, mask_mode="seeded")
    ds = SliceDataset([vol], deg, SliceConfig(axis=2, patch_size=16, degrade_whole_slice=True), seed=3)
    arr = ds.array("sub-01")
    origins = set()
    for i in range(len(ds)):
        s = ds[i]
        r, c = s["origin"]
        assert r % 4 == 0 and c % 4 == 0  # the patch starts on an LR pixel
        origins.add((r, c))
        whole = torch.from_numpy(np.ascontiguousarray(arr[:, :, s["slice"]]))[None]  # 40x48: multiples of 8
        full = deg.degrade(whole, "sub-01")
        stages = deg.stage_targets(whole)
        torch.testing.assert_close(s["hr"], whole[:, r : r + 16, c : c + 16])
        torch.testing.assert_close(s["lr"], full["lr"][:, r // 4 : r // 4 + 4, c // 4 : c // 4 + 4])
        torch.testing.assert_close(s["clean"], full["clean"][:, r // 4 : r // 4 + 4, c // 4 : c // 4 + 4])
        torch.testing.assert_close(s["hr_stages"][0], stages["hr"][0][:, r // 2 : r // 2 + 8, c // 2 : c // 2 + 8])
        torch.testing.assert_close(s["hr_stages"][1], s["hr"])
        torch.testing.assert_close(s["clean_stages"][1], s["hr_stages"][0])
    assert len(origins) > 1
    # the patch-first default degrades the cropped patch alone
    first = SliceDataset([vol], deg, SliceConfig(axis=2, patch_size=16), seed=3)[0]
    crop = deg.degrade(first["hr"], "sub-01")["lr"]
    torch.testing.assert_close(first["lr"], crop)


def test_patch_not_multiple_raises(tmp_path):
    with pytest.raises(ValueError, match="multiple of 2\\*scale = 8"):
        SliceDataset([_crop(tmp_path)], Degradation(scale=4), SliceConfig(patch_size=20))


def test_collate_and_dataloader(tmp_path):
    vols = [_crop(tmp_path, "a", CENTRE), _crop(tmp_path, "b", CENTRE_4X)]
    ds = SliceDataset(vols, Degradation(scale=2), SliceConfig(axis=2, patch_size=8), seed=0)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert batch["lr"].shape == (4, 1, 4, 4) and batch["hr"].shape == (4, 1, 8, 8)
    assert [t.shape for t in batch["hr_stages"]] == [(4, 1, 8, 8)]
    assert isinstance(batch["volume"], list) and len(batch["norm"]) == 4
    assert isinstance(batch["degradation"][0], dict)


def test_duplicate_names_and_config_from_dict(tmp_path):
    same_name = [_crop(tmp_path / "site1"), _crop(tmp_path / "site2", region=CENTRE_4X)]  # both sub-01
    with pytest.raises(ValueError, match="two volumes are named 'sub-01'"):
        SliceDataset(same_name, Degradation(scale=2))
    cfg = from_dict(SliceConfig, {"axis": "all", "patch_size": 32, "normalization": {"method": "range"}})
    assert cfg.axes == (0, 1, 2) and cfg.normalization.method == "range"


def test_paths_are_read_with_read_volume(tmp_path):
    path = _crop_file(tmp_path, "sub-02_T1w")
    fixed = NormalizeConfig(method="range", low=0.0, high=255.0)  # array = voxels / 255, no statistic
    ds = SliceDataset([path], Degradation(scale=2), SliceConfig(normalization=fixed))
    assert ds.volume_names == ["sub-02_T1w"]
    voxels = np.asanyarray(nib.load(path).dataobj)  # nibabel's own read of the file
    np.testing.assert_allclose(ds.array("sub-02_T1w"), voxels / 255.0, rtol=1e-6)


# ----------------------------------------------------------------------------- splits


def test_split_subjects_disjoint_deterministic():
    subjects = [f"IXI{i:03d}-Guys-{1000 + i}" for i in range(30)]
    names = [f"{s}-{c}" for s in subjects for c in ("T1", "T2")]

    def subj(n: str) -> str:
        return n.rsplit("-", 1)[0]

    tr, va, te = split_subjects(names, (0.7, 0.2, 0.1), seed=1, subject=subj)
    assert len(tr) + len(va) + len(te) == len(names)
    sets = [{subj(n) for n in part} for part in (tr, va, te)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert [len(s) for s in sets] == [21, 6, 3]
    assert split_subjects(list(reversed(names)), (0.7, 0.2, 0.1), seed=1, subject=subj)[1] == list(
        reversed(va)
    )  # independent of input order
    assert split_subjects(names, (0.7, 0.2, 0.1), seed=2, subject=subj) != [tr, va, te]
    small = split_subjects(["a", "b", "c"], (0.9, 0.05, 0.05))
    assert [len(p) for p in small] == [1, 1, 1]
    with pytest.raises(ValueError, match="sum to 1"):
        split_subjects(names, (0.5, 0.2))

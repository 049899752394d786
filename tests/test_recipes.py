"""The recipes in configs/ keep Colin27 held out, and fetch-samples writes what the S1 recipes read.

Colin27 is the project's held-out subject: no recipe may train on it or validate on it (the
best checkpoint is picked on validation). The check resolves each recipe's split with the
project's own config loader and split logic, in a data folder laid out as
``iconet data fetch-samples --dest data`` leaves it (S1, Colin27 and S1's held-out slab, here
copies of the package's real slab), so a recipe that names no validation subject and would take
"every other subject" is caught too.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from iconet.data import holdout, samples
from iconet.data.errors import DataError
from iconet.data.samples import sample_path
from iconet.engine.ablation import load_ablation, variant_configs
from iconet.engine.config import load_train_config
from iconet.engine.data import find_split

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs").glob("*.yaml"))
ABLATIONS = sorted((REPO / "configs" / "ablation").glob("*.yaml"))
S1, COLIN = "pycortex_S1_T1.nii.gz", "colin27_T1.nii.gz"


@pytest.fixture
def fetched_layout(tmp_path, monkeypatch) -> Path:
    """``./data`` as fetch-samples leaves it, with the working folder at its parent."""
    data = tmp_path / "data"
    (data / holdout.FOLDER).mkdir(parents=True)
    for rel in (S1, COLIN, f"{holdout.FOLDER}/{holdout.TRAIN_NAME}.nii.gz", f"{holdout.FOLDER}/{holdout.VAL_NAME}.nii.gz"):
        shutil.copy(sample_path(), data / rel)
    monkeypatch.chdir(tmp_path)
    return data


def _all_configs():
    for recipe in RECIPES:
        yield recipe.name, load_train_config(recipe)
    for spec_path in ABLATIONS:
        for variant, cfg in variant_configs(load_ablation(spec_path), None, "runs/ablation").items():
            yield f"{spec_path.name}:{variant}", cfg


def test_no_recipe_trains_or_validates_on_colin27(fetched_layout):
    checked_s1 = []
    for name, cfg in _all_configs():
        named = [s for s in (*cfg.data.train_subjects, *cfg.data.val_subjects) if "colin" in s.lower()]
        assert not named, f"{name} names {named} as a training or validation subject"
        if not Path(cfg.data.root).is_dir():
            continue  # reads another data set (IXI, BraTS, ...), not the fetched samples
        split = find_split(cfg.data)  # the subjects the trainer would really use
        used = {**split.train, **split.val}
        assert not [s for s, p in used.items() if "colin" in f"{s} {p}".lower()], \
            f"{name} would train or validate on Colin27: train {sorted(split.train)}, val {sorted(split.val)}"
        if any("S1" in s for s in split.train):
            assert set(split.val) == {holdout.VAL_NAME}, f"{name} validates on {sorted(split.val)}"
            assert not set(split.train) & set(split.val)
            checked_s1.append(name)
    # the check above is not vacuous: the demo and shipped recipes (and the ablation) were resolved
    for expected in ("demo_s1_x2.yaml", "demo_s1_x4.yaml", "zoo_t1_x2.yaml", "zoo_t1_x4.yaml"):
        assert expected in checked_s1
    assert any(n.startswith("ablation_t1_x4.yaml:") for n in checked_s1)


def test_the_old_demo_split_is_what_the_check_catches(fetched_layout):
    """The demo recipe as it was (validation on Colin27, or no validation subject at all in a
    folder holding Colin27) fails the property above."""
    old = load_train_config(REPO / "configs" / "demo_s1_x2.yaml",
                            ["data.root=data", "data.train_subjects=[pycortex_S1_T1]", "data.val_subjects=[colin27_T1]"])
    assert "colin27_T1" in find_split(old.data).val
    implicit = load_train_config(REPO / "configs" / "demo_s1_x2.yaml",
                                 ["data.root=data", "data.train_subjects=[pycortex_S1_T1]", "data.val_subjects=[]"])
    assert "colin27_T1" in find_split(implicit.data).val  # "every other subject" includes Colin27


def test_holdout_split_keeps_voxels_and_scanner_space(tmp_path):
    src = sample_path()  # real Colin27 slab, 181 x 217 x 8, 1 x 1 x 4 mm
    written = holdout.write_s1_holdout(src, tmp_path / "split", train_end=5, val_start=6)
    img = nib.load(src)
    vox = np.asarray(img.dataobj)
    train, val = nib.load(written[holdout.TRAIN_NAME]), nib.load(written[holdout.VAL_NAME])
    assert np.array_equal(np.asarray(train.dataobj), vox[:, :, :5])
    assert np.array_equal(np.asarray(val.dataobj), vox[:, :, 6:])
    ijk = np.array([[0, 0, 0, 1], [180, 216, 1, 1], [17, 99, 0, 1]]).T
    shifted = ijk + np.array([[0], [0], [6], [0]])
    np.testing.assert_allclose(val.affine @ ijk, img.affine @ shifted, atol=1e-5)  # same scanner positions
    np.testing.assert_allclose(train.affine, img.affine, atol=1e-6)
    with pytest.raises(DataError, match="more than 180 slices on axis 2"):
        holdout.write_s1_holdout(src, tmp_path / "too_thin")
    assert not (tmp_path / "too_thin").exists() or not any((tmp_path / "too_thin").iterdir())


def test_fetch_samples_writes_the_split_the_demo_recipes_read(tmp_path, monkeypatch):
    """fetch-samples (from real archives, only the download simulated, as in test_samples) writes
    data/s1_holdout once S1 is fetched and checked; the demo recipes then find their subjects
    without any other step."""
    from test_samples import serve

    payload = sample_path().read_bytes()  # a real NIfTI stands in for S1
    digest = hashlib.sha256(payload).hexdigest()
    for name in (S1, COLIN):
        monkeypatch.setitem(samples.SAMPLES, name, replace(samples.SAMPLES[name], sha256=digest))
    serve(monkeypatch, tmp_path / "served", payload)
    monkeypatch.chdir(tmp_path)

    # the split is defined for pycortex S1 alone: another volume under that name gets none
    fetched, failed = samples.fetch_samples("data", names=[S1])
    assert S1 in fetched and failed == {} and not (tmp_path / "data" / holdout.FOLDER).exists()

    monkeypatch.setattr(holdout, "S1_SHA256", digest)
    fetched, failed = samples.fetch_samples("data", names=[S1])  # at 176/180 the 8-slice stand-in is refused
    assert "s1_holdout" in failed and "more than 180 slices" in failed["s1_holdout"]

    # the 8-slice stand-in split at 5/6 instead of 176/180
    monkeypatch.setattr(holdout, "write_s1_holdout",
                        functools.partial(holdout.write_s1_holdout, train_end=5, val_start=6))
    fetched, failed = samples.fetch_samples("data")
    assert failed == {} and set(fetched) == {S1, COLIN}
    for recipe in ("demo_s1_x2.yaml", "demo_s1_x4.yaml"):
        split = find_split(load_train_config(REPO / "configs" / recipe).data)
        assert list(split.train) == [holdout.TRAIN_NAME] and list(split.val) == [holdout.VAL_NAME]
        assert split.val[holdout.VAL_NAME].parent == Path("data") / holdout.FOLDER
    val = tmp_path / "data" / holdout.FOLDER / f"{holdout.VAL_NAME}.nii.gz"
    before = val.stat().st_mtime_ns
    samples.fetch_samples("data", names=[S1])
    assert val.stat().st_mtime_ns == before  # kept when present

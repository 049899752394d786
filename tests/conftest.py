"""Fixtures shared by the training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from iconet.data.samples import sample_path

from iconet.engine.trainer import train
from iconet.export import export_run

from _run_fixtures import make_cfg


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A plain-layout data folder of three subjects, each a copy of the shipped real slab."""
    root = tmp_path_factory.mktemp("data")
    for name in ("subA", "subB", "subC"):
        shutil.copy(sample_path(), root / f"{name}.nii.gz")
    return root


@pytest.fixture(scope="module")
def exported(data_root, tmp_path_factory) -> Path:
    """A tiny ICONet trained 4 steps (EMA on, so the exported weights are the EMA's), exported."""
    root = tmp_path_factory.mktemp("pretrained")
    train(make_cfg(data_root, root / "run"))
    return export_run(root / "run", root / "model")

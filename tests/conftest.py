"""Fixtures shared by the training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from iconet.data.samples import sample_path


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A plain-layout data folder of three subjects, each a copy of the shipped real slab."""
    root = tmp_path_factory.mktemp("data")
    for name in ("subA", "subB", "subC"):
        shutil.copy(sample_path(), root / f"{name}.nii.gz")
    return root

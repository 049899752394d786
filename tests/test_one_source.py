"""One source for each decision (issue 22 item 5): the stage count of a scale and the
patch-side check are each defined once, and every user of them agrees with the real thing
(the stages a model outputs, the error the dataset and the training recipe give)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iconet.config import ConfigError
from iconet.data.datasets import SliceConfig, SliceDataset
from iconet.data.degrade import Degradation
from iconet.data.plane_pairs import PairGeometry
from iconet.data.volume import Volume
from iconet.engine.config import load_train_config
from iconet.models import build_model, make_config
from iconet.ops.scale import num_stages


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_every_stage_count_is_the_number_of_outputs_a_model_gives(scale):
    model = build_model("iconet", scale=scale, width=8, heads=2, groups_per_stage=1, blocks_per_group=1)
    with torch.no_grad():
        outputs = len(model(torch.rand(1, 1, 8, 8))["sr"])  # one SR image per 2x stage
    assert outputs == num_stages(scale) == make_config({"name": "iconet", "scale": scale}).stages
    assert Degradation(scale=scale).stages == outputs
    geometry = PairGeometry(slice_spacing=4.0, fwhm=4.0, input_spacing=1.0, scale=scale, rows=8, columns=8)
    assert geometry.stages == outputs


@pytest.mark.parametrize("bad", [0, 3, 6, 2.0, True])
def test_a_scale_that_is_not_a_power_of_two_has_no_stage_count(bad):
    with pytest.raises(ValueError, match="scale must be"):
        num_stages(bad)


def test_the_recipe_and_the_dataset_refuse_a_patch_side_with_the_same_words():
    with pytest.raises(ConfigError) as recipe:
        load_train_config(None, ["data.patch_size=36", "model.name=iconet", "model.scale=4", "degradation.scale=4"])
    vol = Volume(np.random.default_rng(0).random((40, 40, 3), dtype=np.float32), np.eye(4))
    with pytest.raises(ValueError) as dataset:
        SliceDataset([vol], Degradation(scale=4), SliceConfig(axis=2, patch_size=36))
    assert str(recipe.value) == f"data.{dataset.value}"
    assert str(dataset.value).startswith("patch_size 36 is not a multiple of 2*scale = 8")
    assert str(dataset.value).endswith("use 32 or 40")
    SliceDataset([vol], Degradation(scale=4), SliceConfig(axis=2, patch_size=32))  # a multiple passes

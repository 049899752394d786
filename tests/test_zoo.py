"""Golden outputs: every shipped model still scores what its card states on the package's sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import iconet.zoo

from iconet.demo import score_on_sample
from iconet.hub import available_models, load_model


@pytest.mark.parametrize("name", available_models())
def test_shipped_model_scores_its_stated_number_on_the_sample(name: str) -> None:
    """Weights, architecture, degradation, normalisation and metrics together: a change to any of
    them that moves the demo's PSNR by more than 0.01 dB fails here until the model is reshipped
    or restated (``python scripts/ship_model.py --name NAME --sample-only``)."""
    folder = Path(iconet.zoo.__file__).parent / name
    stated = json.loads((folder / "metrics.json").read_text())["sample"]
    assert f"{stated['psnr']:.2f} dB PSNR" in (folder / "model_card.md").read_text()  # the card says the same
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        score = score_on_sample(load_model(name)[0])
    finally:
        torch.set_num_threads(threads)
    assert score["psnr"] == pytest.approx(stated["psnr"], abs=0.01)
    assert score["ssim"] == pytest.approx(stated["ssim"], abs=1e-4)

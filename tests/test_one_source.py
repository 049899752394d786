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


# --------------------------------------------------------------------------- one precision resolver


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags as the kernel lists them (an outside reference), or None."""
    import platform
    from pathlib import Path

    info = Path("/proc/cpuinfo")
    if platform.machine().lower() not in ("x86_64", "amd64") or not info.is_file():
        return None
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_auto_on_this_cpu_is_bf16_exactly_when_the_kernel_lists_bf16_instructions():
    from iconet.runtime import cpu_has_fast_bf16, resolve_precision

    flags = _cpu_flags()
    if flags is None:
        pytest.skip("needs an x86 Linux /proc/cpuinfo")
    native = bool({"avx512_bf16", "amx_bf16"} & flags)
    assert cpu_has_fast_bf16() == native
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")


def test_explicit_precisions_pass_and_impossible_ones_are_refused():
    from iconet.runtime import resolve_precision

    cpu = torch.device("cpu")
    assert [resolve_precision(p, cpu) for p in ("fp32", "bf16")] == ["fp32", "bf16"]
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", cpu)


def test_auto_on_a_gpu_without_native_bf16_is_fp16_only_for_training(monkeypatch):
    from iconet import runtime

    if torch.cuda.is_available():
        real = runtime.resolve_precision("auto", torch.device("cuda"))
        assert real == ("bf16" if runtime.cuda_has_bf16(torch.device("cuda")) else "fp32")
    monkeypatch.setattr(runtime, "cuda_has_bf16", lambda device: False)  # e.g. a V100: no GPU here
    gpu = torch.device("cuda")
    assert runtime.resolve_precision("auto", gpu) == "fp32"
    assert runtime.resolve_precision("auto", gpu, fp16_fallback=True) == "fp16"
    monkeypatch.setattr(runtime, "cuda_has_bf16", lambda device: True)
    assert runtime.resolve_precision("auto", gpu, fp16_fallback=True) == "bf16"


def test_inference_and_the_memory_probe_resolve_auto_as_the_runtime_does():
    from iconet.inference import InferenceOptions, super_resolve_volume
    from iconet.memory import estimate_memory
    from iconet.runtime import resolve_precision

    torch.manual_seed(0)
    model = build_model("edsr", n_feats=8, n_blocks=1).eval()
    chosen = resolve_precision("auto", torch.device("cpu"))
    assert estimate_memory(model, precision="auto") is estimate_memory(model, precision=chosen)
    lr = Volume(np.random.default_rng(1).random((24, 20, 3), dtype=np.float32), np.eye(4))
    auto = super_resolve_volume(model, lr, grid="kspace", options=InferenceOptions(precision="auto", tile=0))["sr"]
    same = super_resolve_volume(model, lr, grid="kspace", options=InferenceOptions(precision=chosen, tile=0))["sr"]
    assert auto.meta["iconet_precision"] == same.meta["iconet_precision"] == chosen
    np.testing.assert_array_equal(auto.data, same.data)
    if chosen == "bf16":  # the switch really changes the arithmetic
        fp32 = super_resolve_volume(model, lr, grid="kspace", options=InferenceOptions(tile=0))["sr"]
        assert fp32.meta["iconet_precision"] == "fp32" and not np.array_equal(fp32.data, auto.data)
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        super_resolve_volume(model, lr, grid="kspace", options=InferenceOptions(precision="fp16", tile=0))


def test_iconet_infer_precision_auto_writes_what_the_resolved_precision_writes(tmp_path):
    import nibabel as nib

    from iconet.cli import main
    from iconet.runtime import resolve_precision

    src = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(2).random((16, 12, 2), dtype=np.float32), np.eye(4)), src)
    chosen = resolve_precision("auto", torch.device("cpu"))
    outs = []
    for precision in ("auto", chosen):
        out = tmp_path / f"sr_{precision}.nii.gz"
        assert main(["infer", str(src), str(out), "--model", "bicubic", "--device", "cpu",
                     "--precision", precision, "--quiet"]) == 0
        outs.append(np.asarray(nib.load(out).dataobj))
    assert outs[0].shape == (32, 24, 2)
    np.testing.assert_array_equal(outs[0], outs[1])


# --------------------------------------------------------------------------- one checkpoint reader


@pytest.mark.parametrize("content", ["garbage", "list", "format"])
def test_export_and_the_engine_refuse_a_bad_checkpoint_with_the_same_line(tmp_path, content):
    import sys
    from pathlib import Path

    from iconet.engine.checkpoint import load_checkpoint
    from iconet.export import export_run

    sys.path.insert(0, str(Path(__file__).parent))
    from _run_fixtures import make_run

    run = make_run(tmp_path, "edsr")
    path = run / "checkpoints" / "best.pt"
    if content == "garbage":
        path.write_bytes(b"not a torch file")
    elif content == "list":
        torch.save([1, 2], path)
    else:
        torch.save({**torch.load(path, weights_only=True), "format": "other/2"}, path)
    with pytest.raises(ValueError) as engine:
        load_checkpoint(path)
    with pytest.raises(ValueError) as export:
        export_run(run, tmp_path / "model")
    assert str(export.value) == str(engine.value) and str(engine.value).startswith(f"{path}: ")
    assert "\n" not in str(engine.value) and not (tmp_path / "model").exists()

"""The training recipe: one typed dataclass tree, filled from YAML plus dotted overrides.

    cfg = load_train_config("configs/demo_s1_x2.yaml", ["optim.lr=1e-4", "run.steps=200"])

Sections: ``model`` (a mapping with ``name``, validated and completed by
:func:`iconet.models.make_config`; ``model.init: NAME_OR_DIR`` starts from a shipped or
exported model, see :class:`TrainConfig`), ``data`` (:class:`DataConfig`), ``degradation``
(:class:`iconet.data.degrade.Degradation`), ``loss`` (:class:`iconet.losses.LossConfig`),
``optim`` (:class:`OptimConfig`), ``schedule`` (:class:`ScheduleConfig`), ``run``
(:class:`RunConfig`), ``distill`` (:class:`DistillConfig`, off unless a teacher is named).
Unknown keys anywhere are a :class:`~iconet.config.ConfigError` naming the key and the closest
valid one. Checks that need no file (patch size against the scale,
model and degradation scales) run here, before anything is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from iconet.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from iconet.data.degrade import Degradation
from iconet.data.normalize import NormalizeConfig
from iconet.losses import LossConfig

#: smallest LR patch side accepted for training (pixels)
MIN_LR_PATCH = 8


@dataclass
class DataConfig:
    """Where the volumes are and which slices are used.

    Attributes:
        root: folder holding the data set in ``layout``.
        layout: ``ixi``, ``brats2021``, ``hecktor``, ``fastmri`` or ``plain``
            (see :mod:`iconet.data.layouts`).
        contrast: the image of each case: IXI ``T1``/``T2``/``PD``; BraTS ``t1``/``t1ce``/
            ``t2``/``flair``; HECKTOR ``CT``/``PT``; ignored for ``plain`` and ``fastmri``.
            When fine-tuning (``model.init``) it may differ from the contrast the init model was
            trained on (e.g. a T1 model fine-tuned on IXI ``T2``): contrast is only intensity.
        modality: DICOM modality code of the training scans (``MR``, ``CT``, ``PT``), stated
            for layouts that do not imply it (``plain``): ``iconet export`` writes it into the
            model's ``domain`` (:mod:`iconet.domain`), which ``iconet infer`` checks inputs against.
        train_subjects, val_subjects: explicit subject ids (as :func:`find_cases` names them;
            for ``plain`` the file's relative path without extension). One list alone: the
            other split is every remaining subject. Both empty: ``split`` is used.
        split: ``[train, val]`` or ``[train, val, test]`` fractions for
            :func:`iconet.data.datasets.split_subjects`; the test share is never read here
            (keep ``split`` and ``split_seed`` identical in ``iconet eval`` to find it).
        split_seed: seed of that split.
        axis: training slice axis, 0, 1, 2 or ``"all"``.
        val_axis: validation slice axis (``None``: same as ``axis``).
        patch_size: HR training patch side in pixels, a multiple of ``2·scale``.
        degrade_whole_slice: degrade each training slice whole, then crop the patch (LR, CLEAN
            and stage targets) from it, instead of degrading the cropped patch alone (whose FFT
            wraps the patch around and rings along its borders). See
            :class:`iconet.data.datasets.SliceConfig`.
        batch_size: training patches per step *per process* (the global batch is
            ``batch_size · world_size``).
        num_workers: ``DataLoader`` worker processes for training.
        fit: ``crop`` or ``pad`` slices to multiples of ``2·scale``.
        normalization: ``None``: the modality's default (MRI: 99.5th percentile).
        foreground_threshold, foreground_fraction: keep slices with more than
            ``foreground_fraction`` of normalised voxels above ``foreground_threshold``.
        val_slice_step: keep every n-th foreground slice for validation.
        slices_per_volume: at most this many (evenly spaced) validation slices per volume and
            axis (``None``: all).
        shard: how training samples are shared among processes: ``subject`` (each rank gets
            whole subjects when there are at least as many as ranks, else strided) or
            ``strided`` (one global shuffle, rank r takes every world-th sample).
    """

    root: str = "data"
    layout: Literal["ixi", "brats2021", "hecktor", "fastmri", "plain"] = "plain"
    contrast: str | None = None
    modality: str | None = None
    train_subjects: list[str] = field(default_factory=list)
    val_subjects: list[str] = field(default_factory=list)
    split: list[float] = field(default_factory=lambda: [0.9, 0.1])
    split_seed: int = 0
    axis: int | str = 2
    val_axis: int | str | None = None
    patch_size: int = 64
    degrade_whole_slice: bool = False
    batch_size: int = 8
    num_workers: int = 0
    fit: Literal["crop", "pad"] = "crop"
    normalization: NormalizeConfig | None = None
    foreground_threshold: float = 0.1
    foreground_fraction: float = 0.10
    val_slice_step: int = 1
    slices_per_volume: int | None = None
    shard: Literal["subject", "strided"] = "subject"

    def __post_init__(self) -> None:
        for name in ("axis", "val_axis"):
            v = getattr(self, name)
            if v is not None and v not in (0, 1, 2, "all"):
                raise ConfigError(f"data.{name} must be 0, 1, 2 or 'all', got {v!r}")
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if len(self.split) not in (2, 3) or any(f < 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError(
                f"data.split must be [train, val] or [train, val, test] non-negative fractions summing to 1, got {self.split}"
            )
        if self.slices_per_volume is not None and self.slices_per_volume < 1:
            raise ConfigError(f"data.slices_per_volume must be >= 1 or null, got {self.slices_per_volume}")
        if self.val_slice_step < 1:
            raise ConfigError(f"data.val_slice_step must be >= 1, got {self.val_slice_step}")
        overlap = sorted(set(self.train_subjects) & set(self.val_subjects))
        if overlap:
            raise ConfigError(f"data.train_subjects and data.val_subjects share {overlap}: a subject must not be in both")


@dataclass
class DistillConfig:
    """Knowledge distillation: a trained model's outputs as extra targets of every step.

    Attributes:
        teacher: a shipped model name (``iconet-t1-x2``) or a folder written by ``iconet
            export``; ``None`` (default) trains without a teacher. The teacher sees each step's
            LR batch (no gradient, the run's precision) and must have the run's scale and
            sampling grid.
        weight: the weight of the teacher's terms against the data terms
            (:func:`iconet.losses.distillation_loss`); the data loss is kept in full.
    """

    teacher: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.teacher is not None and (not isinstance(self.teacher, str) or not self.teacher):
            raise ConfigError(f"distill.teacher must be a shipped model name or a model folder, got {self.teacher!r}")
        if not self.weight > 0:
            raise ConfigError(f"distill.weight must be > 0, got {self.weight!r}")


@dataclass
class OptimConfig:
    """Optimiser. ``grad_clip``: max global gradient L2 norm (0 = off)."""

    name: Literal["adamw", "adam"] = "adamw"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 1e-4
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in ("adamw", "adam"):
            raise ConfigError(f"optim.name must be 'adamw' or 'adam', got {self.name!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("optim.lr must be > 0, optim.weight_decay and optim.grad_clip >= 0")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule (see :mod:`iconet.engine.schedule`).

    Attributes:
        warmup_steps: linear warm-up from ``lr/warmup_steps`` to ``lr`` over these steps.
        kind: ``cosine`` (to ``min_lr`` at ``run.steps``), ``step`` (× ``gamma`` at each of
            ``milestones``) or ``constant``.
        min_lr: floor of the cosine, in learning-rate units (not a fraction).
        milestones: steps (counted from 0, warm-up included) where ``step`` decays.
        gamma: decay factor of ``step``.
    """

    warmup_steps: int = 0
    kind: Literal["cosine", "step", "constant"] = "cosine"
    min_lr: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "step", "constant"):
            raise ConfigError(f"schedule.kind must be cosine, step or constant, got {self.kind!r}")
        if self.warmup_steps < 0 or self.min_lr < 0 or not 0 < self.gamma <= 1:
            raise ConfigError("schedule.warmup_steps and min_lr must be >= 0, gamma in (0, 1]")
        if sorted(self.milestones) != list(self.milestones):
            raise ConfigError(f"schedule.milestones must be increasing, got {self.milestones}")


@dataclass
class RunConfig:
    """How the run is executed and recorded.

    Attributes:
        steps: total optimiser steps.
        seed: seeds model initialisation, crops, masks and the sampler's shuffle.
        out_dir: run folder (``config.yaml``, ``checkpoints/``, ``metrics.jsonl``, ``tb/``).
        overwrite: allow reusing an ``out_dir`` that already holds another run.
        precision: ``auto`` (bf16 where the hardware does it fast, else fp16 on CUDA / fp32 on
            CPU), ``fp32``, ``bf16`` or ``fp16`` (CUDA only, with a gradient scaler).
        channels_last: NHWC memory format for model and inputs.
        compile: wrap the model in ``torch.compile``.
        ema_decay: exponential moving average of the weights (0 = off); the EMA weights are
            validated and decide the best checkpoint.
        log_every, val_every, ckpt_every: steps between training-log lines, validations and
            ``last.pt`` saves (0 = never; ``last.pt`` is always written at the end).
        val_at_start: also validate once before the first step and record it as the step-0 row
            of ``metrics.jsonl`` (and a ``best.pt`` candidate): the starting point of a
            fine-tune (``model.init``), or the untrained baseline. Skipped on resume.
        best_metric: key of the validation row that picks ``best.pt`` (e.g. ``val/sr_psnr``).
        best_mode: ``max``, ``min`` or ``auto`` (``min`` for nmse/loss keys, else ``max``).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        progress: show a tqdm bar on rank 0.
        threads: ``torch.set_num_threads`` (0 = leave as is).
    """

    steps: int = 1000
    seed: int = 0
    out_dir: str = "runs/run"
    overwrite: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = False
    compile: bool = False
    ema_decay: float = 0.999
    log_every: int = 20
    val_every: int = 500
    ckpt_every: int = 500
    val_at_start: bool = False
    best_metric: str = "val/sr_psnr"
    best_mode: Literal["auto", "max", "min"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True
    threads: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"run.steps must be >= 1, got {self.steps}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"run.ema_decay must lie in [0, 1), got {self.ema_decay}")
        for name in ("log_every", "val_every", "ckpt_every", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"run.{name} must be >= 0")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"run.precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"run.device must be auto, cpu or cuda, got {self.device!r}")

    @property
    def resolved_best_mode(self) -> str:
        if self.best_mode != "auto":
            return self.best_mode
        return "min" if any(k in self.best_metric for k in ("nmse", "loss")) else "max"


@dataclass
class TrainConfig:
    """The whole training recipe. ``model`` is stored resolved: every field of the model's
    config dataclass, defaults filled in (so a saved run says exactly what was built).

    Fine-tuning: ``model.init: NAME_OR_DIR`` (a shipped model name such as ``iconet-t1-x2``,
    see :func:`iconet.hub.available_models`, or a folder written by ``iconet export``) starts
    training from that model's weights instead of a random initialisation. The architecture
    then comes from the init model's ``config.yaml``: ``model`` keys the recipe leaves out are
    filled from it, keys it gives must equal it (a :class:`~iconet.config.ConfigError` names
    each differing key with both values), and the degradation must have the model's scale and
    sampling grid (its contrast, mask or noise may differ: that is what fine-tuning is for).
    ``model`` is a mapping, so an override can replace a recipe's whole section:
    ``"model={init: iconet-t1-x2}"``.

    The resolved config records the source as the top-level ``init`` (``None``: random
    initialisation) and keeps ``model`` the pure architecture section that
    :func:`iconet.models.build_model`, ``iconet export`` and ``iconet ablate`` read; a saved
    ``config.yaml`` therefore reloads as is (a recipe may also give ``init`` there, but not two
    different sources). The weights are loaded by :class:`~iconet.engine.trainer.Trainer` when
    a run starts; a resumed run continues from its checkpoint instead. The init model must still
    be found whenever the config is loaded (its architecture is checked against ``model``).
    """

    model: dict[str, Any] = field(default_factory=lambda: {"name": "iconet"})
    init: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    degradation: Degradation = field(default_factory=lambda: Degradation(mask_mode="random"))
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        from iconet.models import make_config

        if not isinstance(self.model, dict):
            raise ConfigError(f"model must be a mapping with a 'name' (or an 'init'), got {self.model!r}")
        spec = dict(self.model)
        if "init" in spec:
            given = spec.pop("init")
            if given is not None and (not isinstance(given, str) or not given):
                raise ConfigError(f"model.init must be a shipped model name or a model folder, got {given!r}")
            if given is not None and self.init is not None and given != self.init:
                raise ConfigError(f"model.init ({given!r}) and init ({self.init!r}) name different models; give one")
            self.init = given if given is not None else self.init
        if self.init is not None and (not isinstance(self.init, str) or not self.init):
            raise ConfigError(f"init must be a shipped model name or a model folder, got {self.init!r}")
        init_info = None
        if self.init is not None:
            init_info = _init_model(self.init)
            self.model = _model_from_init(spec, init_info, self.init)
        else:
            self.model = to_dict(make_config(spec))
        scale = int(self.model["scale"])
        if self.degradation.scale != scale:
            if init_info is not None:
                raise ConfigError(
                    f"degradation.scale is {self.degradation.scale} but the init model {self.init} (model.init) "
                    f"is x{scale}; fine-tuning keeps the model's scale: set degradation.scale={scale} or start "
                    f"from a x{self.degradation.scale} model"
                )
            raise ConfigError(
                f"degradation.scale ({self.degradation.scale}) differs from model.scale ({scale}); set both"
            )
        if self.model.get("in_channels", 1) != 1:
            raise ConfigError("model.in_channels must be 1: the slice datasets yield one channel")
        if init_info is not None and self.degradation.grid != self.model.get("grid"):
            raise ConfigError(
                f"the init model {self.init} (model.init) was trained on the {self.model.get('grid')!r} sampling "
                f"grid but degradation.kind={self.degradation.kind!r} makes LR on the {self.degradation.grid!r} "
                "grid; fine-tune with a degradation on the model's grid (kspace: degradation.kind=kspace; "
                "centre: bicubic, gaussian or poisson)"
            )
        if self.model.get("grid") != self.degradation.grid:
            raise ConfigError(
                f"model.grid is {self.model.get('grid')!r} but degradation.kind={self.degradation.kind!r} "
                f"makes LR on the {self.degradation.grid!r} grid; set model.grid={self.degradation.grid}"
            )
        p = self.data.patch_size
        try:
            self.degradation.check_patch_size(p, "data.patch_size")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if p < MIN_LR_PATCH * scale:
            raise ConfigError(
                f"data.patch_size {p} is too small for scale {scale}: the LR patch must be at least "
                f"{MIN_LR_PATCH} px, use data.patch_size >= {MIN_LR_PATCH * scale}"
            )
        s = self.loss.sr_weights
        if s and len(s) != self.degradation.stages:
            raise ConfigError(f"loss.sr_weights has {len(s)} weights for {self.degradation.stages} stage(s)")
        r = self.loss.rec_weights
        if r and len(r) != self.degradation.stages:
            raise ConfigError(f"loss.rec_weights has {len(r)} weights for {self.degradation.stages} stage(s)")
        if self.distill.teacher is not None:
            teacher = _init_model(self.distill.teacher, "distill.teacher")
            if teacher.scale != scale or teacher.model.get("grid") != self.degradation.grid:
                raise ConfigError(
                    f"distill.teacher {self.distill.teacher} is a x{teacher.scale} model on the "
                    f"{teacher.model.get('grid')!r} grid but this run trains x{scale} on the "
                    f"{self.degradation.grid!r} grid; the teacher must match both"
                )
            if teacher.model.get("in_channels", 1) != self.model.get("in_channels", 1):
                raise ConfigError(f"distill.teacher {self.distill.teacher} takes {teacher.model.get('in_channels', 1)} "
                                  f"channel(s), the model {self.model.get('in_channels', 1)}")


def _init_model(source: str, key: str = "model.init") -> Any:
    """The :class:`iconet.hub.ModelInfo` of ``model.init`` (or of the model named by the recipe
    key ``key``, e.g. ``distill.teacher``): config only, no weights read.

    Raises:
        ConfigError: one line: no such folder, or no shipped model of that name (the shipped
            names are listed), or a folder that is not an exported model.
    """
    import os

    from iconet import hub

    path = Path(source)
    if not path.exists():
        if os.sep in source or "/" in source or source.startswith("."):
            raise ConfigError(f"{key}: {source}: model folder not found (a folder written by iconet export)")
        names = hub.available_models()
        if source not in names:
            listed = ", ".join(names) if names else "none yet"
            raise ConfigError(
                f"{key}: {source!r} is neither a model folder nor a shipped model; shipped models: {listed} "
                "(or give a folder written by iconet export)"
            )
    try:
        return hub.read_info(source)
    except (OSError, ValueError) as err:  # ConfigError is a ValueError
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{key} {source}: {msg}") from None


def _model_from_init(spec: dict[str, Any], info: Any, source: str) -> dict[str, Any]:
    """The resolved ``model`` section of a fine-tune: the init model's, checked against the keys
    the recipe gives (``spec``, without ``init``)."""
    from iconet.models import make_config

    name = spec.get("name")
    if name is not None and name != info.name:
        raise ConfigError(
            f"model.name is {name!r} in the recipe but the init model {source} (model.init) is {info.name!r}; "
            "drop model.name (it is taken from the init model) or start from a model of that architecture"
        )
    try:
        ref = to_dict(make_config(dict(info.model)))
    except ConfigError as err:
        raise ConfigError(
            f"model.init {source}: its config.yaml does not describe a model this version builds: {err}"
        ) from None

    def mismatch(keys: list[str]) -> ConfigError:
        shown = ", ".join(f"model.{k} is {spec[k]!r} in the recipe but {ref.get(k)!r} in the init model" for k in keys)
        return ConfigError(
            f"{shown} ({source}, model.init): fine-tuning keeps the init model's architecture; drop "
            + ("these keys" if len(keys) > 1 else f"model.{keys[0]}")
            + " from the recipe (they are taken from the init model; on the command line "
            + f"\"model={{init: {source}}}\" replaces the recipe's model section)"
        )

    if all(spec[k] == ref.get(k) for k in spec):
        return ref
    try:
        resolved = to_dict(make_config({**ref, **spec}))  # names unknown or invalid recipe keys
    except ConfigError:
        known = [k for k in spec if k in ref and spec[k] != ref[k]]
        if known:  # e.g. a scale the model's other fields do not fit: the mismatch is the news
            raise mismatch(known) from None
        raise
    diff = [k for k in spec if resolved.get(k) != ref.get(k)]
    if diff:
        raise mismatch(diff)
    return ref


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from plain data (e.g. a saved ``config``)."""
    return from_dict(TrainConfig, data)


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe, apply dotted ``key=value`` overrides and validate.

    Args:
        path: the YAML file (``None``: start from the defaults).
        overrides: e.g. ``["run.steps=200", "model.width=32"]``.

    Raises:
        ConfigError: unknown key (named, with the closest valid one), wrong type or value.
    """
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    return train_config_from_dict(data)

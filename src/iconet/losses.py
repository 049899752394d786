"""The multi-stage, multi-task loss of ICONet (docs/design.md §1), with its weights in the config.

    L = sum_k  w_k · d(sr_k, HR_k)  +  lambda · sum_k v_k · d(rec_k, CLEAN_{k-1})

``HR_k`` is HR brought to the size of stage k by the operator that made the LR (``HR_S = HR``);
``CLEAN_{k-1}`` is the artifact-free image at the input size of stage k (``CLEAN_0`` = the LR
without undersampling artifacts). ``d`` is L1 (default) or Charbonnier.

Model outputs may be shorter than the target lists (peers with one output, or ICONet with
``supervision="last"``): SR outputs are aligned to the *last* stages, reconstruction outputs to
the CLEAN target of their size, and only the terms present are computed. Every term is returned separately (``sr_1``, ``rec_1``, ...) for logging.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class LossConfig:
    """Weights and distance of the multi-stage loss.

    Attributes:
        sr_weights: ``w_k`` per stage, first stage first. Empty: 1 for every stage. When a model
            exposes fewer stages, the weights of the last stages are used.
        rec_weight: ``lambda``, the weight of the reconstruction terms (0 turns them off).
        rec_weights: ``v_k`` per stage like ``sr_weights`` (empty: 1 each).
        criterion: ``"l1"`` or ``"charbonnier"``.
        charbonnier_eps: epsilon of the Charbonnier distance.
    """

    sr_weights: list[float] = field(default_factory=list)
    rec_weight: float = 0.5
    rec_weights: list[float] = field(default_factory=list)
    criterion: str = "l1"
    charbonnier_eps: float = 1e-3

    def __post_init__(self) -> None:
        if self.criterion not in ("l1", "charbonnier"):
            raise ValueError(f"criterion must be 'l1' or 'charbonnier', got {self.criterion!r}")
        if self.rec_weight < 0 or any(w < 0 for w in [*self.sr_weights, *self.rec_weights]):
            raise ValueError("loss weights must be >= 0")


def _distance(pred: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if cfg.criterion == "l1":
        return F.l1_loss(pred, target)
    return torch.sqrt((pred - target) ** 2 + cfg.charbonnier_eps**2).mean() - cfg.charbonnier_eps


def _weights(given: list[float], stages: int) -> list[float]:
    if not given:
        return [1.0] * stages
    if len(given) != stages:
        raise ValueError(f"{len(given)} stage weights given for a model of {stages} stage(s)")
    return list(given)


def rec_stage_indices(rec_sizes: list[tuple[int, ...]], clean_sizes: list[tuple[int, ...]]) -> list[int]:
    """The CLEAN target (0-based stage index) of each reconstruction output, matched by size.

    ``CLEAN_k`` has the input size of stage ``k + 1`` and the sizes of the stages all differ, so
    the size names the target: ICONet's ``rec_k`` is ``CLEAN_{k-1}``; a one-stage peer's
    reconstruction of its input (T2Net-style at 4x) is ``CLEAN_0``.
    """
    out = []
    for size in rec_sizes:
        ks = [k for k, c in enumerate(clean_sizes) if tuple(c) == tuple(size)]
        if not ks:
            raise ValueError(f"reconstruction output of size {tuple(size)} matches no clean target {list(clean_sizes)}")
        out.append(ks[0])
    return out


def multistage_loss(
    outputs: dict[str, list[torch.Tensor]],
    targets: dict[str, list[torch.Tensor]],
    cfg: LossConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its named terms.

    Args:
        outputs: model outputs ``{"sr": [...], "rec": [...]}`` (see :mod:`iconet.models.base`).
        targets: ``{"hr": [HR_1..HR_S], "clean": [CLEAN_0..CLEAN_{S-1}]}``, each ``(B, C, H_k, W_k)``.
        cfg: weights and distance.

    Returns:
        ``(total, terms)``; ``terms`` maps ``"sr_k"`` / ``"rec_k"`` (k = 1..S) to unweighted
        distances (detached), ready for logging.
    """
    hr, clean = targets["hr"], targets.get("clean", [])
    stages = len(hr)
    sr_w = _weights(cfg.sr_weights, stages)
    rec_w = _weights(cfg.rec_weights, stages)
    srs, recs = outputs.get("sr", []), outputs.get("rec", [])
    if not srs or len(srs) > stages:
        raise ValueError(f"model gave {len(srs)} SR output(s) for {stages} target stage(s)")
    if recs and len(recs) > len(clean):
        raise ValueError(f"model gave {len(recs)} reconstruction output(s) for {len(clean)} clean target(s)")
    total = hr[0].new_zeros(())
    terms: dict[str, torch.Tensor] = {}
    for i, pred in enumerate(srs):
        k = stages - len(srs) + i  # 0-based stage index, aligned to the last stages
        d = _distance(pred, hr[k], cfg)
        total = total + sr_w[k] * d
        terms[f"sr_{k + 1}"] = d.detach()
    if cfg.rec_weight > 0:
        for pred, k in zip(recs, rec_stage_indices([tuple(r.shape[-2:]) for r in recs],
                                                   [tuple(c.shape[-2:]) for c in clean])):
            d = _distance(pred, clean[k], cfg)
            total = total + cfg.rec_weight * rec_w[k] * d
            terms[f"rec_{k + 1}"] = d.detach()
    return total, terms


def distillation_loss(
    outputs: dict[str, list[torch.Tensor]],
    teacher: dict[str, list[torch.Tensor]],
    targets: dict[str, list[torch.Tensor]],
    weight: float,
    cfg: LossConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The distillation term: the teacher's outputs as extra targets of the student's.

    ``weight · (sum_k w_k · d(sr_k, T_sr_k) + lambda · sum_k v_k · d(rec_k, T_rec_k))``: the
    stage weights ``w_k``, ``v_k``, ``lambda`` and the distance ``d`` of :func:`multistage_loss`,
    with the teacher's output of the same size in place of ``HR_k`` / ``CLEAN_{k-1}``. ``targets``
    (the data targets of :func:`multistage_loss`) only say which stage each size is. A student
    output without a teacher output of its size is skipped, so a one-output teacher (EDSR)
    supervises the last SR stage only and a teacher without a reconstruction branch no ``rec``
    term. The teacher's outputs are constants (detached); the student's last SR output must have
    a partner (teacher and student share the scale).

    Returns:
        ``(total, terms)``; ``terms`` maps ``"kd_sr_k"`` / ``"kd_rec_k"`` (k = 1..S, as in
        :func:`multistage_loss`) to unweighted distances (detached), ready for logging.
    """
    srs, recs = outputs.get("sr", []), outputs.get("rec", [])
    by_size = {kind: {tuple(t.shape[-2:]): t.detach() for t in teacher.get(kind, [])} for kind in ("sr", "rec")}
    if not srs or tuple(srs[-1].shape[-2:]) not in by_size["sr"]:
        raise ValueError(f"the teacher's SR outputs of sizes {sorted(by_size['sr'])} include none of the "
                         f"student's final size {tuple(srs[-1].shape[-2:]) if srs else None}: "
                         "teacher and student must share the scale")
    hr_sizes = [tuple(t.shape[-2:]) for t in targets["hr"]]
    clean_sizes = [tuple(t.shape[-2:]) for t in targets.get("clean", [])]
    sr_w = _weights(cfg.sr_weights, len(hr_sizes))
    rec_w = _weights(cfg.rec_weights, len(hr_sizes))
    total = srs[-1].new_zeros(())
    terms: dict[str, torch.Tensor] = {}
    for pred in srs:
        size = tuple(pred.shape[-2:])
        if size in by_size["sr"] and size in hr_sizes:
            k = hr_sizes.index(size)
            d = _distance(pred, by_size["sr"][size].to(pred.dtype), cfg)
            total = total + sr_w[k] * d
            terms[f"kd_sr_{k + 1}"] = d.detach()
    if cfg.rec_weight > 0:
        paired = [r for r in recs if tuple(r.shape[-2:]) in by_size["rec"]]
        for pred, k in zip(paired, rec_stage_indices([tuple(r.shape[-2:]) for r in paired], clean_sizes)):
            d = _distance(pred, by_size["rec"][tuple(pred.shape[-2:])].to(pred.dtype), cfg)
            total = total + cfg.rec_weight * rec_w[k] * d
            terms[f"kd_rec_{k + 1}"] = d.detach()
    return weight * total, terms

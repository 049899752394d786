"""Process groups from ``torchrun`` environment variables, rank helpers and sharding samplers.

``torchrun --nproc_per_node=N -m iconet train cfg.yaml`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and
starts NCCL on CUDA, gloo on CPU. Without them everything runs as rank 0 of 1.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by the environment (no-op for a single process).

    Uses NCCL when ``device`` is CUDA (and sets the local CUDA device), gloo otherwise. A group
    that is already initialised (e.g. by a test or a launcher) is reused.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, False)
    if world <= 1:
        return DistInfo(0, 1, 0, False)
    if device.type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, True)


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def _epoch_seed(seed: int, epoch: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{epoch}".encode()).digest()[:8], "little") & (2**63 - 1)


def assign_subjects(groups: dict[str, list[int]], world_size: int) -> list[list[str]] | None:
    """Give whole subjects to ranks, balancing sample counts (largest first, least-loaded rank,
    ties by name, so every process computes the same answer). ``None`` when there are fewer
    subjects than ranks."""
    if len(groups) < world_size:
        return None
    load = [0] * world_size
    out: list[list[str]] = [[] for _ in range(world_size)]
    for name in sorted(groups, key=lambda n: (-len(groups[n]), n)):
        r = min(range(world_size), key=lambda i: (load[i], i))
        out[r].append(name)
        load[r] += len(groups[name])
    return out


class ShardSampler(Sampler[int]):
    """Deterministic, resumable per-rank sample order for training.

    Each epoch ``e`` the order is a function of ``(seed, e)`` only. ``mode="subject"``: each
    rank gets whole subjects (:func:`assign_subjects`) when there are at least as many subjects
    as ranks, its samples shuffled; otherwise (or with ``mode="strided"``) one global shuffle
    of which rank ``r`` takes elements ``r, r + W, r + 2W, ...``. Every rank yields the same
    number of samples (the shortest shards wrap around), as DDP needs.

    Resume: :meth:`set_epoch` then :meth:`set_position` (samples already consumed by this rank
    in that epoch); iteration then starts there.

    Args:
        subjects: the subject (volume name) of every dataset index, ``len == len(dataset)``.
        rank, world_size: this process and the number of processes.
        seed: shuffle seed.
        mode: ``subject`` or ``strided``.
    """

    def __init__(self, subjects: Sequence[str], rank: int = 0, world_size: int = 1, *, seed: int = 0,
                 mode: str = "subject") -> None:
        if mode not in ("subject", "strided"):
            raise ValueError(f"mode must be 'subject' or 'strided', got {mode!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.subjects = list(subjects)
        self.rank, self.world_size, self.seed, self.mode = rank, world_size, int(seed), mode
        self.epoch = 0
        self.position = 0
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(self.subjects):
            groups.setdefault(s, []).append(i)
        self.groups = groups
        self.assignment = assign_subjects(groups, world_size) if mode == "subject" else None
        n = len(self.subjects)
        if self.assignment is not None:
            self.num_samples = max(sum(len(groups[s]) for s in names) for names in self.assignment)
        else:
            self.num_samples = -(-n // world_size)

    @property
    def by_subject(self) -> bool:
        """Whether ranks hold whole subjects (else a strided shard)."""
        return self.assignment is not None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.position = 0

    def set_position(self, position: int) -> None:
        if not 0 <= position <= self.num_samples:
            raise ValueError(f"position {position} outside an epoch of {self.num_samples} samples")
        self.position = int(position)

    def epoch_order(self) -> list[int]:
        """This rank's full order for the current epoch (``num_samples`` indices)."""
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        if self.assignment is not None:
            mine = [i for s in self.assignment[self.rank] for i in self.groups[s]]
            order = [mine[j] for j in torch.randperm(len(mine), generator=g).tolist()]
        else:
            perm = torch.randperm(len(self.subjects), generator=g).tolist()
            total = self.num_samples * self.world_size
            perm = (perm * (-(-total // len(perm))))[:total]
            order = perm[self.rank :: self.world_size]
        if len(order) < self.num_samples:
            order = (order * (-(-self.num_samples // len(order))))[: self.num_samples]
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order()[self.position :])

    def __len__(self) -> int:
        return self.num_samples - self.position

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "world_size": self.world_size, "mode": self.mode, "num_samples": self.num_samples}


def shard_for_eval(subjects: Sequence[str], rank: int, world_size: int) -> list[int]:
    """Dataset indices this rank evaluates: whole subjects (balanced, see
    :func:`assign_subjects`); with fewer subjects than ranks, subject ``j`` goes to rank
    ``j``, so some ranks get none. No sample is repeated, and every volume is scored whole on
    one rank."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(subjects):
        groups.setdefault(s, []).append(i)
    assignment = assign_subjects(groups, world_size)
    if assignment is None:
        names = sorted(groups)
        assignment = [[names[r]] if r < len(names) else [] for r in range(world_size)]
    return sorted(i for s in assignment[rank] for i in groups[s])

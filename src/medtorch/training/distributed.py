"""Distributed data parallel under ``torchrun``: gloo on CPU, NCCL on GPU.

The trainer (or :func:`gathered`, whichever comes first) joins the process group through :func:`context`;
outside ``torchrun`` it is a world of one.

    torchrun --nproc-per-node 2 -m medtorch train --data heart.csv --target disease --out run

Work that is not a network's (the scikit-learn models' cross-validation) is shared out by rank with
:func:`share_of_this_rank`, and every rank's share is sent to all with :func:`gathered`.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from medtorch.errors import MedtorchError

T = TypeVar("T")
# Waits that are not training steps: in the gather, ranks wait for the slowest share of whole model fits; at
# exit, for rank 0 to evaluate and write the report. Minutes to hours, past the default group's timeout
# (10 minutes under NCCL), so each goes through a gloo group of its own with this timeout (one group per
# kind of wait, so a rank leaving early never meets another rank's gather in the same group).
PATIENT_TIMEOUT = timedelta(hours=24)
_patient_groups: dict[str, Any] = {}


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _world_size() -> int:
    """How many processes ``torchrun`` started (1 outside it), read from the environment without joining the group."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def context(device_type: str = "cpu") -> DistributedContext:
    """Join the process group ``torchrun`` describes in the environment (or a world of one)."""
    if _world_size() <= 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        atexit.register(_leave)  # a group left to interpreter shutdown can abort ("terminate called without an active exception")
    if not _patient_groups:  # also when the caller joined the process group itself; every rank calls context() at the same points
        for purpose in ("gather", "exit"):  # new_group needs every rank, in the same order
            _patient_groups[purpose] = dist.new_group(backend="gloo", timeout=PATIENT_TIMEOUT)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier(group=_patient_groups.get("exit"))  # no rank closes its connections while another still talks (torchrun stops the rest if one dies)
        dist.destroy_process_group()
    _patient_groups.clear()


def resolve_device(device: str) -> str:
    """The device a ``train.device`` setting means here: ``auto`` is the GPU when there is one."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise MedtorchError("device 'cuda' was asked for but no GPU is available")
    return device


def share_of_this_rank(items: list[T]) -> list[T]:
    """This process's share of ``items`` under ``torchrun`` (every world-size-th, from its rank); all of them outside it.

    >>> mine = share_of_this_rank(jobs)
    """
    world_size = _world_size()
    return items[int(os.environ.get("RANK", "0")) :: world_size] if world_size > 1 else list(items)


def gathered(part: T, device: str = "auto") -> list[T]:
    """Every rank's ``part``, in rank order, on every rank under ``torchrun`` (``[part]`` outside it): what
    :func:`share_of_this_rank` shared out comes back to all. ``device`` is the ``train.device`` setting, so the
    process group joined here is the one the trainer would join (gloo on CPU, NCCL on GPU); the parts
    themselves travel over a gloo group of their own, on the CPU, with a timeout of :data:`PATIENT_TIMEOUT`.

    >>> parts = gathered({job: fit(job) for job in share_of_this_rank(jobs)}, cfg.train.device)
    """
    if _world_size() <= 1:
        return [part]
    import torch
    import torch.distributed as dist

    ctx = context(torch.device(resolve_device(device)).type)
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, part, group=_patient_groups["gather"])  # pickles between this job's own processes, never a file
    return parts

"""Distributed data parallel under ``torchrun``: gloo on CPU, NCCL on GPU.

The trainer calls :func:`context` once; outside ``torchrun`` it is a world of one.

    torchrun --nproc-per-node 2 -m medtorch train --data heart.csv --target disease --out run

Work that is not a network's (the scikit-learn models' cross-validation) is shared out by rank with
:func:`share_of_this_rank` and put back together on every rank with :func:`gathered`.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, TypeVar

from medtorch.errors import MedtorchError

T = TypeVar("T")


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


def context(device_type: str = "cpu") -> DistributedContext:
    """Join the process group ``torchrun`` describes in the environment (or a world of one)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        atexit.register(_leave)  # a group left to interpreter shutdown can abort ("terminate called without an active exception")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()  # no rank closes its connections while another still talks (torchrun stops the rest if one dies)
        dist.destroy_process_group()


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


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
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return items[int(os.environ.get("RANK", "0")) :: world_size] if world_size > 1 else list(items)


def gathered(part: dict[Any, Any], device: str = "auto") -> dict[Any, Any]:
    """Every rank's ``part`` merged, on every rank, under ``torchrun`` (``part`` itself outside it): what
    :func:`share_of_this_rank` shared out comes back whole. ``device`` is the ``train.device`` setting, so the
    process group joined here is the one the trainer would join (gloo on CPU, NCCL on GPU).

    >>> scores = gathered({job: fit(job) for job in share_of_this_rank(jobs)}, cfg.train.device)
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return part
    import torch
    import torch.distributed as dist

    device_type = torch.device(resolve_device(device)).type
    ctx = context(device_type)
    if device_type == "cuda":
        torch.cuda.set_device(ctx.local_rank)  # NCCL's object collectives send from the current device
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, part)  # pickles between this job's own processes, never a file
    merged: dict[Any, Any] = {}
    for each in parts:
        merged.update(each)
    return merged

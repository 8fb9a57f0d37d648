"""Distributed data parallel under ``torchrun``: gloo on CPU, NCCL on GPU.

The trainer calls :func:`context` once; outside ``torchrun`` it is a world of one.

    torchrun --nproc-per-node 2 -m medtorch train --data heart.csv --target disease --out run
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch


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
        torch.distributed.barrier()

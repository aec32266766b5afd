"""Process-group set-up that also works without ``torchrun`` (single process)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.barrier()


def dist_from_env() -> DistInfo:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` as set by torchrun (defaults: single process)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPU); a no-op for a
    single process. Returns this process's :class:`DistInfo`."""
    info = dist_from_env()
    if info.enabled and not torch_dist.is_initialized():
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(info.local_rank)
            backend = "nccl"
        else:
            backend = "gloo"
        torch_dist.init_process_group(backend=backend)
    return info


def average_across_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Mean of each value over ranks (one collective); identity for a single process."""
    if not info.enabled or not values:
        return values
    import torch

    keys = sorted(values)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return dict(zip(keys, (tensor / info.world_size).tolist(), strict=True))


def sum_across_ranks(value: float, info: DistInfo) -> float:
    """Sum of ``value`` over ranks (one collective); identity for a single process."""
    if not info.enabled:
        return value
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return float(tensor.item())


def any_across_ranks(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is true on any (one collective); ``flag`` for a single
    process."""
    if not info.enabled:
        return flag
    return sum_across_ranks(1.0 if flag else 0.0, info) > 0


def destroy_distributed() -> None:
    """Leave the process group, if one was joined."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()

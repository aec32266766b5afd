"""Process-group set-up that also works without ``torchrun`` (single process), and the
fully sharded (FSDP2) model with checkpoints that load on any world size."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn


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
    keys = sorted(values)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return dict(zip(keys, (tensor / info.world_size).tolist(), strict=True))


def sum_across_ranks(value: float, info: DistInfo) -> float:
    """Sum of ``value`` over ranks (one collective); identity for a single process."""
    if not info.enabled:
        return value
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


def destroy_distributed(synchronise: bool = True) -> None:
    """Leave the process group, if one was joined; after a barrier when ``synchronise``.

    Gloo's worker threads drop a finished collective's tensors after the caller has moved
    on, and dropping them takes the GIL. If the last collective before exit was an all-reduce
    (every training step ends with one), that can land in interpreter shutdown and abort a
    finished run ("terminate called without an active exception", exit -6): FSDP2 keeps the
    group, and so those threads, alive past ``destroy_process_group``. A barrier holds no
    tensors and returns only after the earlier collectives, while this thread waits without
    the GIL, so their tensors are released before Python shuts down. On an error path pass
    ``synchronise=False``: the other ranks may never reach the barrier.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        # A DDP wrapper caught in a reference cycle (the training loop's closures) would
        # otherwise be freed by the garbage collector at shutdown, after the group is gone,
        # and its reducer's pending work aborts the process the same way.
        gc.collect()
        if synchronise:
            torch_dist.barrier()
        torch_dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session() -> Iterator[DistInfo]:
    """Join the job's process group (see :func:`init_distributed`) for the ``with`` block and
    leave it afterwards: synchronised when the block finished, at once when it raised."""
    info = init_distributed()
    try:
        yield info
    except BaseException:
        destroy_distributed(synchronise=False)
        raise
    destroy_distributed()


# -- fully sharded data parallel (FSDP2) ------------------------------------------------------


def shard_model(model: nn.Module) -> nn.Module:
    """Shard ``model`` in place with ``torch.distributed.fsdp.fully_shard``: each entry of
    every ``nn.ModuleList`` (the transformer blocks: one all-gather per block in the forward
    and backward) and then the root (embeddings, norms, heads). Needs an initialised process
    group. Returns ``model`` (now an ``FSDPModule``; its parameters are ``DTensor`` shards)."""
    from torch.distributed.fsdp import fully_shard

    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    for blocks in lists:
        for block in blocks:
            fully_shard(block)
    fully_shard(model)
    return model


def _full_options(**extra: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer,
               sharded: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The full weights and optimizer state for a checkpoint, as a 1-process run has them.

    Sharded: a collective (call it on every rank); rank 0 gets the gathered tensors on the
    CPU, the other ranks empty dicts. The optimizer state is then keyed by parameter name
    (``torch.distributed.checkpoint.state_dict``), so it loads on any world size and without
    FSDP. Not sharded: ``model.state_dict()`` and ``optimizer.state_dict()``.
    """
    if not sharded:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = _full_options(cpu_offload=True)
    return (get_model_state_dict(model, options=options),
            get_optimizer_state_dict(model, optimizer, options=options))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                    weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                    sharded: bool) -> None:
    """Load full weights and optimizer state (from :func:`full_state` of any run: sharded or
    not, any world size) into this rank's model and optimizer."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    if sharded:
        set_model_state_dict(model, weights, options=_full_options())
    else:
        model.load_state_dict(weights)
    if _keyed_by_name(optimizer_state):
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=_full_options())
    elif sharded:
        set_optimizer_state_dict(model, optimizer,
                                 optimizer_state_by_name(model, optimizer, optimizer_state),
                                 options=_full_options())
    else:
        optimizer.load_state_dict(optimizer_state)


def _keyed_by_name(optimizer_state: dict[str, Any]) -> bool:
    params = [p for group in optimizer_state["param_groups"] for p in group["params"]]
    return any(isinstance(p, str) for p in params)


def optimizer_state_by_name(model: nn.Module, optimizer: torch.optim.Optimizer,
                            optimizer_state: dict[str, Any]) -> dict[str, Any]:
    """``optimizer.state_dict()``-style state (parameters numbered in ``optimizer``'s group
    order) keyed by parameter name instead, for ``set_optimizer_state_dict``."""
    names = {param: name for name, param in model.named_parameters()}
    order = [names[p] for group in optimizer.param_groups for p in group["params"]]
    return {
        "state": {order[i]: value for i, value in optimizer_state["state"].items()},
        "param_groups": [{**group, "params": [order[i] for i in group["params"]]}
                         for group in optimizer_state["param_groups"]],
    }

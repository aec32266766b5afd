"""One optimizer step of the training loop, kept on the device (no host sync): ``accum_steps``
micro-batches under the run's precision, gradients all-reduced on the last one only, clipping,
and a non-finite gradient skipping the update (inside the fused optimizer kernel). Too many
skipped steps in a row stop the run, checked where the loop reads the device anyway.

The step's values (loss, its parts, gradient norm, skip flag) are summed into a
:class:`Window`, on the device; the loop reads it once per logging interval, and its partial
sums travel in a checkpoint."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from motionmae.config import OptimConfig, RunConfig
from motionmae.errors import NonFiniteLossError
from motionmae.train.distributed import DistInfo, average_across_ranks

Loss = Callable[[nn.Module, dict[str, Any], torch.Generator],
                tuple[torch.Tensor, dict[str, torch.Tensor]]]


def step_seed(seed: int, step: int, micro: int = 0, rank: int = 0) -> int:
    """The seed of a step's (or micro-batch's) masks and module randomness."""
    # Rank 0 keeps the single-process seeds; other ranks are offset far apart.
    return (seed * 1_000_003 + step * 101 + micro + rank * 1_000_000_007) % (2**63 - 1)


@dataclass
class Window:
    """The steps since the last record: their summed values (on the device), and this
    process's clips and start time (for the throughput)."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)
    clips: int = 0
    steps: int = 0

    @classmethod
    def resumed(cls, saved: dict[str, Any], device: torch.device) -> Window:
        """The window a checkpoint saved (:meth:`snapshot`), continued on ``device``."""
        sums = {name: value.to(device) for name, value in saved.get("sums", {}).items()}
        return cls(sums=sums, steps=saved.get("steps", 0))

    def snapshot(self, dist: DistInfo) -> dict[str, Any]:
        """The sums and step count so far, for a checkpoint (a host sync). Over several ranks,
        their mean: every rank resumes with it, and the record's mean over ranks is the same."""
        sums = {name: value.detach().cpu() for name, value in self.sums.items()}
        if dist.enabled:  # a collective: every rank saves at the same step
            means = average_across_ranks({k: float(v) for k, v in sums.items()}, dist)
            sums = {name: torch.tensor(value) for name, value in means.items()}
        return {"sums": sums, "steps": self.steps}

    def add(self, name: str, value: torch.Tensor) -> None:
        """Sum ``value`` into ``name`` (on the device: no host sync)."""
        self.sums[name] = self.sums.get(name, 0) + value

    def add_step(self, loss: torch.Tensor, grad_norm: torch.Tensor, skipped: torch.Tensor,
                 clips: int) -> None:
        """Count one optimizer step: its loss, gradient norm, skip flag and clips."""
        self.add("loss", torch.nan_to_num(loss, nan=0.0))
        self.add("grad_norm", torch.nan_to_num(grad_norm, nan=0.0))
        self.add("bad", skipped)
        self.clips += clips
        self.steps += 1

    def means(self, bad: int, dist: DistInfo) -> dict[str, float]:
        """Each value's mean over the steps not skipped and the ranks, and the throughput."""
        good = max(1, self.steps - bad)
        elapsed = time.perf_counter() - self.start
        means = average_across_ranks({k: float(v) / good for k, v in self.sums.items()}, dist)
        return {**means, "clips_per_s": self.clips / max(elapsed, 1e-9)}


class OptimizerStep:
    """Forward, backward and update of one step of a task's ``loss``, run on ``step_model``
    (``model`` as wrapped for DDP or FSDP, or itself)."""

    def __init__(self, loss: Loss, model: nn.Module, step_model: nn.Module,
                 optimizer: torch.optim.Optimizer, optim: OptimConfig, run: RunConfig,
                 dist: DistInfo, sharded: bool, device: torch.device) -> None:
        self.loss, self.model, self.step_model, self.optimizer = loss, model, step_model, optimizer
        self.accum, self.clip_grad = optim.accum_steps, optim.clip_grad
        self.seed, self.rank, self.device = run.seed, dist.rank, device
        self.sharded = sharded
        self.ddp = dist.enabled and not sharded
        self.fused = bool(optimizer.defaults.get("fused"))
        self.autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if run.precision == "bf16"
            else contextlib.nullcontext()
        )
        # Trailing run of skipped steps, kept on the device (no host sync per step).
        self.consecutive_bad = torch.zeros((), device=device)
        self.indices: list[torch.Tensor] = []  # the dataset indices of the last step

    def __call__(self, step: int, next_batch: Callable[[], dict[str, Any]],
                 add: Callable[[str, torch.Tensor], None]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step ``step`` on micro-batches from ``next_batch``, their named parts passed to
        ``add``; returns the loss, the gradient norm and 1.0 if the update was skipped."""
        torch.manual_seed(step_seed(self.seed, step, rank=self.rank))
        loss = torch.zeros((), device=self.device)
        self.indices.clear()
        for micro in range(self.accum):
            loss = loss + self._micro_step(step, micro, next_batch(), add)
        grad_norm, found_inf = self._update()
        self.consecutive_bad = (self.consecutive_bad + 1) * found_inf
        return loss, grad_norm, found_inf

    def check_bad_streak(self, step: int, max_bad_steps: int) -> None:
        """Raise once ``max_bad_steps`` steps in a row were non-finite (a host sync)."""
        streak = int(self.consecutive_bad)
        if streak >= max_bad_steps:
            indices = torch.cat(self.indices).tolist() if self.indices else []
            raise NonFiniteLossError(
                f"{streak} consecutive steps (steps {step - streak + 1} to {step}) had a "
                f"non-finite loss or gradient (run.max_bad_steps={max_bad_steps}); the batch "
                f"of step {step} held videos {indices} (dataset indices, rank {self.rank})"
            )

    def _micro_step(self, step: int, micro: int, batch: dict[str, Any],
                    add: Callable[[str, torch.Tensor], None]) -> torch.Tensor:
        """Forward and backward of one micro-batch (given on the host); returns its share of
        the step's loss."""
        if isinstance(batch.get("index"), torch.Tensor):
            self.indices.append(batch["index"])
        batch = _to_device(batch, self.device)
        last_micro = micro == self.accum - 1
        generator = torch.Generator().manual_seed(step_seed(self.seed, step, micro, self.rank))
        # Gradients are all-reduced once per optimizer step, on the last micro-batch.
        sync = (self.step_model.no_sync() if self.ddp and not last_micro
                else contextlib.nullcontext())
        if self.sharded:
            self.step_model.set_requires_gradient_sync(last_micro)
        with sync, (_fsdp_view_outputs_quiet() if self.sharded else contextlib.nullcontext()):
            with self.autocast:
                loss, parts = self.loss(self.step_model, batch, generator)
            (loss / self.accum).backward()
        for name, value in parts.items():
            add(name, value.detach().float() / self.accum)
        return loss.detach() / self.accum

    def _update(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip and apply the gradients unless their norm is non-finite; returns the norm and
        the non-finite flag."""
        with_grad = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in with_grad])
        if isinstance(grad_norm, DTensor):  # FSDP: already reduced over the shards
            grad_norm = grad_norm.full_tensor()
        # From the all-reduced gradients, so every rank takes the same decision (a
        # non-finite loss anywhere makes the gradient non-finite everywhere).
        found_inf = (~torch.isfinite(grad_norm)).float()
        if self.clip_grad is not None:
            torch.nn.utils.clip_grads_with_norm_(
                with_grad,
                self.clip_grad,
                torch.nan_to_num(grad_norm, nan=0.0, posinf=0.0),
            )
        if self.fused:
            # The fused kernel skips the update (and its step count) when found_inf is 1:
            # no host sync needed to skip a bad step.
            self.optimizer.found_inf = found_inf
            self.optimizer.step()
        elif not bool(found_inf):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, found_inf


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


@contextlib.contextmanager
def _fsdp_view_outputs_quiet() -> Any:
    """FSDP2 warns, once per process, that the sharded root returned a view: a ``Linear`` over
    ``[B, M, C]`` returns one. The warning is about in-place ops on such outputs dropping its
    hooks; no loss modifies a prediction in place (``tests/train/test_fsdp.py``: the sharded
    run equals one process to float tolerance), so it would only alarm the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view",
                                category=UserWarning)
        yield

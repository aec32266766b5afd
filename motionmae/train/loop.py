"""The one training loop, shared by pretraining and fine-tuning.

A *task* says what a step computes (its loss) and what a checkpoint describes; the loop owns
everything else: device, data order, precision, accumulation, clipping, the optimizer and its
schedule, non-finite steps, metrics, checkpoints and exact resume.

Exact resume: the data order comes from ``(seed, epoch)`` (:class:`EpochSampler`), each sample's
augmentation from ``(seed, epoch, index)`` (the dataset), and each step's masks and module
randomness from ``(seed, step, rank)``. A checkpoint stores the step, the position in the epoch and
the optimizer, so a resumed run computes the same steps an uninterrupted one would.

Data-parallel runs (``torchrun``): each rank takes every ``world_size``-th sample of the epoch's
permutation, so one step of ``R`` ranks x batch ``B`` consumes the same samples as one step of
a single process with batch ``R * B``, and DDP (or FSDP2 with ``run.parallel: fsdp``) averages
the gradients (the global batch, and so the learning rate, is ``R * B * accum_steps``).
Masks and module randomness are seeded per *(step, micro-batch, rank)*: ranks draw different
masks for their halves, so a 2-rank run matches a 1-process run on samples, gradients and
schedule but not on the exact masks (rank 0 keeps the single-process seeds). Only rank 0
writes metrics and checkpoints. Checkpoints hold the full weights and optimizer state and the
position in the epoch counted over all ranks, so a run resumes on any world size, with or
without FSDP.

Preemption: ``SIGTERM`` (installed in the main thread for the run, then restored) makes the
loop finish the current step, save a checkpoint and raise :class:`TrainingInterrupted`; all
ranks agree on the stop step. ``--resume`` continues from that checkpoint.

Storage: before the first step the output folder must be writable and hold the checkpoints
kept at once (:mod:`motionmae.train.preflight`); a file that rank 0 cannot write later (disk
full) stops every rank with a :class:`~motionmae.fileio.StorageError`, ``latest`` still on the
previous complete checkpoint. A resumed run logs the records an uninterrupted one would.

:class:`Trainer` runs it in named steps: its constructor builds the run, :meth:`Trainer.fit`
loops over step, probe, log and checkpoint. The device side of a step is in
:mod:`motionmae.train.step`, checkpoints and resume in :mod:`motionmae.train.save_resume`,
the records and their sinks in :mod:`motionmae.train.records`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from motionmae.checkpoints.format import Checkpoint
from motionmae.config import OptimConfig, RunConfig
from motionmae.data.badvideos import FILE_NAME as BAD_VIDEOS_FILE
from motionmae.data.badvideos import BadVideoLog
from motionmae.schedule import lr_at, planned_steps, resumed_length_warning
from motionmae.train.distributed import DistInfo, any_across_ranks, shard_model, sum_across_ranks
from motionmae.train.optim import build_optimizer, set_lr
from motionmae.train.preflight import (
    OutputFolderError,
    check_free_space,
    checkpoint_bytes,
    prepare_output_folder,
)
from motionmae.train.records import (
    METRICS_FILE,
    RecordSinks,
    Window,
    trim_metrics,
    write_environment,
)
from motionmae.train.sampler import EpochSampler, batches_per_epoch
from motionmae.train.save_resume import (
    Checkpoints,
    TrainState,
    check_resumed_model,
    stop_on_sigterm,
)
from motionmae.train.step import OptimizerStep

__all__ = [
    "TrainResult",
    "TrainState",
    "TrainTask",
    "Trainer",
    "TrainingInterrupted",
    "check_resumed_model",
    "resolve_device",
    "train",
]

log = logging.getLogger(__name__)


class TrainTask(Protocol):
    """What a training run optimises."""

    model: nn.Module

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss of one micro-batch and named detached scalars to log.

        ``model`` is ``self.model`` as the loop runs it (compiled and/or wrapped for
        data-parallel training): call it, not ``self.model``, in the forward pass.
        """
        ...

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer groups (``params``, ``weight_decay``, ``lr_scale``)."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON description saved as the checkpoint's ``config.json``."""
        ...


class TrainingInterrupted(RuntimeError):
    """The run received ``SIGTERM``: it saved a checkpoint at ``step`` and stopped."""

    def __init__(self, step: int, out_dir: Path) -> None:
        super().__init__(f"interrupted by SIGTERM: checkpoint saved at step {step} under "
                         f"{out_dir / 'checkpoints'}; continue with --resume")
        self.step = step
        self.out_dir = out_dir


@dataclass
class TrainResult:
    state: TrainState
    out_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(
    task: TrainTask,
    dataset: Dataset,
    run: RunConfig,
    optim: OptimConfig,
    out_dir: str | Path,
    *,
    build_loader: Callable[..., DataLoader],
    workers: int = 0,
    resume: bool = False,
    dist: DistInfo | None = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
    clips_per_item: int = 1,
    probe: Callable[[torch.device], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``task`` on ``dataset`` until ``run.steps`` optimizer steps (or ``run.epochs``).

    Args:
        build_loader: ``(dataset, batch_size=, workers=, shuffle=, seed=, sampler=) ->
            DataLoader``.
        clips_per_item: clips each dataset item yields (repeated sampling); the loader's batch
            holds ``run.batch_size // clips_per_item`` items.
        resume: continue from the newest complete checkpoint in ``out_dir`` (error if none).
        on_log: called on rank 0 with each logged record (the CLI's progress bar).
        probe: ``probe(device) -> {name: value}``, run on rank 0 (the other ranks wait at
            the next step's gradient all-reduce) every ``run.probe_every`` steps and at the
            last step; its values join that step's logged record. Not under FSDP (the model
            is sharded).
    """
    trainer = Trainer(task, dataset, run, optim, Path(out_dir), build_loader=build_loader,
                      workers=workers, resume=resume, dist=dist or DistInfo(), on_log=on_log,
                      clips_per_item=clips_per_item, probe=probe)
    return trainer.fit()


class Trainer:
    """One run of :func:`train`: the constructor builds it, :meth:`fit` runs it."""

    def __init__(
        self,
        task: TrainTask,
        dataset: Dataset,
        run: RunConfig,
        optim: OptimConfig,
        out_dir: Path,
        *,
        build_loader: Callable[..., DataLoader],
        workers: int,
        resume: bool,
        dist: DistInfo,
        on_log: Callable[[dict[str, float]], None] | None,
        clips_per_item: int,
        probe: Callable[[torch.device], dict[str, float]] | None,
    ) -> None:
        """Build: model, data plan, optimizer, resumed state, output folder, loader."""
        self.task, self.dataset, self.run, self.optim = task, dataset, run, optim
        self.out_dir, self.dist, self.resume = out_dir, dist, resume
        self.on_log, self.probe = on_log, probe
        self.probe_every = run.probe_every if probe is not None else None
        self.device = resolve_device(run.device)
        self.sharded = dist.enabled and run.parallel == "fsdp"
        one_checkpoint = self._build_model()
        self._plan(clips_per_item)
        self.optimizer = build_optimizer(task.parameter_groups(optim.weight_decay), optim,
                                         self.peak_lr)
        self.checkpoints = Checkpoints(out_dir / "checkpoints", self.model, self.optimizer,
                                       task.describe, run.keep_last, run.keep_every,
                                       self.sharded, dist)
        self.state = self._resume() if resume else TrainState()
        self._prepare_output_folder(one_checkpoint)
        self.history: list[dict[str, float]] = []
        self.pending_bad_draws = 0  # this rank's, since the last log / checkpoint
        # RUN/bad_videos.tsv and the data.max_bad_fraction stop rule (None: bad videos raise).
        self.bad_log = BadVideoLog.for_run(out_dir, dataset, write=dist.is_main)
        self.saved_step = -1
        # One loader for the whole run, so its workers persist across epochs; the epoch reaches
        # them through the sampler (order) and the dataset's shared epoch counter (augmentation).
        self.loader = build_loader(dataset, batch_size=self.items_per_batch, workers=workers,
                                   shuffle=False, seed=run.seed, sampler=self.sampler)
        self.model.train()
        self.optimizer_step = OptimizerStep(task.loss, self.model, self.step_model,
                                            self.optimizer, optim, run, dist, self.sharded,
                                            self.device)
        self.stream = self._batches()

    # Build

    def _build_model(self) -> int:
        """Model on its device, compiled, wrapped for DDP or FSDP; returns a checkpoint's bytes."""
        self.model = self.task.model.to(self.device)
        if self.probe_every is not None and self.sharded:
            raise ValueError("run.probe_every: in-run probes do not run under run.parallel=fsdp "
                             "(rank 0 alone cannot run a sharded encoder); use ddp, or probe "
                             "the checkpoints with motionmae probe")
        # Sized before sharding: a checkpoint holds the full tensors.
        size = checkpoint_bytes(self.model.state_dict().values(),
                                (p for p in self.model.parameters() if p.requires_grad))
        if self.run.compile:
            self.model.compile()  # in place: state_dict keys stay as they are
        self.step_model: nn.Module = self.model
        if self.sharded:
            self.step_model = shard_model(self.model)  # in place: the optimizer gets the shards
        elif self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.step_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        return size

    def _plan(self, clips_per_item: int) -> None:
        """Split each step's batch over the ranks and the loader, and set the schedule."""
        run, dist = self.run, self.dist
        self.items_per_batch = run.videos_per_batch(clips_per_item)
        self.sampler = EpochSampler(len(self.dataset), seed=run.seed, shuffle=True,
                                    rank=dist.rank, world_size=dist.world_size)
        batches = batches_per_epoch(len(self.dataset), run, clips_per_item, dist.world_size)
        self.total_steps = planned_steps(run.steps, run.epochs, batches, self.optim.accum_steps)
        self.global_batch = run.batch_size * self.optim.accum_steps * dist.world_size
        self.peak_lr = self.optim.peak_lr(self.global_batch)
        self.warmup = int(self.total_steps * self.optim.warmup_fraction)

    def _resume(self) -> TrainState:
        """Continue from the newest complete checkpoint: weights, optimizer and position; say
        what a changed run length does to the lr schedule."""
        state, path = self.checkpoints.load_latest(self.device)
        log.info("resumed from %s at step %d", path, state.step)
        saved = Checkpoint(path).config().get("config", {}).get("run")  # None: not saved
        planned = self.total_steps if saved is None else planned_steps(
            saved.get("steps"), saved.get("epochs"), len(self.sampler) // self.items_per_batch,
            self.optim.accum_steps)
        warning = resumed_length_warning(state.step, planned, self.total_steps, self.peak_lr,
                                         self.optim.min_lr, self.optim.warmup_fraction)
        if warning is not None:
            log.warning("%s", warning)
        return state

    def _prepare_output_folder(self, one_checkpoint: int) -> None:
        """Fail on every rank before training if rank 0 cannot write the run's files."""
        problem: OutputFolderError | None = None
        if self.dist.is_main:
            try:
                prepare_output_folder(self.out_dir)
                check_free_space(self.out_dir, one_checkpoint, self.checkpoints.copies_to_fit(
                    self.state.step, self.total_steps, self.run.ckpt_every))
            except OutputFolderError as error:
                problem = error
            if self.resume and problem is None:
                trim_metrics(self.out_dir / METRICS_FILE, self.state.step)
            if problem is None:
                write_environment(self.out_dir / "env.json", self.device, self.dist.world_size)
        if any_across_ranks(problem is not None, self.dist):  # also the barrier before training
            raise problem or OutputFolderError(
                f"rank 0 cannot use the output folder {self.out_dir}")

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """The loader's batches, epoch after epoch, keeping the position in the state."""
        state = self.state
        while True:
            self.sampler.set_epoch(state.epoch, skip=_rank_skip(state.samples_in_epoch, self.dist))
            set_epoch = getattr(self.dataset, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(state.epoch)
            for batch in self.loader:
                state.samples_in_epoch += self.items_per_batch * self.dist.world_size
                yield batch
            state.epoch += 1
            state.samples_in_epoch = 0

    # Run

    def fit(self) -> TrainResult:
        """Step until the last step, logging, probing and checkpointing on their cadences."""
        self.window = Window.resumed(self.state.log_window, self.device)
        self.sinks = RecordSinks(self.out_dir, self.run, main=self.dist.is_main,
                                 resume=self.resume, on_log=self.on_log)
        try:
            with stop_on_sigterm() as stop:
                while self.state.step < self.total_steps:
                    lr = self._step()
                    probed = self._probe()
                    if self._due(self.run.log_every):
                        self._log(lr, probed)
                    if self._due(self.run.ckpt_every):
                        self._save()
                    self._stop_if_asked(stop)
        finally:
            self.sinks.close(failed=sys.exc_info()[0] is not None)
        self._report_bad_videos()
        return TrainResult(state=self.state, out_dir=self.out_dir, history=self.history)

    def _due(self, every: int) -> bool:
        """Whether the step just taken is an ``every``-th one or the last."""
        return self.state.step % every == 0 or self.state.step == self.total_steps

    # Step

    def _step(self) -> float:
        """Take one optimizer step, its values summed into the window; returns its lr."""
        lr = lr_at(self.state.step, self.total_steps, self.peak_lr, self.optim.min_lr,
                   self.warmup)
        set_lr(self.optimizer, lr)
        loss, grad_norm, skipped = self.optimizer_step(self.state.step, self._next_batch,
                                                       self.window.add)
        self.window.add_step(loss, grad_norm, skipped, clips=self.global_batch)
        self.state.step += 1
        return lr

    def _next_batch(self) -> dict[str, Any]:
        """The next micro-batch, its bad videos taken out and counted."""
        batch = next(self.stream)
        # A sample's bad_videos: the bad draws replaced to produce it. Counted on the loader's
        # CPU tensor: no device sync.
        self.pending_bad_draws += int(batch.pop("bad_videos", torch.zeros(1)).sum())
        bad_files = batch.pop("bad_files", None)
        if self.bad_log is not None:
            self.bad_log.add(bad_files)
        return batch

    # Log

    def _probe(self) -> dict[str, float]:
        """The in-run probe's values on rank 0 at its steps; nothing elsewhere."""
        if self.probe_every is None or not self.dist.is_main or not self._due(self.probe_every):
            return {}
        start = time.perf_counter()
        probed = self.probe(self.device)
        self.window.start += time.perf_counter() - start  # not training throughput
        return probed

    def _log(self, lr: float, probed: dict[str, float]) -> None:
        """Write the window's means as one record and start a new window."""
        # One host sync per logging interval, not per step.
        bad = int(self.window.sums.pop("bad"))
        self.state.skipped_steps += bad
        self._flush_bad_videos()
        record = {
            "step": self.state.step,
            "epoch": self.state.epoch,
            "lr": lr,
            **self.window.means(bad, self.dist),
            "skipped_steps": self.state.skipped_steps,
            "bad_video_files": self.state.bad_video_files,
            "bad_video_draws": self.state.bad_video_draws,
            **probed,
            "time": time.time(),
        }
        self.history.append(record)
        with self.checkpoints.stop_every_rank_on_write_failure():
            self.sinks.write(record)
        self.optimizer_step.check_bad_streak(self.state.step, self.run.max_bad_steps)
        self.window = Window()

    def _flush_bad_videos(self) -> None:
        """Count every rank's bad draws into the state and list the bad files (collective)."""
        self.state.bad_video_draws += int(sum_across_ranks(float(self.pending_bad_draws),
                                                           self.dist))
        self.pending_bad_draws = 0
        if self.bad_log is not None:
            drawn = self.state.epoch * len(self.dataset) + self.state.samples_in_epoch
            with self.checkpoints.stop_every_rank_on_write_failure():
                self.bad_log.flush(min(drawn, len(self.dataset)), distributed=self.dist.enabled)
            self.state.bad_video_files = self.bad_log.bad
        warn_short = getattr(self.dataset, "warn_short_clips", None)
        if warn_short is not None and self.dist.is_main:
            warn_short()

    def _report_bad_videos(self) -> None:
        """Say after the run how many bad files there were, how many draws of them were
        replaced, and where they are listed."""
        state = self.state
        if self.dist.is_main and (state.bad_video_files or state.bad_video_draws):
            log.warning("%d bad video file(s) were skipped (data.on_error=skip); %d draw(s) of "
                        "them were replaced by other videos. %s lists each file with its "
                        "reason", state.bad_video_files, state.bad_video_draws,
                        self.out_dir / BAD_VIDEOS_FILE)

    # Checkpoint

    def _save(self) -> None:
        """Checkpoint this step, with the bad-video count and the logging window (collective)."""
        self._flush_bad_videos()
        self.state.log_window = self.window.snapshot(self.dist)
        self.saved_step = self.state.step
        self.checkpoints.save(self.state)

    def _stop_if_asked(self, stop: threading.Event) -> None:
        """After a ``SIGTERM`` on any rank, checkpoint this step and stop every rank."""
        # Every rank stops at the same step, even if SIGTERM reached them at different ones.
        if any_across_ranks(stop.is_set(), self.dist):
            log.warning("SIGTERM: saving a checkpoint at step %d and stopping", self.state.step)
            if self.saved_step != self.state.step:
                self._save()
            self.dist.barrier()
            raise TrainingInterrupted(self.state.step, self.out_dir)


def _rank_skip(samples_in_epoch: int, dist: DistInfo) -> int:
    """This rank's share of the samples the epoch already consumed (over all ranks)."""
    skip, extra = divmod(samples_in_epoch, dist.world_size)
    if extra:
        log.warning("resuming at sample %d of the epoch on %d ranks (not a multiple): %d "
                    "samples of this epoch are seen twice", samples_in_epoch, dist.world_size,
                    extra)
    return skip

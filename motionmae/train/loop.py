"""The one training loop, shared by pretraining and fine-tuning.

A *task* says what a step computes (its loss) and what a checkpoint describes; the loop owns
everything else: device, data order, precision, accumulation, clipping, the optimizer and its
schedule, non-finite steps, metrics, checkpoints and exact resume.

The batches come from one :class:`~motionmae.data.stream.BatchStream` (sampler, loader,
epoch, position in the epoch, bad videos); the run's numbers from one resolved config
(``PretrainConfig.resolve``: the run's length, the peak lr), which the loop saves as
``RUN/config.yaml``.

Exact resume: the data order comes from ``(seed, epoch)`` (``EpochSampler``), each sample's
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

Preemption: ``SIGTERM`` or Ctrl-C (handlers installed in the main thread for the run, then
restored) makes the loop finish the current step, save a checkpoint and raise
:class:`TrainingInterrupted`; all ranks agree on the stop step. A second Ctrl-C quits at
once. ``--resume`` continues from that checkpoint.

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

import functools
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from motionmae.checkpoints.format import Checkpoint
from motionmae.config import FinetuneConfig, PretrainConfig, RunConfig
from motionmae.data.badvideos import FILE_NAME as BAD_VIDEOS_FILE
from motionmae.data.stream import BatchStream
from motionmae.environment import resolve_device
from motionmae.errors import SetupError
from motionmae.schedule import lr_table, resumed_length_warning
from motionmae.train.distributed import DistInfo, any_across_ranks, shard_model, sum_across_ranks
from motionmae.train.optim import build_optimizer
from motionmae.train.preflight import (
    OutputFolderError,
    check_free_space,
    checkpoint_bytes,
)
from motionmae.train.records import (
    METRICS_FILE,
    RecordSinks,
    trim_metrics,
    write_environment,
)
from motionmae.train.runfolder import write_run_config
from motionmae.train.save_resume import (
    Checkpoints,
    StopRequest,
    TrainState,
    check_resumed_model,
    check_resumed_videos,
    stop_on_signals,
)
from motionmae.train.step import OptimizerStep, Window

__all__ = [
    "TrainResult",
    "TrainState",
    "TrainTask",
    "Trainer",
    "TrainingInterrupted",
    "batch_stream",
    "check_resumed_model",
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
    """The run received ``SIGTERM`` or Ctrl-C (``SIGINT``): it saved a checkpoint at ``step``
    and stopped. ``exit_code``: 128 + the signal's number, as a shell reports it."""

    def __init__(self, step: int, out_dir: Path, signum: int = signal.SIGTERM) -> None:
        name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
        super().__init__(f"interrupted by {name}: checkpoint saved at step {step} under "
                         f"{out_dir / 'checkpoints'}; continue with --resume")
        self.step = step
        self.out_dir = out_dir
        self.exit_code = 128 + int(signum)


@dataclass
class TrainResult:
    state: TrainState
    out_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)


def batch_stream(dataset: Any, config: PretrainConfig | FinetuneConfig,
                 dist: DistInfo | None = None) -> BatchStream:
    """The batches of a run of ``config`` over ``dataset`` on this process: whole videos of
    ``data.num_sample`` clips, ``run.batch_size`` clips a batch; bad videos listed in the run
    folder."""
    dist = dist or DistInfo()
    return BatchStream(dataset, config.run.videos_per_batch(config.data.num_sample),
                       seed=config.run.seed, workers=config.data.workers, rank=dist.rank,
                       world_size=dist.world_size, out_dir=Path(config.run.out),
                       main=dist.is_main)


def train(
    task: TrainTask,
    stream: BatchStream,
    config: PretrainConfig | FinetuneConfig,
    *,
    resume: bool = False,
    dist: DistInfo | None = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
    probe: Callable[[torch.device], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``task`` on ``stream``'s batches for ``run.steps`` optimizer steps into
    ``run.out``, writing ``config`` there as ``config.yaml``.

    Args:
        config: the run's resolved config (its ``resolve()``: ``run.steps`` and ``optim.lr``
            set), its ``run`` and ``optim`` sections drive the loop.
        resume: continue from the newest complete checkpoint in ``run.out`` (error if none).
        on_log: called on rank 0 with each logged record and the run's ``planned_steps``
            (the CLI's progress bar).
        probe: ``probe(device) -> {name: value}``, run on rank 0 (the other ranks wait at
            the next step's gradient all-reduce) every ``run.probe_every`` steps and at the
            last step; its values join that step's logged record.
    """
    trainer = Trainer(task, stream, config, resume=resume, dist=dist or DistInfo(),
                      on_log=on_log, probe=probe)
    return trainer.fit()


class Trainer:
    """One run of :func:`train`: the constructor builds it, :meth:`fit` runs it."""

    def __init__(
        self,
        task: TrainTask,
        stream: BatchStream,
        config: PretrainConfig | FinetuneConfig,
        *,
        resume: bool,
        dist: DistInfo,
        on_log: Callable[[dict[str, float]], None] | None,
        probe: Callable[[torch.device], dict[str, float]] | None,
    ) -> None:
        """Build: model, schedule, optimizer, resumed state and position, output folder."""
        run, optim = config.run, config.optim
        if run.steps is None or optim.lr is None:
            raise ValueError("train() takes a resolved config (its resolve() sets run.steps "
                             "and optim.lr)")
        self.task, self.stream, self.config, self.run, self.optim = (
            task, stream, config, run, optim)
        self.out_dir, self.dist, self.resume = Path(run.out), dist, resume
        self.on_log, self.probe = on_log, probe
        self.probe_every = run.probe_every if probe is not None else None
        self.device = resolve_device(run.device)
        self.sharded = dist.enabled and run.parallel == "fsdp"
        one_checkpoint = self._build_model()
        self.total_steps, self.peak_lr = run.steps, optim.lr
        self.global_batch = run.global_batch(optim.accum_steps, dist.world_size)
        self.lrs = lr_table(self.total_steps, self.peak_lr, optim.min_lr,
                            int(self.total_steps * optim.warmup_fraction))
        self.optimizer = build_optimizer(task.parameter_groups(optim.weight_decay), optim,
                                         self.peak_lr)
        self.checkpoints = Checkpoints(self.out_dir / "checkpoints", self.model,
                                       self.optimizer, task.describe, run.keep_last,
                                       run.keep_every, self.sharded, dist)
        if resume:
            self.state = self._resume()
        else:
            self.state = TrainState()
            check_resumed_videos(self.state, stream.dataset, False, self.out_dir)  # records it
        stream.seek(self.state.epoch, self.state.samples_in_epoch)
        self._prepare_output_folder(one_checkpoint)
        self.history: list[dict[str, float]] = []
        self.saved_step = -1
        self.model.train()
        self.optimizer_step = OptimizerStep(task.loss, self.model, self.step_model,
                                            self.optimizer, optim, run, dist, self.sharded,
                                            self.device)

    # Build

    def _build_model(self) -> int:
        """Model on its device, compiled, wrapped for DDP or FSDP; returns a checkpoint's bytes."""
        self.model = self.task.model.to(self.device)
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

    def _resume(self) -> TrainState:
        """Continue from the newest complete checkpoint: weights, optimizer and position, on
        the run's list (:func:`check_resumed_videos`); say what a changed run length does to
        the lr schedule."""
        state, path = self.checkpoints.load_latest(self.device)
        # Before saying it resumed: another list than the run's is refused.
        check_resumed_videos(state, self.stream.dataset, self.run.resume_with_other_videos,
                             self.out_dir)
        log.info("resumed from %s at step %d", path, state.step)
        saved = Checkpoint(path).config().get("config", {}).get("run")  # None: not saved
        planned = self.total_steps if saved is None else RunConfig(
            steps=saved.get("steps"), epochs=saved.get("epochs")).planned_steps(
            self.stream.batches_per_epoch, self.optim.accum_steps)
        warning = resumed_length_warning(state.step, planned, self.total_steps, self.peak_lr,
                                         self.optim.min_lr, self.optim.warmup_fraction)
        if warning is not None:
            log.warning("%s", warning)
        return state

    def _prepare_output_folder(self, one_checkpoint: int) -> None:
        """Fail on every rank before training if rank 0 cannot write the run's files; write
        ``config.yaml`` and ``env.json``."""
        # Every failure of rank 0 here (a full disk at config.yaml, metrics.jsonl or env.json
        # too) is caught, so that the other ranks hear of it instead of waiting for rank 0.
        problem: SetupError | None = None
        if self.dist.is_main:
            try:
                write_run_config(self.out_dir, self.config)
                check_free_space(self.out_dir, one_checkpoint, self.checkpoints.copies_to_fit(
                    self.state.step, self.total_steps, self.run.ckpt_every))
                if self.resume:
                    trim_metrics(self.out_dir / METRICS_FILE, self.state.step)
                write_environment(self.out_dir / "env.json", self.device, self.dist.world_size)
            except SetupError as error:
                problem = error
        if any_across_ranks(problem is not None, self.dist):  # also the barrier before training
            raise problem or OutputFolderError(
                f"rank 0 cannot use the output folder {self.out_dir}")

    # Run

    def _with_length(self, on_log: Callable[[dict[str, Any]], None] | None
                     ) -> Callable[[dict[str, Any]], None] | None:
        """``on_log`` given each record with ``planned_steps`` added (the progress bar's
        total, which an epoch-counted run knows only once it has read its list)."""
        if on_log is None:
            return None
        total = self.total_steps
        return lambda record: on_log({**record, "planned_steps": total})

    def fit(self) -> TrainResult:
        """Step until the last step, logging, probing and checkpointing on their cadences."""
        self.window = Window.resumed(self.state.log_window, self.device)
        self.sinks = RecordSinks(self.out_dir, self.run, main=self.dist.is_main,
                                 resume=self.resume, on_log=self._with_length(self.on_log))
        try:
            with stop_on_signals() as stop:
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
        self._record_position()
        self._report_bad_videos()
        return TrainResult(state=self.state, out_dir=self.out_dir, history=self.history)

    def _due(self, every: int) -> bool:
        """Whether the step just taken is an ``every``-th one or the last."""
        return self.state.step % every == 0 or self.state.step == self.total_steps

    # Step

    def _step(self) -> float:
        """Take one optimizer step, its values summed into the window; returns its lr."""
        lr = float(self.lrs[self.state.step])
        for group in self.optimizer.param_groups:  # its share: layer decay, the sampler's lr
            group["lr"] = lr * group.get("lr_scale", 1.0)
        loss, grad_norm, skipped = self.optimizer_step(
            self.state.step, functools.partial(next, self.stream), self.window.add)
        self.window.add_step(loss, grad_norm, skipped, clips=self.global_batch)
        self.state.step += 1
        return lr

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
            "epoch": self.stream.epoch,
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
        with self.checkpoints.stop_every_rank_on_write_failure():
            draws, files = self.stream.flush_bad_videos(
                functools.partial(sum_across_ranks, info=self.dist), self.dist.enabled)
        self.state.bad_video_draws += draws
        if files is not None:
            self.state.bad_video_files = files

    def _report_bad_videos(self) -> None:
        """Say after the run how many bad files there were, how many draws of them were
        replaced, and where they are listed."""
        state = self.state
        if self.dist.is_main and (state.bad_video_files or state.bad_video_draws):
            # Draws count over the whole run, files over the current list (a run resumed on
            # a cleaned list has none left): each number says which it is.
            log.warning("%d draw(s) of bad video files were replaced by other videos "
                        "(data.on_error=skip); %d bad file(s) in the current list. %s lists "
                        "every bad file met with its reason", state.bad_video_draws,
                        state.bad_video_files, self.out_dir / BAD_VIDEOS_FILE)

    # Checkpoint

    def _save(self) -> None:
        """Checkpoint this step, with the bad-video count and the logging window (collective)."""
        self._flush_bad_videos()
        self._record_position()
        self.state.log_window = self.window.snapshot(self.dist)
        self.saved_step = self.state.step
        self.checkpoints.save(self.state)

    def _record_position(self) -> None:
        """The stream's position into the state (what a checkpoint saves)."""
        self.state.epoch = self.stream.epoch
        self.state.samples_in_epoch = self.stream.samples_in_epoch

    def _stop_if_asked(self, stop: StopRequest) -> None:
        """After ``SIGTERM`` or Ctrl-C on any rank, checkpoint this step and stop every rank."""
        # Every rank stops at the same step, even if the signal reached them at different ones.
        if any_across_ranks(stop.is_set(), self.dist):
            received = stop.signal or signal.SIGTERM  # a rank the signal did not reach
            log.warning("%s: saving a checkpoint at step %d and stopping",
                        signal.Signals(received).name, self.state.step)
            if self.saved_step != self.state.step:
                self._save()
            self.dist.barrier()
            raise TrainingInterrupted(self.state.step, self.out_dir, received)


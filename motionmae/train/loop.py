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

Storage: before the first step the output folder must be writable and hold two checkpoints
(:mod:`motionmae.train.preflight`); a checkpoint that cannot be written (disk full) raises
:class:`~motionmae.checkpoints.format.CheckpointError` on every rank, leaving ``latest`` on the
previous complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from torch.utils.data import DataLoader, Dataset

from motionmae.checkpoints.format import (
    LATEST,
    CheckpointError,
    latest_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from motionmae.config import SAVED_MODEL_DEFAULTS, OptimConfig, RunConfig, saved_model_dict
from motionmae.data.badvideos import FILE_NAME as BAD_VIDEOS_FILE
from motionmae.data.badvideos import BadVideoLog
from motionmae.environment import machine_environment
from motionmae.errors import NonFiniteLossError, UsageError
from motionmae.train.distributed import (
    DistInfo,
    any_across_ranks,
    average_across_ranks,
    full_state,
    load_full_state,
    shard_model,
    sum_across_ranks,
)
from motionmae.train.optim import build_optimizer, lr_at, set_lr
from motionmae.train.preflight import (
    OutputFolderError,
    check_free_space,
    checkpoint_bytes,
    prepare_output_folder,
)
from motionmae.train.sampler import EpochSampler
from motionmae.train.tensorboard import TensorBoardWriter
from motionmae.train.wandb_logger import WandbLogger

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
class TrainState:
    """Where a run is: saved in every checkpoint. ``samples_in_epoch`` counts the samples of
    the epoch's permutation consumed by all ranks together (so any world size can resume)."""

    step: int = 0
    epoch: int = 0
    samples_in_epoch: int = 0
    skipped_steps: int = 0
    bad_videos: int = 0


@dataclass
class TrainResult:
    state: TrainState
    out_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)


def check_resumed_model(saved: dict, current: dict, path: Path) -> None:
    """Refuse to resume a run whose model settings of the same shapes mean other weights
    (:data:`~motionmae.config.SAVED_MODEL_DEFAULTS`: e.g. a run from before
    ``model.difference_gain`` existed, resumed under today's default)."""
    if "model" not in saved or "model" not in current:
        return
    before = saved_model_dict(saved["model"])
    changed = [key for key in SAVED_MODEL_DEFAULTS if before.get(key) != current["model"].get(key)]
    if changed:
        settings = " ".join(f"--set model.{key}={before[key]}" for key in changed)
        raise UsageError(f"--resume: {path} was trained with "
                         + ", ".join(f"model.{k}={before[k]}" for k in changed)
                         + ", this config says "
                         + ", ".join(f"{current['model'].get(k)}" for k in changed)
                         + f": resume with {settings}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _step_seed(seed: int, step: int, micro: int = 0, rank: int = 0) -> int:
    # Rank 0 keeps the single-process seeds; other ranks are offset far apart.
    return (seed * 1_000_003 + step * 101 + micro + rank * 1_000_000_007) % (2**63 - 1)


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[threading.Event]:
    """An event set by ``SIGTERM`` while the block runs (main thread only; the previous handler
    is restored afterwards). Elsewhere the event is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def _trim_metrics(path: Path, step: int) -> None:
    """Drop records after ``step`` (and a torn last line) left by a run that died after
    logging but before checkpointing, so a resumed run's log has each step once."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= step:
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept))


def _write_environment(path: Path, device: torch.device, world_size: int) -> None:
    """Record the machine this run trains on (rewritten on resume: the latest machine)."""
    values = machine_environment()
    values["device"] = (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else str(device))
    values["world size"] = world_size
    values["torch threads"] = torch.get_num_threads()
    path.write_text(json.dumps(values, indent=1))


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def _plan_steps(run: RunConfig, batches_per_epoch: int, accum: int) -> int:
    if run.steps is not None:
        return run.steps
    if run.epochs is not None:
        return max(1, run.epochs * batches_per_epoch // accum)
    raise ValueError("run.steps or run.epochs must be set")


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
    dist = dist or DistInfo()
    out_dir = Path(out_dir)
    ckpt_root = out_dir / "checkpoints"
    device = resolve_device(run.device)
    model = task.model.to(device)
    sharded = dist.enabled and run.parallel == "fsdp"
    probe_every = run.probe_every if probe is not None else None
    if probe_every is not None and sharded:
        raise ValueError("run.probe_every: in-run probes do not run under run.parallel=fsdp "
                         "(rank 0 alone cannot run a sharded encoder); use ddp, or probe the "
                         "checkpoints with motionmae probe")
    # Sized before sharding: a checkpoint holds the full tensors.
    one_checkpoint = checkpoint_bytes(model.state_dict().values(),
                                      (p for p in model.parameters() if p.requires_grad))
    if run.compile:
        model.compile()  # in place: state_dict keys stay as they are
    step_model: nn.Module = model
    if sharded:
        step_model = shard_model(model)  # in place: the optimizer below gets the shards
    elif dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if run.batch_size % clips_per_item:
        raise ValueError(
            f"run.batch_size {run.batch_size} is not a multiple of data.num_sample "
            f"{clips_per_item}"
        )
    items_per_batch = run.batch_size // clips_per_item
    sampler = EpochSampler(len(dataset), seed=run.seed, shuffle=True, rank=dist.rank,
                           world_size=dist.world_size)
    batches_per_epoch = (len(dataset) // dist.world_size) // items_per_batch
    if batches_per_epoch < 1:
        raise ValueError(
            f"the dataset has {len(dataset)} videos: too few for a batch of {items_per_batch} "
            f"per rank on {dist.world_size} rank(s)"
        )
    total_steps = _plan_steps(run, batches_per_epoch, optim.accum_steps)
    global_batch = run.batch_size * optim.accum_steps * dist.world_size
    peak_lr = optim.peak_lr(global_batch)
    warmup = int(total_steps * optim.warmup_fraction)
    optimizer = build_optimizer(task.parameter_groups(optim.weight_decay), optim, peak_lr)
    fused = bool(optimizer.defaults.get("fused"))
    state = TrainState()

    if resume:
        checkpoint = latest_checkpoint(ckpt_root)
        if checkpoint is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint under {ckpt_root}")
        check_resumed_model(checkpoint.config(), task.describe(), checkpoint.path)
        saved = checkpoint.state()
        load_full_state(model, optimizer, checkpoint.weights("cpu" if sharded else device),
                        saved["optimizer"], sharded)
        state = TrainState(**saved["train_state"])
        log.info("resumed from %s at step %d", checkpoint.path, state.step)
    metrics_path = out_dir / "metrics.jsonl"
    problem: OutputFolderError | None = None
    if dist.is_main:
        try:
            prepare_output_folder(out_dir)
            saves = -(-total_steps // run.ckpt_every)
            # A new checkpoint is complete before the previous one is pruned.
            check_free_space(out_dir, one_checkpoint, copies=1 if resume else min(2, saves))
        except OutputFolderError as error:
            problem = error
        if resume and problem is None:
            _trim_metrics(metrics_path, state.step)
        if problem is None:
            _write_environment(out_dir / "env.json", device, dist.world_size)
    if any_across_ranks(problem is not None, dist):  # also the barrier before training
        raise problem or OutputFolderError(f"rank 0 cannot use the output folder {out_dir}")

    history: list[dict[str, float]] = []

    pending_bad_videos = 0  # this rank's, since the last log / checkpoint
    # RUN/bad_videos.tsv and the data.max_bad_fraction stop rule (None: bad videos raise).
    bad_log = BadVideoLog.for_run(out_dir, dataset, write=dist.is_main)

    def flush_bad_videos() -> None:
        # Collective: every rank calls it at the same steps.
        nonlocal pending_bad_videos
        state.bad_videos += int(sum_across_ranks(float(pending_bad_videos), dist))
        pending_bad_videos = 0
        if bad_log is not None:
            drawn = state.epoch * len(dataset) + state.samples_in_epoch
            bad_log.flush(min(drawn, len(dataset)), distributed=dist.enabled)
        warn_short = getattr(dataset, "warn_short_clips", None)
        if warn_short is not None and dist.is_main:
            warn_short()

    saved_step = -1

    def save() -> None:
        nonlocal saved_step
        flush_bad_videos()
        saved_step = state.step
        # A collective under FSDP: every rank gathers, rank 0 receives the full tensors.
        weights, optimizer_state = (full_state(model, optimizer, sharded)
                                    if sharded or dist.is_main else ({}, {}))
        failure: CheckpointError | None = None
        if dist.is_main:
            try:
                save_checkpoint(
                    ckpt_root,
                    state.step,
                    weights,
                    task.describe(),
                    {"optimizer": optimizer_state, "train_state": vars(state).copy()},
                )
                prune_checkpoints(ckpt_root, keep_last=1, keep_every=run.keep_every)
            except OSError as error:  # e.g. disk full: save_checkpoint removed its temp files
                failure = _write_failure(ckpt_root, state.step, error)
        if any_across_ranks(failure is not None, dist):
            raise failure or CheckpointError(
                f"rank 0 could not write the checkpoint of step {state.step} under {ckpt_root}")

    # One loader for the whole run, so its workers persist across epochs; the epoch reaches
    # them through the sampler (order) and the dataset's shared epoch counter (augmentation).
    loader = build_loader(dataset, batch_size=items_per_batch, workers=workers, shuffle=False,
                          seed=run.seed, sampler=sampler)

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        while True:
            sampler.set_epoch(state.epoch, skip=_rank_skip(state.samples_in_epoch, dist))
            set_epoch = getattr(dataset, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(state.epoch)
            for batch in loader:
                state.samples_in_epoch += items_per_batch * dist.world_size
                yield batch
            state.epoch += 1
            state.samples_in_epoch = 0

    model.train()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if run.precision == "bf16"
        else contextlib.nullcontext()
    )
    stream = batches()
    sums: dict[str, torch.Tensor] = {}
    # Trailing run of skipped steps, kept on the device (no host sync per step).
    consecutive_bad = torch.zeros((), device=device)
    step_indices: list[torch.Tensor] = []
    window_start, window_clips, window_steps = time.perf_counter(), 0, 0
    # W&B first: a missing package fails before TensorBoard starts an event file.
    remote = WandbLogger(out_dir, run, resume=resume) if run.wandb and dist.is_main else None
    scalars = (TensorBoardWriter(out_dir / "tensorboard")
               if run.tensorboard and dist.is_main else None)
    log_file = metrics_path.open("a") if dist.is_main else None
    signals = contextlib.ExitStack()
    stop = signals.enter_context(_stop_on_sigterm())
    try:
        while state.step < total_steps:
            lr = lr_at(state.step, total_steps, peak_lr, optim.min_lr, warmup)
            set_lr(optimizer, lr)
            torch.manual_seed(_step_seed(run.seed, state.step, rank=dist.rank))
            loss_total = torch.zeros((), device=device)
            step_indices.clear()
            for micro in range(optim.accum_steps):
                last_micro = micro == optim.accum_steps - 1
                batch = next(stream)
                # Counted on the loader's CPU tensor: no device sync.
                pending_bad_videos += int(batch.pop("bad_videos", torch.zeros(1)).sum())
                bad_files = batch.pop("bad_files", None)
                if bad_log is not None:
                    bad_log.add(bad_files)
                if isinstance(batch.get("index"), torch.Tensor):
                    step_indices.append(batch["index"])
                batch = _to_device(batch, device)
                generator = torch.Generator().manual_seed(
                    _step_seed(run.seed, state.step, micro, dist.rank))
                # Gradients are all-reduced once per optimizer step, on the last micro-batch.
                sync = _grad_sync(step_model, dist.enabled and not sharded, last_micro)
                if sharded:
                    step_model.set_requires_gradient_sync(last_micro)
                with sync:
                    with autocast:
                        loss, parts = task.loss(step_model, batch, generator)
                    (loss / optim.accum_steps).backward()
                loss_total = loss_total + loss.detach() / optim.accum_steps
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0) + value.detach().float() / optim.accum_steps
            with_grad = [p for p in model.parameters() if p.grad is not None]
            grads = [p.grad for p in with_grad]
            grad_norm = torch.nn.utils.get_total_norm(grads)
            if isinstance(grad_norm, DTensor):  # FSDP: already reduced over the shards
                grad_norm = grad_norm.full_tensor()
            # From the all-reduced gradients, so every rank takes the same decision (a
            # non-finite loss anywhere makes the gradient non-finite everywhere).
            found_inf = (~torch.isfinite(grad_norm)).float()
            if optim.clip_grad is not None:
                torch.nn.utils.clip_grads_with_norm_(
                    with_grad,
                    optim.clip_grad,
                    torch.nan_to_num(grad_norm, nan=0.0, posinf=0.0),
                )
            if fused:
                # The fused kernel skips the update (and its step count) when found_inf is 1:
                # no host sync needed to skip a bad step.
                optimizer.found_inf = found_inf
                optimizer.step()
            elif not bool(found_inf):
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sums["loss"] = sums.get("loss", 0) + torch.nan_to_num(loss_total, nan=0.0)
            sums["grad_norm"] = sums.get("grad_norm", 0) + torch.nan_to_num(grad_norm, nan=0.0)
            sums["bad"] = sums.get("bad", 0) + found_inf
            consecutive_bad = (consecutive_bad + 1) * found_inf
            state.step += 1
            window_clips += run.batch_size * optim.accum_steps * dist.world_size
            window_steps += 1
            probed: dict[str, float] = {}
            if (probe_every is not None and dist.is_main
                    and (state.step % probe_every == 0 or state.step == total_steps)):
                probe_start = time.perf_counter()
                probed = probe(device)
                window_start += time.perf_counter() - probe_start  # not training throughput

            # One host sync per logging interval, not per step.
            if state.step % run.log_every == 0 or state.step == total_steps:
                bad = int(sums.pop("bad"))
                state.skipped_steps += bad
                flush_bad_videos()
                good = max(1, window_steps - bad)
                elapsed = time.perf_counter() - window_start
                means = average_across_ranks({k: float(v) / good for k, v in sums.items()}, dist)
                record = {
                    "step": state.step,
                    "epoch": state.epoch,
                    "lr": lr,
                    **means,
                    "clips_per_s": window_clips / max(elapsed, 1e-9),
                    "skipped_steps": state.skipped_steps,
                    "bad_videos": state.bad_videos,
                    **probed,
                    "time": time.time(),
                }
                history.append(record)
                if log_file is not None:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    if on_log is not None:
                        on_log(record)
                if scalars is not None:
                    scalars.write(record)
                if remote is not None:
                    remote.write(record)
                streak = int(consecutive_bad)
                if streak >= run.max_bad_steps:
                    indices = torch.cat(step_indices).tolist() if step_indices else []
                    raise NonFiniteLossError(
                        f"{streak} consecutive steps (steps {state.step - streak + 1} to "
                        f"{state.step}) had a non-finite loss or gradient "
                        f"(run.max_bad_steps={run.max_bad_steps}); the batch of step "
                        f"{state.step} held videos {indices} (dataset indices, rank "
                        f"{dist.rank})"
                    )
                sums = {}
                window_start, window_clips, window_steps = time.perf_counter(), 0, 0
            if state.step % run.ckpt_every == 0 or state.step == total_steps:
                save()
            # Every rank stops at the same step, even if SIGTERM reached them at different ones.
            if any_across_ranks(stop.is_set(), dist):
                log.warning("SIGTERM: saving a checkpoint at step %d and stopping", state.step)
                if saved_step != state.step:
                    save()
                dist.barrier()
                raise TrainingInterrupted(state.step, out_dir)
    finally:
        signals.close()
        if log_file is not None:
            log_file.close()
        if scalars is not None:
            scalars.close()
        if remote is not None:  # an exception on its way out marks the W&B run failed
            remote.close(failed=sys.exc_info()[0] is not None)
    if dist.is_main and state.bad_videos:
        log.warning("%d bad video(s) were skipped and replaced during the run "
                    "(data.on_error=skip): bad_videos in %s counts the replacements, %s lists "
                    "each video with its reason", state.bad_videos, metrics_path,
                    out_dir / BAD_VIDEOS_FILE)
    return TrainResult(state=state, out_dir=out_dir, history=history)


def _grad_sync(step_model: nn.Module, ddp: bool,
               last_micro: bool) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` on all but the last micro-batch of a step; nothing otherwise."""
    return step_model.no_sync() if ddp and not last_micro else contextlib.nullcontext()


def _rank_skip(samples_in_epoch: int, dist: DistInfo) -> int:
    """This rank's share of the samples the epoch already consumed (over all ranks)."""
    skip, extra = divmod(samples_in_epoch, dist.world_size)
    if extra:
        log.warning("resuming at sample %d of the epoch on %d ranks (not a multiple): %d "
                    "samples of this epoch are seen twice", samples_in_epoch, dist.world_size,
                    extra)
    return skip


def _write_failure(root: Path, step: int, error: OSError) -> CheckpointError:
    pointer = root / LATEST
    previous = pointer.read_text().strip() if pointer.is_file() else None
    kept = f"'latest' still names {previous}" if previous else "no earlier checkpoint exists"
    return CheckpointError(
        f"could not write the checkpoint of step {step} under {root}: {error}. Its temporary "
        f"files were removed and {kept}; free space (or fix the folder) and continue with "
        f"--resume")

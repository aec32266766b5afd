"""A training run's save and resume: the position a checkpoint saves (:class:`TrainState`),
the model and optimizer written from every rank and loaded back from the newest complete
checkpoint, and ``SIGTERM`` or Ctrl-C as the request to save and stop. The files themselves
(write, verify, find the newest, prune, clear what killed writes left) are
:mod:`motionmae.checkpoints.format`'s.

Rank 0 writes the full weights and optimizer state (gathered from the shards under FSDP), so
a run resumes on any world size. The newest ``run.keep_last`` checkpoints are kept (two by
default: a damaged newest one leaves the one before to resume from). A file of the run that
rank 0 cannot write (disk full: a checkpoint, ``metrics.jsonl``, ``bad_videos.tsv``) stops
every rank with one :class:`~motionmae.fileio.StorageError` saying which checkpoint
``--resume`` continues from."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionmae.checkpoints.format import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    read_latest,
    recover_latest,
    save_checkpoint,
)
from motionmae.data.entries import VideoList
from motionmae.errors import UsageError
from motionmae.fileio import StorageError
from motionmae.models.config import SAVED_MODEL_DEFAULTS, saved_model_dict
from motionmae.train.distributed import DistInfo, any_across_ranks, full_state, load_full_state

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where a run is: saved in every checkpoint. ``samples_in_epoch`` counts the samples of
    the epoch's permutation consumed by all ranks together (so any world size can resume).

    Bad videos (``data.on_error: skip``) are counted two ways: ``bad_video_files``, the
    distinct files of the list found bad (``RUN/bad_videos.tsv``), and ``bad_video_draws``,
    the times a bad file was drawn and replaced by another video (every epoch draws it again).
    """

    step: int = 0
    epoch: int = 0
    samples_in_epoch: int = 0
    skipped_steps: int = 0
    bad_video_files: int = 0
    bad_video_draws: int = 0
    # The logging window at the checkpoint (steps since the last record, their sums): a
    # resumed run's next record averages the same steps as an uninterrupted run's.
    log_window: dict[str, Any] = field(default_factory=dict)
    # The training list (VideoList.fingerprint) and its length; empty: not known.
    data_fingerprint: str = ""
    data_videos: int = 0

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> TrainState:
        """The state a checkpoint saved; checkpoints from before the two bad-video counts
        saved the draws as ``bad_videos``."""
        saved = dict(saved)
        if "bad_videos" in saved:
            saved.setdefault("bad_video_draws", saved.pop("bad_videos"))
        return cls(**saved)


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


def check_resumed_videos(state: TrainState, dataset: object, allow_other: bool,
                         path: Path) -> None:
    """Refuse to resume on other videos than the run trained on (a run silently continued on
    another dataset), unless ``allow_other`` (``run.resume_with_other_videos``): then warn and
    start the new list's epoch from its beginning. Then record the current list in ``state``.
    Datasets without a video list, and checkpoints from before the list was recorded, are
    not checked."""
    videos = getattr(dataset, "videos", None)
    if not isinstance(videos, VideoList):
        return
    current = videos.fingerprint()
    if state.data_fingerprint and state.data_fingerprint != current:
        said = (f"{path} was trained on a list of {state.data_videos} videos (fingerprint "
                f"{state.data_fingerprint}), this one has {len(videos)} (fingerprint "
                f"{current}; videos are compared by folder and file name, in list order)")
        if not allow_other:
            raise UsageError(f"--resume: {said}: resume with the run's list (its "
                             "config.yaml, data.train), or continue on this one with --set "
                             "run.resume_with_other_videos=true")
        log.warning("resuming on other videos: %s; the data order starts a new epoch", said)
        state.epoch, state.samples_in_epoch = state.epoch + 1, 0
    state.data_fingerprint, state.data_videos = current, len(videos)


@dataclass
class Checkpoints:
    """The checkpoints of one run under ``root``: the newest ``keep_last`` and every
    ``keep_every``-th are kept."""

    root: Path
    model: nn.Module
    optimizer: torch.optim.Optimizer
    describe: Callable[[], dict[str, Any]]  # the task's description: config.json
    keep_last: int
    keep_every: int | None
    sharded: bool
    dist: DistInfo

    def load_latest(self, device: torch.device) -> tuple[TrainState, Path]:
        """Load the newest complete checkpoint into the model and optimizer; returns the state
        it saved and its path. Rank 0 repairs the folder for it first
        (:func:`~motionmae.checkpoints.format.recover_latest`)."""
        checkpoint = (recover_latest(self.root) if self.dist.is_main
                      else latest_checkpoint(self.root))
        if checkpoint is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint under {self.root}")
        check_resumed_model(checkpoint.config(), self.describe(), checkpoint.path)
        saved = checkpoint.state()
        load_full_state(self.model, self.optimizer,
                        checkpoint.weights("cpu" if self.sharded else device),
                        saved["optimizer"], self.sharded)
        return TrainState.from_saved(saved["train_state"]), checkpoint.path

    def copies_to_fit(self, step: int, total_steps: int, every: int) -> int:
        """How many more checkpoints the disk must hold from ``step`` on: at the peak, the
        ``keep_last`` kept ones and the one being written (complete before the oldest is
        pruned), less the ones already there; at least one."""
        saves = -(-total_steps // every) - step // every
        on_disk = len(list_checkpoints(self.root))
        return max(1, min(self.keep_last + 1, on_disk + saves) - on_disk)

    def save(self, state: TrainState) -> None:
        """Write the checkpoint of ``state.step`` (a collective: every rank calls it)."""
        # A collective under FSDP: every rank gathers, rank 0 receives the full tensors.
        weights, optimizer_state = (full_state(self.model, self.optimizer, self.sharded)
                                    if self.sharded or self.dist.is_main else ({}, {}))
        with self.stop_every_rank_on_write_failure():
            if self.dist.is_main:
                try:
                    save_checkpoint(
                        self.root,
                        state.step,
                        weights,
                        self.describe(),
                        {"optimizer": optimizer_state, "train_state": vars(state).copy()},
                    )
                except (OSError, CheckpointError) as error:  # e.g. disk full
                    raise StorageError(
                        f"could not write the checkpoint of step {state.step} under "
                        f"{self.root}: {getattr(error, 'strerror', None) or error}. Its "
                        f"files were removed") from error
                prune_checkpoints(self.root, self.keep_last, self.keep_every)

    @contextlib.contextmanager
    def stop_every_rank_on_write_failure(self) -> Iterator[None]:
        """Around writes of rank 0 that every rank reaches: a :class:`StorageError` in the
        block is raised on every rank (a collective after the block), saying which checkpoint
        ``--resume`` continues from."""
        failure: StorageError | None = None
        try:
            yield
        except StorageError as error:
            failure = StorageError(f"{error}. {self._what_is_left()}")
            failure.__cause__ = error
        if any_across_ranks(failure is not None, self.dist):
            raise failure or StorageError(
                f"rank 0 could not write its files under {self.root.parent}")

    def _what_is_left(self) -> str:
        previous = read_latest(self.root)
        kept = f"'latest' still names {previous}" if previous else "no checkpoint exists yet"
        return f"{kept}; free space (or fix the folder) and continue with --resume"


class StopRequest:
    """Which stop signal the run received, if any (:func:`stop_on_signals`)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def is_set(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """A :class:`StopRequest` set by ``SIGTERM`` or ``SIGINT`` (Ctrl-C) while the block runs
    (main thread only; the previous handlers are restored afterwards). Elsewhere it is never
    set.

    A second Ctrl-C puts the previous ``SIGINT`` handler back before it is handled, so it
    quits at once (``KeyboardInterrupt``) instead of waiting for the step and the save."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    # A process started with Ctrl-C ignored (a shell's background job) keeps ignoring it.
    wanted = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT)
                                  is not signal.SIG_IGN else [])
    previous = {number: signal.getsignal(number) for number in wanted}

    def handler(signum, frame) -> None:
        if signum == signal.SIGINT and request.signal == signal.SIGINT:
            signal.signal(signal.SIGINT, previous[signal.SIGINT])
            signal.raise_signal(signal.SIGINT)
            return
        request.signal = request.signal or signum

    for number in previous:
        signal.signal(number, handler)
    try:
        yield request
    finally:
        for number, old in previous.items():
            signal.signal(number, old)

"""The batches a training run consumes, epoch after epoch: :class:`BatchStream`.

One object owns what the data side of a run keeps track of: the order (:class:`EpochSampler`
from ``(seed, epoch)``), the loader (its workers persist across epochs; the epoch reaches them
through the sampler and the dataset's shared epoch counter), the position in the epoch
(counted over all ranks, saved by a checkpoint: a resumed run skips exactly the samples
already consumed) and the bad videos met on the way (:class:`BadVideoLog`: draws replaced,
files listed in ``RUN/bad_videos.tsv``, the stop rule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from motionmae.data.badvideos import BadVideoLog
from motionmae.data.loader import (
    EpochSampler,
    build_loader,
    set_epoch,
    single_threaded_opencv,
    stop_workers,
)

logger = logging.getLogger(__name__)


class BatchStream:
    """The training batches of one rank: ``next(stream)`` is the next batch, its bad videos
    taken out and counted.

    Args:
        dataset: the training dataset (a ``VideoDataset``; any map-style dataset works).
        batch_items: dataset items per batch (an item holds ``data.num_sample`` clips).
        seed: the data order's seed (``run.seed``).
        workers: loader worker processes (``data.workers``).
        rank, world_size: this process's share of each epoch.
        out_dir: the run folder, for ``bad_videos.tsv`` (``None``: bad videos are not
            logged, as for a dataset that raises on them).
        main: whether this process writes the run's files and warnings (rank 0).
    """

    def __init__(self, dataset: Dataset, batch_items: int, *, seed: int, workers: int = 0,
                 rank: int = 0, world_size: int = 1, out_dir: Path | None = None,
                 main: bool = True) -> None:
        self.dataset = dataset
        self.batch_items = batch_items
        self.world_size = world_size
        self.main = main
        self.sampler = EpochSampler(len(dataset), seed=seed, rank=rank, world_size=world_size)
        self.loader = build_loader(dataset, batch_size=batch_items, workers=workers,
                                   shuffle=False, seed=seed, sampler=self.sampler)
        self.bad_log = (BadVideoLog.for_run(out_dir, dataset, write=main)
                        if out_dir is not None else None)
        self.epoch = 0
        self.samples_in_epoch = 0  # over all ranks
        self.bad_draws = 0  # this rank's replaced draws since the last flush
        self._batches: Iterator[dict[str, Any]] | None = None

    @property
    def batches_per_epoch(self) -> int:
        """Full batches of this rank in one epoch."""
        return (self.sampler.num_samples // self.world_size) // self.batch_items

    def seek(self, epoch: int, samples_in_epoch: int) -> None:
        """Continue at sample ``samples_in_epoch`` (over all ranks) of epoch ``epoch``."""
        self.epoch, self.samples_in_epoch = epoch, samples_in_epoch
        self._batches = None

    def __iter__(self) -> BatchStream:
        return self

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the loader's workers (they persist across epochs); a later ``next`` starts
        them again at the same position."""
        if self._batches is not None:
            self._batches.close()
            self._batches = None
        stop_workers(self.loader)

    def __next__(self) -> dict[str, Any]:
        if self._batches is None:
            self._batches = self._epochs()
        batch = next(self._batches)
        # A sample's bad_videos: the bad draws replaced to produce it. Counted on the loader's
        # CPU tensor: no device sync.
        bad = int(batch.pop("bad_videos", torch.zeros(1)).sum())
        bad_files = batch.pop("bad_files", None)
        if bad:
            self.bad_draws += bad
            if self.bad_log is not None:
                self.bad_log.add(bad_files)
        return batch

    def _epochs(self) -> Iterator[dict[str, Any]]:
        """The loader's batches, epoch after epoch, keeping the position."""
        while True:
            set_epoch(self.loader, self.epoch, skip=self._rank_skip())
            with single_threaded_opencv():  # the first epoch's iter() starts the workers
                batches = iter(self.loader)
            for batch in batches:
                self.samples_in_epoch += self.batch_items * self.world_size
                yield batch
            self.epoch += 1
            self.samples_in_epoch = 0

    def _rank_skip(self) -> int:
        """This rank's share of the samples the epoch already consumed (over all ranks)."""
        skip, extra = divmod(self.samples_in_epoch, self.world_size)
        if extra:
            logger.warning("resuming at sample %d of the epoch on %d ranks (not a multiple): "
                           "%d samples of this epoch are seen twice", self.samples_in_epoch,
                           self.world_size, extra)
        return skip

    def flush_bad_videos(self, sum_over_ranks: Callable[[float], float],
                         distributed: bool = False) -> tuple[int, int | None]:
        """Every rank's replaced draws since the last flush and the distinct bad files so far
        (``None`` when they are not logged); lists the new files and applies the stop rule
        (a collective when ``distributed``).

        Raises:
            DataError: too many bad videos (:class:`BadVideoLog`).
            StorageError: ``bad_videos.tsv`` cannot be appended to.
        """
        draws = int(sum_over_ranks(float(self.bad_draws)))
        self.bad_draws = 0
        files = None
        if self.bad_log is not None:
            drawn = self.epoch * len(self.dataset) + self.samples_in_epoch
            self.bad_log.flush(min(drawn, len(self.dataset)), distributed=distributed)
            files = self.bad_log.bad
        warn_short = getattr(self.dataset, "warn_short_clips", None)
        if warn_short is not None and self.main:
            warn_short()
        return draws, files

"""DataLoader construction: worker processes, the one epoch sampler, epoch propagation.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone
(:class:`EpochSampler`), so a resumed run (any number of loader workers) sees exactly the
samples an uninterrupted run would have seen: it only skips the ones already consumed. Across
``world_size`` ranks each rank takes every ``world_size``-th index of the same permutation, so
each sample is seen once per epoch. Call :func:`set_epoch` on the loader before iterating
each epoch: it reaches the sampler and the dataset (whose epoch lives in shared memory,
visible to persistent workers).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import weakref
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from motionmae.data.dataset import collate_samples

logger = logging.getLogger(__name__)


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one rank, optionally starting part-way through.

    The epoch is cut to a multiple of ``world_size`` (dropping the tail of the permutation) so
    every rank yields the same count.
    """

    def __init__(
        self,
        num_samples: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_samples < world_size:
            raise ValueError(f"{num_samples} samples cannot be split across {world_size} ranks")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select epoch ``epoch`` and skip its first ``skip`` indices of this rank."""
        self.epoch = int(epoch)
        self.skip = skip

    def __len__(self) -> int:
        return self.num_samples // self.world_size - self.skip

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        per_rank = self.num_samples // self.world_size
        mine = order[: per_rank * self.world_size][self.rank :: self.world_size]
        return iter(mine[self.skip :].tolist())


def _init_worker(worker_id: int) -> None:
    """Seed the global generators of a worker (for third-party code in hooks; our own code
    uses explicit generators), keep torch to one compute thread and leave Ctrl-C to the main
    process. OpenCV's thread count is set before the fork (:func:`single_threaded_opencv`).
    """
    seed = torch.initial_seed() % 2**32  # differs per worker, derived from the loader seed
    np.random.seed(seed)
    torch.set_num_threads(1)
    # Ctrl-C, `timeout`, `kill -- -PGID` and Slurm signal the whole process group: the main
    # process finishes its step and saves, which needs the workers alive until it stops them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _finish_soon)


# How long a worker keeps serving after a SIGTERM when the main process does not stop it.
WORKER_STOP_GRACE_S = 30


def _finish_soon(signum: int, frame: object) -> None:
    """A worker's SIGTERM: keep serving, exit cleanly ``WORKER_STOP_GRACE_S`` seconds later
    unless the loader stops it first (its normal shutdown, once the main process has saved).
    A worker killed by a signal makes PyTorch raise in the main process wherever it is (its
    SIGCHLD check), a clean exit does not; so later SIGTERMs are ignored too: one stop often
    arrives twice (the process group and ``pkill -f``, or ``timeout`` forwarding it), and
    dying on the second would lose the checkpoint the main process is about to write."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, lambda *_: os._exit(0))
    signal.alarm(WORKER_STOP_GRACE_S)


class WorkerLoader(DataLoader):
    """A DataLoader whose worker processes are stopped at interpreter exit before
    multiprocessing's exit handler runs (registered earlier, so run later): that handler
    signals them and joins, and a worker takes the signal for the job's stop and serves on
    (:func:`_finish_soon`)."""

    def __iter__(self):
        iterator = super().__iter__()
        if hasattr(iterator, "_shutdown_workers") and not getattr(
                iterator, "_stops_at_exit", False):
            iterator._stops_at_exit = True
            atexit.register(_shut_down_at_exit, weakref.ref(iterator))
        return iterator


def _shut_down_at_exit(iterator_ref: weakref.ref) -> None:
    iterator = iterator_ref()
    if iterator is not None:
        iterator._shutdown_workers()


def stop_workers(loader: DataLoader) -> None:
    """Stop ``loader``'s persistent worker processes now rather than at garbage collection,
    which may come after multiprocessing's exit handler has signalled them. PyTorch has no
    public call for it; this is its own shutdown, as the iterator's ``__del__`` runs it."""
    iterator = getattr(loader, "_iterator", None)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()
    loader._iterator = None


@contextlib.contextmanager
def single_threaded_opencv() -> Iterator[None]:
    """OpenCV at one thread in this process while the block runs, the previous count after.

    Wrap the call that starts a loader's worker processes (the first ``iter(loader)``): the
    workers are forked with one OpenCV thread each. They already run in parallel, one clip
    each, and OpenCV's threads spin between the tracker's many small calls, taking CPU from
    the training step (docs/benchmarks.md, "What motion costs end to end"). Setting it in
    the worker itself is not safe: a forked worker that tears down a pool its parent had
    started deadlocks."""
    import cv2  # only where workers start

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    shuffle: bool,
    seed: int,
    drop_last: bool = True,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset`` batching with :func:`collate_samples`.

    Args:
        batch_size: items per batch (an item of ``num_views`` samples contributes that many
            rows, so tensors have ``batch_size * num_views`` rows).
        workers: worker processes (0: load in the calling process); persistent when > 0.
        shuffle: use an :class:`EpochSampler` seeded by ``seed`` (ignored when ``sampler``
            is given, e.g. one rank's share of an epoch).
        seed: seeds the sampler and the loader's base seed for workers.
        drop_last: drop the last incomplete batch (training); keep it for evaluation.
    """
    if sampler is None:
        sampler = EpochSampler(len(dataset), seed) if shuffle else SequentialSampler(dataset)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return WorkerLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        worker_init_fn=_init_worker if workers > 0 else None,
        generator=generator,
    )


def set_epoch(loader: DataLoader, epoch: int, skip: int = 0) -> None:
    """Tell the loader's sampler and dataset the epoch (whichever have ``set_epoch``);
    ``skip``: the first indices of the epoch this rank already consumed (a resumed run; an
    :class:`EpochSampler` only)."""
    if isinstance(loader.sampler, EpochSampler):
        loader.sampler.set_epoch(epoch, skip=skip)
    elif skip:
        raise ValueError(f"only an EpochSampler resumes part-way through an epoch, not "
                         f"{type(loader.sampler).__name__}")
    else:
        setter = getattr(loader.sampler, "set_epoch", None)
        if callable(setter):
            setter(epoch)
    setter = getattr(loader.dataset, "set_epoch", None)
    if callable(setter):
        setter(epoch)

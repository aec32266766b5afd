"""DataLoader construction: worker processes, seeded shuffling, epoch propagation.

Shuffling uses :class:`EpochShuffleSampler`, whose permutation is a function of
``(seed, epoch)``, so a resumed run replays the same order. Call :func:`set_epoch` on the
loader before iterating each epoch: it reaches the sampler and the dataset (whose epoch lives
in shared memory, visible to persistent workers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from motionmae.data.dataset import collate_samples

logger = logging.getLogger(__name__)


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(length)`` drawn from ``(seed, epoch)``."""

    def __init__(self, length: int, seed: int = 0) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, 0x5A4D])
        return iter(rng.permutation(self.length).tolist())

    def __len__(self) -> int:
        return self.length


def _init_worker(worker_id: int) -> None:
    """Seed the global generators of a worker (for third-party code in hooks; our own code
    uses explicit generators) and keep torch to one compute thread.

    Not ``cv2.setNumThreads``: in a forked worker whose parent already used OpenCV's thread
    pool it deadlocks (tearing down the inherited pool); OpenCV calls themselves are fine.
    """
    seed = torch.initial_seed() % 2**32  # differs per worker, derived from the loader seed
    np.random.seed(seed)
    torch.set_num_threads(1)


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
        shuffle: use an :class:`EpochShuffleSampler` seeded by ``seed`` (ignored when
            ``sampler`` is given, e.g. a ``DistributedSampler``).
        seed: seeds the sampler and the loader's base seed for workers.
        drop_last: drop the last incomplete batch (training); keep it for evaluation.
    """
    if sampler is None:
        sampler = EpochShuffleSampler(len(dataset), seed) if shuffle \
            else SequentialSampler(dataset)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
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


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's sampler and dataset the epoch (whichever have ``set_epoch``)."""
    for target in (loader.sampler, getattr(loader.batch_sampler, "sampler", None),
                   loader.dataset):
        setter = getattr(target, "set_epoch", None)
        if callable(setter):
            setter(epoch)

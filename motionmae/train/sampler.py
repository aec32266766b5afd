"""A resumable, rank-aware epoch sampler, and how many full batches an epoch holds.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so a resumed run (any
number of data-loader workers) sees exactly the samples an uninterrupted run would have seen:
it only skips the ones already consumed. Across ``world_size`` ranks each rank takes every
``world_size``-th index of the same permutation, so each sample is seen once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from motionmae.config import RunConfig
from motionmae.errors import UsageError


def batches_per_epoch(num_videos: int, run: RunConfig, clips_per_video: int, world_size: int,
                      source: str = "the dataset") -> int:
    """Full batches of one process in an epoch of ``num_videos`` videos.

    Raises:
        UsageError: the videos cannot fill one step (every process's batch), naming
            ``source`` (the list) and its size; checked before a run builds anything.
    """
    per_batch = run.videos_per_batch(clips_per_video)
    batches = (num_videos // world_size) // per_batch
    if batches < 1:
        processes = f" x {world_size} processes" if world_size > 1 else ""
        clips = f" ({run.batch_size} clips, {clips_per_video} per video)" if (
            clips_per_video > 1) else ""
        raise UsageError(f"{source} has {num_videos} video(s), too few for one step of "
                         f"{per_batch} video(s){clips}{processes}: lower --batch-size "
                         f"(run.batch_size {run.batch_size}) or add videos")
    return batches


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
        self.epoch = epoch
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

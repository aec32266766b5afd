"""The extraction driver: fill a cache for a list of videos, sharded, resumable, in parallel.

``motionmae extract-tracks`` and ``motionmae extract-teacher`` are one loop with another job
(:class:`ExtractJob`: what one video's entries are and how to compute them). For each video
of this shard (``i % n == k`` over the list order: deterministic, so ``n`` machines or ranks
with ``shard=(k, n)`` partition the list), the job skips it when its entries are cached
(resumable: rerun after an interruption and only the missing or corrupt entries are
computed), else computes and stores them. A video that cannot be read or computed is
reported in :attr:`ExtractStats.failed` with the reason and does not stop the run (one bad
video must not stop a multi-day extraction). ``on_progress`` is called after every video.

Parallelism: a process pool of ``workers`` (``spawn``; each worker single-threaded in OpenCV
and torch, with its own copy of the job, started once), one video per task; workers write
their shards themselves. Extracting the same videos from several processes or machines at
once is safe (atomic writes), only wasteful.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2

from motionmae.data.video_info import VideoReadError

__all__ = ["ExtractJob", "ExtractStats", "ProgressFn", "extract", "shard_videos"]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, Path, str], None]
"""``on_progress(completed, total, video, status)``; status ``done``/``skipped``/``failed``."""


class ExtractJob(Protocol):
    """One cache's extraction of one video, as the driver runs it. Picklable (sent to the
    pool's workers).

    Attributes:
        name: the command, for log lines (``"extract-tracks"``).
    """

    name: str

    def start(self) -> None:
        """Prepare this process (build a tracker, ...); called once before its first video."""

    def __call__(self, video: Path) -> Literal["done", "skipped"]:
        """``"skipped"`` when the video's entries are cached and valid, else compute and store
        them and return ``"done"``. Raises on a video that cannot be read or computed."""


@dataclass
class ExtractStats:
    """What one :func:`extract` call did.

    Attributes:
        done: videos computed and stored.
        skipped_existing: videos whose entries were already cached.
        failed: ``(video, reason)`` of the videos that could not be read or computed, in
            list order.
        seconds: wall-clock time of the call.
    """

    done: int = 0
    skipped_existing: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def videos_per_second(self) -> float:
        """Computed videos per second of wall-clock time (0 when nothing was computed)."""
        return self.done / self.seconds if self.seconds > 0 else 0.0


def shard_videos(videos: Sequence[Path], shard: tuple[int, int]) -> list[Path]:
    """Videos ``i`` of the list with ``i % n == k`` for ``shard = (k, n)``."""
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard}")
    return [Path(v) for i, v in enumerate(videos) if i % count == index]


def _process(job: ExtractJob, path: Path) -> tuple[str, str]:
    """One video: ``("skipped" | "done" | "failed", reason)``."""
    try:
        return job(path), ""
    except VideoReadError as error:
        return "failed", error.reason or str(error)
    except Exception as error:  # one bad video must not stop a multi-day extraction
        logger.debug("%s: %s failed", job.name, path, exc_info=True)
        return "failed", _reason(error, path)


def _reason(error: Exception, path: Path) -> str:
    """Why ``path`` failed, in one line; a missing file as check-data and prepare say it."""
    if isinstance(error, FileNotFoundError) and error.filename is not None:
        missing = Path(error.filename)
        return "file not found" if missing == path else f"{missing}: file not found"
    return f"{type(error).__name__}: {error}"


# -- worker processes ------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(job: ExtractJob) -> None:
    cv2.setNumThreads(1)
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)
    job.start()
    _WORKER["job"] = job


def _work(path: Path) -> tuple[str, str]:
    return _process(_WORKER["job"], path)


def _run_inline(paths: list[Path], job: ExtractJob) -> Iterator[tuple[int, str, str]]:
    job.start()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for i, path in enumerate(paths):
            yield (i, *_process(job, path))
    finally:
        cv2.setNumThreads(threads)


def _run_pool(paths: list[Path], job: ExtractJob, workers: int,
              start_method: str) -> Iterator[tuple[int, str, str]]:
    context = multiprocessing.get_context(start_method)
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                     initargs=(job,)) as pool:
        pending = {pool.submit(_work, path): i for i, path in enumerate(paths)}
        try:
            for future in futures.as_completed(pending):
                yield (pending[future], *future.result())
        except BrokenProcessPool as error:
            # A worker died (killed, out of memory, a crash in native code): report the
            # videos not finished; a rerun resumes from the entries already written.
            logger.error("%s: a worker process died (%s)", job.name, error)
            for future, i in pending.items():
                if not future.done() or future.exception() is not None:
                    yield i, "failed", f"worker process died ({error})"
            return


def extract(
    videos: Sequence[str | Path],
    job: ExtractJob,
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    on_progress: ProgressFn | None = None,
    start_method: str = "spawn",
) -> ExtractStats:
    """Run ``job`` on this shard of ``videos``.

    Args:
        videos: video files (list order defines the sharding).
        job: what to compute and where to store it.
        workers: processes; ``1`` runs in this process.
        shard: ``(k, n)``: this call handles videos ``i`` with ``i % n == k``.
        on_progress: called after each video as ``(completed, total, video, status)``.
        start_method: multiprocessing start method of the pool.

    Returns:
        :class:`ExtractStats`.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    paths = shard_videos([Path(v) for v in videos], shard)
    stats = ExtractStats()
    started = time.perf_counter()
    failed: dict[int, tuple[Path, str]] = {}
    results = (_run_inline(paths, job) if workers == 1 or len(paths) <= 1
               else _run_pool(paths, job, min(workers, len(paths)), start_method))
    for completed, (i, status, reason) in enumerate(results, start=1):
        if status == "done":
            stats.done += 1
        elif status == "skipped":
            stats.skipped_existing += 1
        else:
            failed[i] = (paths[i], reason)
            logger.warning("%s: %s failed: %s", job.name, paths[i], reason)
        if on_progress is not None:
            on_progress(completed, len(paths), paths[i], status)
    stats.failed = [failed[i] for i in sorted(failed)]
    stats.seconds = time.perf_counter() - started
    logger.info("%s: shard %d/%d: %d computed, %d already cached, %d failed in %.1f s "
                "(%.2f videos/s)", job.name, shard[0], shard[1], stats.done,
                stats.skipped_existing, len(stats.failed), stats.seconds,
                stats.videos_per_second)
    return stats

"""One ``motionmae prepare`` job (a source video and its output), and running many of them.

A job is first checked in the calling process (:func:`verify_job`): skipped when the
manifest entry vouches for the output as the prepared copy of the source as it is now, failed
when it cannot run. The others are encoded (:func:`encode_job`) to a temporary file that is
fsynced, hashed and renamed into place, in this process (:func:`run_inline`) or in a process
pool (:func:`run_pool`), which reports the jobs of a worker that died as failed instead of
stopping the run. A bad video is an outcome (``failed`` and the reason), never an exception.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motionmae.data.config import PrepareConfig
from motionmae.data.transcode import transcode
from motionmae.data.video_info import VideoReadError
from motionmae.fileio import fsync_dir, sha256_file

__all__ = ["Job", "Outcome", "encode_job", "run_inline", "run_pool", "verify_job"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A source video, its prepared output and the manifest's entry for that output."""

    source: Path
    output: Path
    previous: dict[str, Any] | None  # the manifest entry of ``output``, if any


def _is_current(entry: dict[str, Any] | None, source: Path, stat: os.stat_result,
                output: Path, settings: dict[str, Any]) -> bool:
    """Whether ``entry`` vouches for ``output`` as the prepared copy of ``source`` as it is."""
    if entry is None or entry.get("settings") != settings:
        return False
    if (entry.get("source"), entry.get("source_size"), entry.get("source_mtime_ns")) != (
            str(source), stat.st_size, stat.st_mtime_ns):
        return False
    try:
        if output.stat().st_size != entry.get("size"):
            return False
    except FileNotFoundError:
        return False
    return sha256_file(output) == entry.get("sha256")


Outcome = tuple[str, dict[str, Any] | None, str]  # status, manifest entry, failure reason


def verify_job(job: Job, settings: PrepareConfig) -> Outcome | None:
    """``skipped`` when the output is a verified copy of the source as it is now, ``failed``
    when the job cannot run, ``None`` when the video must be encoded."""
    previous = job.previous
    if previous is not None and previous.get("source") != str(job.source):
        return ("failed", None, f"{job.output} is the prepared copy of another video "
                f"({previous.get('source')}); prepare this list into another --out")
    try:
        stat = job.source.stat()
    except FileNotFoundError:
        return "failed", None, "file not found"
    if _is_current(previous, job.source, stat, job.output, dataclasses.asdict(settings)):
        return "skipped", previous, ""
    return None


def encode_job(job: Job, settings: PrepareConfig) -> Outcome:
    """Encode one video to a temporary file, then rename it into place: ``("done", entry,
    "")`` or ``("failed", None, reason)``."""
    tmp = job.output.with_name(f".{job.output.name}.{os.getpid()}.tmp")
    try:
        stat = job.source.stat()  # before reading: a change while encoding is a new stat
        job.output.parent.mkdir(parents=True, exist_ok=True)
        encoded = transcode(job.source, tmp, settings)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        digest = sha256_file(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, job.output)
        fsync_dir(job.output.parent)
        entry = {"source": str(job.source), "source_size": stat.st_size,
                 "source_mtime_ns": stat.st_mtime_ns, "settings": dataclasses.asdict(settings),
                 "sha256": digest, "size": size, **dataclasses.asdict(encoded)}
        return "done", entry, ""
    except VideoReadError as error:
        return "failed", None, error.reason or str(error)
    except Exception as error:  # one bad video must not stop a day-long preparation
        logger.debug("prepare: %s failed", job.source, exc_info=True)
        return "failed", None, f"{type(error).__name__}: {error}"
    finally:
        tmp.unlink(missing_ok=True)


def run_inline(jobs: Sequence[Job], settings: PrepareConfig
                ) -> Iterator[tuple[int, str, dict[str, Any] | None, str]]:
    """``(job index, *outcome)`` in job order, encoded in this process."""
    for i, job in enumerate(jobs):
        yield (i, *encode_job(job, settings))


def run_pool(jobs: Sequence[Job], settings: PrepareConfig, workers: int, start_method: str
              ) -> Iterator[tuple[int, str, dict[str, Any] | None, str]]:
    """``(job index, *outcome)`` as the pool's workers finish them."""
    context = multiprocessing.get_context(start_method)
    with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending = {pool.submit(encode_job, job, settings): i for i, job in enumerate(jobs)}
        reported: set[int] = set()
        try:
            for future in futures.as_completed(pending):
                yield (pending[future], *future.result())
                reported.add(pending[future])
        except BrokenProcessPool as error:
            # A worker died (killed, out of memory, a crash in native code): keep what was
            # finished, report the rest; a rerun resumes from the manifest.
            logger.error("prepare: a worker process died (%s)", error)
            for future, i in pending.items():
                if i in reported:
                    continue
                if future.done() and future.exception() is None:
                    yield (i, *future.result())
                else:
                    yield i, "failed", None, f"worker process died ({error})"

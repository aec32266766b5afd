"""Re-encode a dataset once at its working resolution: ``motionmae prepare`` as a library call.

Decoding is the usual bottleneck of video training: a 1280x720 frame costs several times a
320-px one, and a clip decodes dozens of frames. :func:`prepare_dataset` re-encodes every
video of a list (or dataset spec) to H.264 ``yuv420p`` with the short side at
``settings.short_side`` (aspect kept, even sides, never enlarged, square pixels), a keyframe
every ``settings.keyframe_seconds`` (cheap seeks), every frame kept or resampled to
``settings.fps``, and writes a list file of the prepared videos with the same labels and
classes. Audio is dropped.

Layout of ``out``::

    out/videos/<path relative to the sources' common folder>.mp4
    out/<name>.txt               the prepared list (labels as integers)
    out/<name>.classes.txt       its class names, when the source has them
    out/<name>.failed.txt        ``path<TAB>reason`` of the videos that failed (if any)
    out/manifest.json            one entry per prepared video (see below)

Nothing is written outside ``out``: source paths are normalised (``lists/../vids/a.mp4`` is
``vids/a.mp4``) before their path below the common folder is taken, and a run whose output
(a video or the list) would be one of its inputs, reached however, is refused before it
starts: the sources are only ever read.

Resumable: a video is skipped when the manifest has an entry for its output with the same
source path, source size and modification time and the same settings, and the output file's
size and sha256 match the entry; anything else (new, changed, interrupted, corrupt) is
re-encoded. Outputs are written to a temporary name and renamed; the manifest is rewritten
atomically every ``flush_seconds`` and at the end, so an interrupted run loses at most the
entries of its last seconds (those videos are encoded again). One ``prepare`` at a time per
``out`` (a lock file enforces it).

A video that cannot be read or encoded is reported in :attr:`PrepareStats.failed` with the
reason and left out of the list; the run goes on. Parallelism: a process pool of ``workers``,
one video per task, one decoder and one encoder thread per worker.

This module plans a run (which output each source gets, the list files) and drives it; the
steps live beside it: :mod:`~motionmae.data.transcode` (encoding one video),
:mod:`~motionmae.data.prepare_jobs` (skip or encode one job, the worker pool) and
:mod:`~motionmae.data.prepare_manifest` (the manifest and the lock).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motionmae.data.config import PrepareConfig
from motionmae.data.formats import parse_spec
from motionmae.data.lists import VideoEntry, VideoList, read_video_list, write_video_list
from motionmae.data.prepare_jobs import Job, run_inline, run_pool, verify_job
from motionmae.data.prepare_manifest import (
    LOCK_FILE,
    MANIFEST,
    exclusive,
    read_manifest,
    write_manifest,
)
from motionmae.data.transcode import Encoded, prepared_size, transcode
from motionmae.errors import DataError, UsageError

__all__ = [
    "LOCK_FILE",
    "MANIFEST",
    "VIDEOS_DIR",
    "Encoded",
    "PrepareStats",
    "ProgressFn",
    "default_list_name",
    "failures_path",
    "output_paths",
    "prepare_dataset",
    "prepared_size",
    "read_manifest",
    "transcode",
    "write_list",
]

logger = logging.getLogger(__name__)

VIDEOS_DIR = "videos"

ProgressFn = Callable[[int, int, Path, str], None]
"""``on_progress(completed, total, source, status)``; status ``done``/``skipped``/``failed``."""


@dataclass
class PrepareStats:
    """What one :func:`prepare_dataset` call did.

    Attributes:
        done: videos encoded.
        skipped: videos already prepared (verified by the manifest).
        failed: ``(source, reason)`` of the videos that could not be prepared, in list order.
        frames: frames encoded by this call.
        seconds: wall-clock time of the call.
        list_path: the prepared list file.
    """

    done: int = 0
    skipped: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    list_path: Path | None = None

    @property
    def videos_per_second(self) -> float:
        """Encoded videos per second of wall-clock time (0 when nothing was encoded)."""
        return self.done / self.seconds if self.seconds > 0 else 0.0


# -- the dataset ----------------------------------------------------------------------------------


def output_paths(sources: Sequence[Path], videos_dir: Path,
                 root: Path | None = None) -> dict[Path, Path]:
    """``{source: videos_dir/<source relative to root, suffix .mp4>}``; ``root`` defaults to
    the sources' deepest common folder.

    Paths are made absolute and normalised first (``lists/../vids/a.mp4`` is ``vids/a.mp4``),
    so the relative part never climbs out of ``videos_dir``.

    Raises:
        UsageError: a source is outside ``root``, or two sources map to one output (same
            name with different suffixes).
    """
    unique = list(dict.fromkeys(_normalised(s) for s in sources))
    root = (_normalised(root) if root is not None
            else Path(os.path.commonpath([str(s.parent) for s in unique])))
    outputs: dict[Path, Path] = {}
    claimed: dict[Path, Path] = {}
    for source in unique:
        try:
            relative = source.relative_to(root)
        except ValueError:
            raise UsageError(f"{source} is not under the root folder {root} (--root)") from None
        output = videos_dir / relative.with_suffix(".mp4")
        if output in claimed:
            raise UsageError(f"{claimed[output]} and {source} would both be prepared as "
                             f"{output}")
        claimed[output] = source
        outputs[source] = output
    return outputs


def _normalised(path: Path | str) -> Path:
    """Absolute, with ``.`` and ``..`` resolved lexically (symbolic links kept)."""
    return Path(os.path.normpath(Path(path).absolute()))


def _refuse_inputs(written: dict[Path, str], inputs: Sequence[Path]) -> None:
    """Refuse to write any of ``written`` (``{path: what writes it}``) over one of ``inputs``
    (the videos, the list): the same file, however reached (links, ``..``)."""
    real = {os.path.realpath(path): path for path in inputs}
    for path, writer in written.items():
        overwritten = real.get(os.path.realpath(path))
        if overwritten is not None:
            raise UsageError(f"refusing to write {writer} over the input {overwritten}: choose "
                             "an --out outside the folders of the videos and the list")


def prepare_dataset(
    data: str | Path | VideoList,
    out: str | Path,
    settings: PrepareConfig | None = None,
    *,
    workers: int = 1,
    list_name: str | None = None,
    root: str | Path | None = None,
    on_progress: ProgressFn | None = None,
    start_method: str = "spawn",
    flush_seconds: float = 30.0,
) -> PrepareStats:
    """Prepare every video of ``data`` into ``out`` and write the prepared list.

    Args:
        data: a list file, a dataset spec (``FORMAT:PATH[,key=value...]``) or a
            :class:`VideoList`.
        out: the output folder (see the module docstring for its layout).
        settings: size, frame rate and encoder settings (default :class:`PrepareConfig`).
        workers: processes; ``1`` runs in this process.
        list_name: file name of the prepared list (default: :func:`default_list_name`).
        root: the folder whose layout is reproduced under ``out/videos`` (default: the
            sources' deepest common folder).
        on_progress: called after each video as ``(completed, total, source, status)``.
        start_method: multiprocessing start method of the pool.
        flush_seconds: how often the manifest is rewritten while the run goes.

    Returns:
        :class:`PrepareStats`.
    """
    settings = settings or PrepareConfig()
    settings.validate()
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    out = _normalised(out)
    videos = data if isinstance(data, VideoList) else read_video_list(data)
    if not videos.entries:
        raise DataError(f"prepare: {data} lists no videos to prepare")
    list_path = out / (list_name or default_list_name(data))
    sources = [_normalised(entry.path) for entry in videos.entries]
    outputs = output_paths(sources, out / VIDEOS_DIR, root)
    _refuse_inputs({list_path: "the prepared list", failures_path(list_path):
                    "the list of failures", **{o: f"the prepared copy of {s}"
                                               for s, o in outputs.items()}},
                   [*sources, *_list_files(data)])
    out.mkdir(parents=True, exist_ok=True)
    stats = PrepareStats(list_path=list_path)
    started = time.perf_counter()
    with exclusive(out):
        manifest = read_manifest(out)
        jobs = [Job(s, o, manifest.get(_key(o, out))) for s, o in outputs.items()]
        status: dict[Path, str] = {}
        failed: dict[Path, str] = {}
        completed = 0

        def record(job: Job, outcome: str, entry: dict[str, Any] | None, reason: str) -> None:
            nonlocal completed
            completed += 1
            status[job.source] = outcome
            if outcome == "failed":
                failed[job.source] = reason
                logger.warning("prepare: %s failed: %s", job.source, reason)
            else:
                assert entry is not None
                manifest[_key(job.output, out)] = entry
                if outcome == "done":
                    stats.done += 1
                    stats.frames += int(entry["frames"])
                else:
                    stats.skipped += 1
            if on_progress is not None:
                on_progress(completed, len(jobs), job.source, outcome)

        # Verified here, in this process: a finished dataset reruns without starting workers.
        todo = []
        for job in jobs:
            verdict = verify_job(job, settings)
            if verdict is None:
                todo.append(job)
            else:
                record(job, *verdict)
        results = (run_inline(todo, settings) if workers == 1 or len(todo) <= 1
                   else run_pool(todo, settings, min(workers, len(todo)), start_method))
        flushed = time.monotonic()
        try:
            for i, outcome, entry, reason in results:
                record(todo[i], outcome, entry, reason)
                if time.monotonic() - flushed > flush_seconds:
                    write_manifest(out, manifest)
                    flushed = time.monotonic()
        finally:
            write_manifest(out, manifest)
        stats.failed = [(s, failed[s]) for s in outputs if s in failed]
        prepared = [VideoEntry(path=outputs[s], label=e.label)
                    for s, e in zip(sources, videos.entries, strict=True)
                    if status.get(s) in ("done", "skipped")]
        write_video_list(list_path, prepared, videos.classes, class_file=True)
        _write_failures(list_path, stats.failed)
    stats.seconds = time.perf_counter() - started
    logger.info("prepare: %d encoded, %d already prepared, %d failed in %.1f s (%.2f videos/s); "
                "list: %s", stats.done, stats.skipped, len(stats.failed), stats.seconds,
                stats.videos_per_second, list_path)
    return stats


def failures_path(list_path: Path) -> Path:
    """``train.txt`` -> ``train.failed.txt``: the videos a prepare run could not prepare."""
    return list_path.with_suffix(".failed.txt")


def _write_failures(list_path: Path, failed: Sequence[tuple[Path, str]]) -> None:
    path = failures_path(list_path)
    if failed:
        lines = [f"{source}\t{' '.join(reason.split())}" for source, reason in failed]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        path.unlink(missing_ok=True)


def _key(output: Path, out: Path) -> str:
    return output.relative_to(out).as_posix()


def _list_files(data: str | Path | VideoList) -> list[Path]:
    """The list file ``data`` names (none for a dataset spec or a :class:`VideoList`)."""
    return [Path(data)] if not isinstance(data, VideoList) and Path(data).is_file() else []


def default_list_name(data: str | Path | VideoList) -> str:
    """The prepared list's file name: the input list's, or ``<spec name>.txt`` for a dataset
    spec, or ``list.txt`` for a :class:`VideoList`."""
    if isinstance(data, VideoList):
        return "list.txt"
    if Path(data).exists():
        return Path(data).name
    return f"{parse_spec(str(data)).name}.txt"


def write_list(data: str | Path, out: str | Path, list_name: str | None = None) -> Path:
    """Convert a list file or dataset spec to a plain ``path label`` list in folder ``out``
    (the original videos, integer labels, class names in the ``.classes.txt`` beside it);
    returns the list's path."""
    videos = read_video_list(data)
    path = Path(out) / (list_name or default_list_name(data))
    _refuse_inputs({path: "the list"}, _list_files(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video_list(path, videos.entries, videos.classes, class_file=True)
    logger.info("wrote %d videos to %s", len(videos), path)
    return path

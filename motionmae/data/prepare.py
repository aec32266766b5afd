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
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.video.reformatter import VideoReformatter

from motionmae.config import PrepareConfig
from motionmae.data.formats import parse_spec
from motionmae.data.lists import VideoEntry, VideoList, read_video_list, write_video_list
from motionmae.data.video import VideoReadError, probe_video
from motionmae.fileio import atomic_write_bytes, fsync_dir, sha256_file

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
VIDEOS_DIR = "videos"
LOCK_FILE = ".prepare.lock"

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


@dataclass(frozen=True)
class Encoded:
    """What :func:`transcode` wrote: frame count, size (px) and frame rate."""

    frames: int
    width: int
    height: int
    fps: float


def prepared_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """``(height, width)`` of a prepared video whose source shows ``height x width`` square
    pixels: the short side brought down to ``short_side`` (never up; ``None`` keeps the
    size), aspect kept, each side rounded to an even number (4:2:0 chroma), at least 2."""
    scale = 1.0
    if short_side is not None and min(height, width) > short_side:
        scale = short_side / min(height, width)
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


# -- encoding one video ----------------------------------------------------------------------


def _timed_frames(container: av.container.InputContainer, stream: av.VideoStream,
                  fps: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decoded frames with their presentation time in seconds from the stream's start."""
    start = stream.start_time or 0
    time_base = float(stream.time_base) if stream.time_base else 1.0 / fps
    previous = -1.0 / fps
    for frame in container.decode(stream):
        seconds = ((frame.pts - start) * time_base if frame.pts is not None
                   else previous + 1.0 / fps)
        previous = seconds
        yield seconds, frame


def _resampled(frames: Iterable[tuple[float, av.VideoFrame]], fps: float,
               source_fps: float) -> Iterator[av.VideoFrame]:
    """Frames at ``fps``: output frame ``k`` is the source frame shown at time ``k / fps``
    (the last one starting at or before it), until the last source frame's display ends."""
    eps = 1e-6  # timestamps are rounded to the time base
    k = 0
    last: tuple[float, av.VideoFrame] | None = None
    for seconds, frame in frames:
        while last is not None and k / fps < seconds - eps:
            yield last[1]
            k += 1
        last = (seconds, frame)
    if last is not None:
        end = last[0] + 1.0 / source_fps
        while k / fps < end - eps:
            yield last[1]
            k += 1


def transcode(source: Path, output: Path, settings: PrepareConfig) -> Encoded:
    """Re-encode the first video stream of ``source`` to ``output`` (an ``.mp4``, written
    directly: callers rename a temporary file) as described by ``settings``.

    Raises:
        VideoReadError: the source is missing, empty, not a video, or fails to decode.
    """
    info = probe_video(source)
    height, width = prepared_size(info.height, info.display_width, settings.short_side)
    shrinking = height * width < info.height * info.width
    interpolation = "AREA" if shrinking else "BILINEAR"
    try:
        with av.open(str(source)) as src:
            stream = src.streams.video[0]
            stream.thread_count = 1  # parallelism comes from the worker processes
            source_rate = stream.average_rate or stream.guessed_rate
            source_fps = float(source_rate) if source_rate else info.fps
            rate = (Fraction(settings.fps).limit_denominator(1001) if settings.fps
                    else Fraction(source_rate) if source_rate
                    else Fraction(info.fps).limit_denominator(1001))
            frames: Iterable[av.VideoFrame]
            timed = _timed_frames(src, stream, source_fps)
            if settings.fps:
                frames = _resampled(timed, settings.fps, source_fps)
            else:
                frames = (frame for _, frame in timed)
            count = _encode(frames, output, rate, width, height, interpolation, settings)
    except av.FFmpegError as error:
        raise VideoReadError.for_file(source, f"decode or encode error: {error}") from error
    if count == 0:
        raise VideoReadError.for_file(source, "no frames decoded")
    return Encoded(frames=count, width=width, height=height, fps=float(rate))


def _encode(frames: Iterable[av.VideoFrame], output: Path, rate: Fraction, width: int,
            height: int, interpolation: str, settings: PrepareConfig) -> int:
    reformatter = VideoReformatter()  # one scaler context for the whole video
    count = 0
    with av.open(str(output), mode="w", format="mp4") as dst:
        stream = dst.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, round(float(rate) * settings.keyframe_seconds))
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(settings.crf), "preset": settings.preset}
        time_base = Fraction(1) / rate
        for frame in frames:
            picture = reformatter.reformat(frame, width=width, height=height, format="yuv420p",
                                           interpolation=interpolation, threads=1)
            picture.pts = count
            picture.time_base = time_base
            # The scaler keeps the source's frame type, and FFmpeg's libx264 wrapper obeys it
            # (I/P/B forced as in the source): let the encoder choose, to our keyframe rate.
            picture.pict_type = av.video.frame.PictureType.NONE
            count += 1
            for packet in stream.encode(picture):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return count


# -- one job: skip or encode, verify, rename ---------------------------------------------------


@dataclass(frozen=True)
class _Job:
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


_Outcome = tuple[str, dict[str, Any] | None, str]  # status, manifest entry, failure reason


def _verify(job: _Job, settings: PrepareConfig) -> _Outcome | None:
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


def _encode_job(job: _Job, settings: PrepareConfig) -> _Outcome:
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


def _run_inline(jobs: Sequence[_Job], settings: PrepareConfig
                ) -> Iterator[tuple[int, str, dict[str, Any] | None, str]]:
    """``(job index, *outcome)`` in job order, encoded in this process."""
    for i, job in enumerate(jobs):
        yield (i, *_encode_job(job, settings))


def _run_pool(jobs: Sequence[_Job], settings: PrepareConfig, workers: int, start_method: str
              ) -> Iterator[tuple[int, str, dict[str, Any] | None, str]]:
    """``(job index, *outcome)`` as the pool's workers finish them."""
    context = multiprocessing.get_context(start_method)
    with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending = {pool.submit(_encode_job, job, settings): i for i, job in enumerate(jobs)}
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


# -- the manifest ---------------------------------------------------------------------------------


def read_manifest(out: Path) -> dict[str, dict[str, Any]]:
    """``{output path relative to out: entry}``; empty when there is none or it is unreadable
    (then every video is prepared again)."""
    path = out / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != MANIFEST_VERSION or not isinstance(data.get("entries"), dict):
            raise ValueError(f"not a version-{MANIFEST_VERSION} manifest")
    except (ValueError, AttributeError) as error:
        logger.warning("%s is unreadable (%s): preparing every video again", path, error)
        return {}
    return data["entries"]


def _write_manifest(out: Path, entries: dict[str, dict[str, Any]]) -> None:
    payload = {"version": MANIFEST_VERSION, "entries": entries}
    atomic_write_bytes(out / MANIFEST, json.dumps(payload, separators=(",", ":")).encode())


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock file (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: trust the user
        yield
        return
    with (out / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{out}: another motionmae prepare is writing here") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- the dataset ----------------------------------------------------------------------------------


def output_paths(sources: Sequence[Path], videos_dir: Path,
                 root: Path | None = None) -> dict[Path, Path]:
    """``{source: videos_dir/<source relative to root, suffix .mp4>}``; ``root`` defaults to
    the sources' deepest common folder.

    Raises:
        ValueError: a source is outside ``root``, or two sources map to one output (same
            name with different suffixes).
    """
    unique = list(dict.fromkeys(sources))
    if root is None:
        root = Path(os.path.commonpath([str(s.parent) for s in unique]))
    outputs: dict[Path, Path] = {}
    claimed: dict[Path, Path] = {}
    for source in unique:
        try:
            relative = source.relative_to(root)
        except ValueError:
            raise ValueError(f"{source} is not under the root folder {root}") from None
        output = videos_dir / relative.with_suffix(".mp4")
        if output in claimed:
            raise ValueError(f"{claimed[output]} and {source} would both be prepared as "
                             f"{output}")
        claimed[output] = source
        outputs[source] = output
    return outputs


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
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    videos = data if isinstance(data, VideoList) else read_video_list(data)
    if not videos.entries:
        raise ValueError("prepare: no videos to prepare")
    list_path = out / (list_name or default_list_name(data))
    sources = [entry.path.absolute() for entry in videos.entries]
    outputs = output_paths(sources, out / VIDEOS_DIR, None if root is None else Path(root))
    out.mkdir(parents=True, exist_ok=True)
    stats = PrepareStats(list_path=list_path)
    started = time.perf_counter()
    with _exclusive(out):
        manifest = read_manifest(out)
        jobs = [_Job(s, o, manifest.get(_key(o, out))) for s, o in outputs.items()]
        status: dict[Path, str] = {}
        failed: dict[Path, str] = {}
        completed = 0

        def record(job: _Job, outcome: str, entry: dict[str, Any] | None, reason: str) -> None:
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
            verdict = _verify(job, settings)
            if verdict is None:
                todo.append(job)
            else:
                record(job, *verdict)
        results = (_run_inline(todo, settings) if workers == 1 or len(todo) <= 1
                   else _run_pool(todo, settings, min(workers, len(todo)), start_method))
        flushed = time.monotonic()
        try:
            for i, outcome, entry, reason in results:
                record(todo[i], outcome, entry, reason)
                if time.monotonic() - flushed > flush_seconds:
                    _write_manifest(out, manifest)
                    flushed = time.monotonic()
        finally:
            _write_manifest(out, manifest)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video_list(path, videos.entries, videos.classes, class_file=True)
    logger.info("wrote %d videos to %s", len(videos), path)
    return path

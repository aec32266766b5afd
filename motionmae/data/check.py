"""``motionmae check-data``: find the videos of a list that will not train well, before training.

Each video is checked in a worker process: opened, its stream header read, its first frame,
the last frame of a clip starting there and its declared last frame decoded (a truncated file
keeps a header that promises frames it no longer has), and its length compared with the clip
span ``(frames - 1) * stride + 1`` (a run's clip settings: :func:`run_data_config`). The
report (TSV, one row per video) says ``ok``, ``short`` (usable; the detail says how it will be
sampled) or ``bad`` (with the reason); the clean list holds the usable ones, labels kept: a
list every command reads back as the same videos, labels and class names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from motionmae.config_loading import ConfigError, from_dict, read_config_file
from motionmae.data.config import DataConfig
from motionmae.data.lists import VideoList, write_video_list
from motionmae.data.transforms import clip_span, fitting_stride, needs_padding
from motionmae.data.video_reader import VideoReader

REPORT_COLUMNS = ("path", "status", "frames", "width", "height", "fps", "detail")


@dataclass(frozen=True)
class VideoCheck:
    """What :func:`check_video` found. ``status``: ``ok``, ``short`` or ``bad``."""

    path: str
    status: str
    frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    detail: str = ""

    def row(self) -> str:
        values = (self.path, self.status, self.frames, self.width, self.height,
                  f"{self.fps:.3f}", self.detail)
        return "\t".join(str(v) for v in values)


def check_video(path: str | Path, frames: int, stride: int, short: str = "pad") -> VideoCheck:
    """Open, probe and decode the needed frames of one video; never raises for a bad file."""
    try:
        with VideoReader(path) as reader:
            info = reader.info
            span = clip_span(frames, stride)
            last_needed = min(span, info.num_frames) - 1
            reader.read(sorted({0, last_needed, info.num_frames - 1}))
    except Exception as error:  # a check reports every failure, whatever its type
        return VideoCheck(str(path), "bad", detail=" ".join(str(error).split()))
    found = dict(frames=info.num_frames, width=info.width, height=info.height, fps=info.fps)
    if info.num_frames >= span:
        return VideoCheck(str(path), "ok", **found)
    fit = fitting_stride(info.num_frames, frames, stride)
    if short == "stretch" and not needs_padding(info.num_frames, frames, stride, short):
        how = f"sampled at stride {fit} instead of {stride} (data.short_videos=stretch)"
    else:
        used = fit if short == "stretch" else stride
        distinct = min(frames, (info.num_frames - 1) // used + 1)
        how = (f"padded: {distinct} distinct frames then {frames - distinct} copies of the last "
               f"one at stride {used}; the largest stride that fits: {fit}")
    detail = f"{info.num_frames} frames < clip span {span} ({frames} x stride {stride}): {how}"
    return VideoCheck(str(path), "short", detail=detail, **found)


def _check(args: tuple[str, int, int, str]) -> VideoCheck:
    return check_video(*args)


def check_videos(paths: Sequence[str | Path], frames: int, stride: int, short: str = "pad",
                 workers: int = 1,
                 on_progress: Callable[[int, int, VideoCheck], None] | None = None
                 ) -> list[VideoCheck]:
    """:func:`check_video` of every path (in ``workers`` processes), in the paths' order;
    ``on_progress(done, total, result)`` after each."""
    jobs = [(str(p), frames, stride, short) for p in paths]
    results: list[VideoCheck] = []
    if workers <= 1:
        for job in jobs:
            results.append(_check(job))
            if on_progress is not None:
                on_progress(len(results), len(jobs), results[-1])
        return results
    with ProcessPoolExecutor(workers) as pool:
        for result in pool.map(_check, jobs, chunksize=4):
            results.append(result)
            if on_progress is not None:
                on_progress(len(results), len(jobs), result)
    return results


def run_data_config(path: str | Path) -> DataConfig:
    """The ``data`` section of a run config (a run's ``config.yaml``, or the run folder holding
    it, or a YAML file given to ``--config``), defaults filled in and validated."""
    section = read_config_file(path).get("data") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: data: must be a section of keys, got {section!r}")
    data = from_dict(DataConfig, section, "data")
    data.validate()
    return data


def write_check(results: Sequence[VideoCheck], videos: VideoList,
                out: Path) -> tuple[Path, Path]:
    """``out/report.tsv`` (a header, one row per video) and ``out/clean.txt`` (the usable
    videos of ``videos``: a plain list, with ``out/clean.classes.txt`` when the videos have
    class names, so that the ids and names are those of ``videos``); returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    report, clean = out / "report.tsv", out / "clean.txt"
    report.write_text("\t".join(REPORT_COLUMNS) + "\n"
                      + "".join(r.row() + "\n" for r in results), encoding="utf-8")
    usable = [e for e, r in zip(videos.entries, results, strict=True) if r.status != "bad"]
    # Integer ids and a class file, as `prepare` writes: names would be renumbered in sorted
    # order when read back, and a class whose every video is bad would vanish.
    write_video_list(clean, usable, videos.classes, class_file=True)
    return report, clean

"""Window features on disk: one ``.npz`` per video, or one for a whole list.

Files are written atomically (:func:`~motionmae.fileio.atomic_write_bytes`), so an existing
file is complete; each holds the settings it was made with (:func:`window_settings`: clip
geometry, step, normalisation, checkpoint), and :func:`is_complete` accepts an existing
per-video file only when they match, so a rerun skips finished videos and recomputes those
made otherwise. Files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motionmae.data.config import DataConfig
from motionmae.fileio import atomic_write_bytes

__all__ = ["FORMAT_VERSION", "VideoWindows", "is_complete", "load_video_windows",
           "output_paths", "save_list_windows", "save_video_windows", "window_settings"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class VideoWindows:
    """One video's window features: ``features [W, D]`` float32, ``start_frames [W]`` int64,
    ``starts``/``ends`` ``[W]`` float64 seconds, with the video's ``fps`` and ``num_frames``."""

    path: str
    features: np.ndarray
    start_frames: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    fps: float
    num_frames: int


def window_settings(data: DataConfig, step: int, source: str = "") -> dict[str, Any]:
    """What a window feature depends on; stored in every output and compared on resume.
    ``source`` names the checkpoint."""
    return {"version": FORMAT_VERSION, "frames": data.frames, "stride": data.stride,
            "size": data.size, "step": step, "mean": list(data.mean), "std": list(data.std),
            "source": source}


def output_paths(videos: Sequence[str | Path], out: str | Path) -> list[Path]:
    """Each video's ``.npz`` in folder ``out``: its path below the videos' common parent,
    suffix replaced (``root/a/x.mp4`` -> ``out/a/x.npz``).

    Raises:
        ValueError: two videos would share an output (same name, different suffixes).
    """
    absolute = [Path(os.path.abspath(v)) for v in videos]
    if not absolute:
        return []
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    paths = [Path(out) / p.relative_to(root).with_suffix(".npz") for p in absolute]
    seen: dict[Path, Path] = {}
    for video, target in zip(absolute, paths, strict=True):
        if target in seen and seen[target] != video:
            raise ValueError(f"{seen[target]} and {video} would both be written to {target}; "
                             "rename one")
        seen[target] = video
    return paths


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save_video_windows(windows: VideoWindows, path: str | Path,
                       settings: dict[str, Any]) -> None:
    """Write one video's windows atomically (a reader never sees a partial file)."""
    atomic_write_bytes(Path(path), _npz_bytes({
        "features": windows.features.astype(np.float32),
        "start_frames": windows.start_frames, "starts": windows.starts, "ends": windows.ends,
        "path": np.asarray(windows.path), "fps": np.asarray(windows.fps),
        "num_frames": np.asarray(windows.num_frames),
        "settings": np.asarray(json.dumps(settings, sort_keys=True)),
    }))


def load_video_windows(path: str | Path) -> tuple[VideoWindows, dict[str, Any]]:
    """Read a file written by :func:`save_video_windows` (no pickle): windows and settings."""
    with np.load(path, allow_pickle=False) as data:
        windows = VideoWindows(
            path=str(data["path"]), features=data["features"],
            start_frames=data["start_frames"], starts=data["starts"], ends=data["ends"],
            fps=float(data["fps"]), num_frames=int(data["num_frames"]))
        return windows, json.loads(str(data["settings"]))


def is_complete(path: Path, settings: dict[str, Any]) -> bool:
    """An existing output made with these settings (atomic writes: present means whole)."""
    if not path.is_file():
        return False
    try:
        windows, saved = load_video_windows(path)
    except (OSError, ValueError, KeyError) as error:
        logger.warning("%s: unreadable (%s); computing it again", path, error)
        return False
    if saved != settings:
        logger.warning("%s was made with other settings; computing it again", path)
        return False
    return len(windows.features) == len(windows.starts) > 0


def save_list_windows(videos: Sequence[VideoWindows], path: str | Path,
                      settings: dict[str, Any]) -> None:
    """One ``.npz`` for a list: ``features [N, D]`` (every window of every video),
    ``video [N]`` (index into ``paths``), ``start_frames``, ``starts``, ``ends`` ``[N]``;
    ``paths``, ``fps``, ``num_frames`` per video; ``settings`` (JSON)."""
    dim = videos[0].features.shape[1] if videos else 0

    def cat(name: str, dtype: Any) -> np.ndarray:
        parts = [getattr(v, name) for v in videos]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    atomic_write_bytes(Path(path), _npz_bytes({
        "features": (np.concatenate([v.features for v in videos]).astype(np.float32)
                     if videos else np.zeros((0, dim), np.float32)),
        "video": np.repeat(np.arange(len(videos)), [len(v.starts) for v in videos]),
        "start_frames": cat("start_frames", np.int64), "starts": cat("starts", np.float64),
        "ends": cat("ends", np.float64),
        "paths": np.asarray([v.path for v in videos], dtype=str),
        "fps": np.asarray([v.fps for v in videos], dtype=np.float64),
        "num_frames": np.asarray([v.num_frames for v in videos], dtype=np.int64),
        "settings": np.asarray(json.dumps(settings, sort_keys=True)),
    }))

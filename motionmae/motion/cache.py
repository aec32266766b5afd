"""The offline track cache: point tracks of a dense query grid, per video, on disk.

``motionmae extract-tracks`` (:func:`~motionmae.motion.extract.extract_tracks`) decodes the
cached clips of each video (:class:`~motionmae.cache.layout.ClipLayout`: ``cache.clips``
evenly spaced clips) at the working short side (``decode_size``), tracks a regular grid of
query points (``grid_spacing`` px apart) from each clip's first frame through its frames, and
stores the result here. During training :class:`~motionmae.motion.hooks.TracksHook`
interpolates the cached grid's tracks at the patch centres of the sample's crop instead of
tracking online; the dataset then draws its training clips from the cached ones
(:meth:`ClipLayout.sample <motionmae.cache.layout.ClipLayout.sample>`). Clips that do not
match (another start) fall back to online tracking.

This module holds what a track cache is: its settings (:class:`CacheSettings`) and the folder
that serves them (:class:`TrackCache`). Beside it: the query grid and interpolation
(:mod:`~motionmae.motion.grid_tracks`) and one video's tracks and their shard arrays
(:mod:`~motionmae.motion.cached_tracks`); what every cache shares (verified shards, keys, the
clip layout, the extraction driver) is :mod:`motionmae.cache`.

**Layout.** ``root/settings.json`` (the settings of the entries under ``root``, by
fingerprint) and one shard per video, ``root/ab/abcdef....npz``
(:func:`~motionmae.cache.shards.shard_path`). The key is the sha256 of the video's absolute
path, file size and ``mtime_ns`` and of every :class:`CacheSettings` field (tracker settings
with their defaults filled in), so a changed video or setting is never served stale: it is
simply a miss.

**Writes** go to a temporary file in the shard's folder, are fsynced and renamed over the
shard (``os.replace``): a reader never sees a torn file, and of two concurrent writers of
the same key (two extract processes, ranks of a distributed job) the last rename wins with
identical content.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motionmae.cache.layout import ClipLayout
from motionmae.cache.shards import (
    FORMAT_VERSION,
    read_shard,
    sha256_json,
    shard_path,
    video_key,
    write_shard,
)
from motionmae.fileio import atomic_write_bytes
from motionmae.motion.cached_tracks import CachedTracks
from motionmae.motion.registry import TRACKERS

if TYPE_CHECKING:
    from motionmae.cache.config import CacheConfig
    from motionmae.data.config import DataConfig
    from motionmae.motion.config import TrackingConfig

__all__ = ["CacheSettings", "TrackCache"]


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class CacheSettings:
    """Everything that determines a video's cached tracks (all part of the cache key).

    Attributes:
        tracker: backend name (``"lk"``, ``"flow"``, ``"cotracker"``).
        tracker_settings: fields of the backend's config dataclass; stored with every default
            filled in, so a changed default in the code is a changed key.
        decode_size: short side, pixels, at which frames are decoded (the dataset's working
            size; aspect kept, as :class:`~motionmae.data.video_reader.VideoReader` does).
        layout: which clips of each video (``frames`` per clip ``T``, ``stride`` source
            frames apart, ``clips`` evenly spaced clips per video, fewer when the video is
            short); hashed as the flat fields ``frames``, ``stride``, ``cache_clips``.
        grid_spacing: spacing of the query grid, decoded pixels (the grid spans the whole
            frame, ``[0, W-1] x [0, H-1]``, so the actual spacing is at most this).
        frame_step: the tracker sees every ``frame_step``-th clip frame
            (:func:`~motionmae.motion.frame_step.track_every`). In the key only when it is not
            1, so the keys of caches made before the setting existed stay valid.
    """

    tracker: str = "lk"
    tracker_settings: Mapping[str, Any] = field(default_factory=dict)
    decode_size: int = 224
    layout: ClipLayout = field(default_factory=ClipLayout)
    grid_spacing: float = 8.0
    frame_step: int = 1

    def __post_init__(self) -> None:
        if self.tracker not in TRACKERS:
            raise ValueError(f"CacheSettings.tracker: unknown tracker {self.tracker!r}; valid: "
                             f"{', '.join(TRACKERS.names())}")
        for name in ("decode_size", "frame_step"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"CacheSettings.{name}: must be an integer >= 1, got {value!r}")
        if self.decode_size < 2:
            raise ValueError(f"CacheSettings.decode_size: must be >= 2, got {self.decode_size}")
        if not self.grid_spacing > 0:
            raise ValueError(f"CacheSettings.grid_spacing: must be > 0 px, "
                             f"got {self.grid_spacing}")
        object.__setattr__(self, "tracker_settings", _resolve_tracker_settings(
            self.tracker, dict(self.tracker_settings)))

    @classmethod
    def for_run(cls, tracking: TrackingConfig, data: DataConfig,
                cache: CacheConfig) -> CacheSettings:
        """The settings (part of every key) of a run's tracker, clips and cache section: the
        same for ``motionmae extract-tracks`` and for training."""
        return cls(tracker=tracking.tracker, tracker_settings=tracking.tracker_settings(),
                   decode_size=data.size, layout=cache.layout(data),
                   frame_step=tracking.frame_step)

    @classmethod
    def from_any(cls, settings: CacheSettings | Mapping[str, Any]) -> CacheSettings:
        """``settings`` itself, or a :class:`CacheSettings` built from a mapping in the form
        of :meth:`to_dict` (the layout's fields flat; unknown keys raise ``ValueError``)."""
        if isinstance(settings, CacheSettings):
            return settings
        names = {f.name for f in dataclasses.fields(cls)} - {"layout"} | set(_LAYOUT_KEYS)
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ValueError(f"CacheSettings: unknown key(s) {unknown}; known: {sorted(names)}")
        values = {k: v for k, v in settings.items() if k not in _LAYOUT_KEYS}
        layout = {field: settings[key] for key, field in _LAYOUT_KEYS.items() if key in settings}
        return cls(**values, layout=ClipLayout(**layout))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (what the key hashes and ``settings.json`` shows)."""
        settings = {
            "tracker": self.tracker,
            "tracker_settings": json.loads(json.dumps(self.tracker_settings, sort_keys=True)),
            "decode_size": self.decode_size,
            **{key: getattr(self.layout, field) for key, field in _LAYOUT_KEYS.items()},
            "grid_spacing": float(self.grid_spacing),
        }
        if self.frame_step != 1:
            settings["frame_step"] = self.frame_step
        return settings

    def fingerprint(self) -> str:
        """sha256 hex of :meth:`to_dict` (canonical JSON)."""
        return sha256_json(self.to_dict())


# The layout's fields as the key records them (flat, under the names they had before the
# layout was its own class: existing caches' keys stay valid).
_LAYOUT_KEYS = {"frames": "frames", "stride": "stride", "cache_clips": "clips"}


def _resolve_tracker_settings(tracker: str, settings: dict[str, Any]) -> dict[str, Any]:
    config_cls = TRACKERS.get(tracker).config
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ValueError(f"CacheSettings.tracker_settings: unknown setting(s) {unknown} for "
                         f"tracker {tracker!r}; valid: {sorted(names)}")
    if isinstance(settings.get("camera"), Mapping):  # FlowConfig.camera given as a dict
        from motionmae.motion.camera import CameraConfig

        settings["camera"] = CameraConfig(**settings["camera"])
    config = config_cls(**settings)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    resolved = dataclasses.asdict(config)
    try:
        return json.loads(json.dumps(resolved, sort_keys=True))
    except TypeError as error:
        raise ValueError(f"CacheSettings.tracker_settings: not JSON-serialisable: {error}") \
            from error


# --------------------------------------------------------------------------------------------
# The cache


class TrackCache:
    """Cached tracks under ``root`` for one :class:`CacheSettings`.

    Picklable (a path and the settings): hand it to data-loader workers and extract
    processes. Many readers and writers may use one root at once.

    Args:
        root: the cache folder (created on the first :meth:`put`).
        settings: a :class:`CacheSettings` or a mapping of its fields.
    """

    def __init__(self, root: str | Path, settings: CacheSettings | Mapping[str, Any]):
        self.root = Path(root)
        self.settings = CacheSettings.from_any(settings)
        self._settings_written = False

    def __repr__(self) -> str:
        return f"TrackCache({str(self.root)!r}, {self.settings})"

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root, self.settings = state["root"], state["settings"]
        self._settings_written = False

    # -- keys ------------------------------------------------------------------------------

    def key(self, video_path: str | Path) -> str:
        """sha256 hex of (absolute path, size, mtime_ns, settings). Raises ``OSError`` when
        the video cannot be stat'ed."""
        return video_key(video_path, {"settings": self.settings.to_dict()})

    def shard_path(self, key: str) -> Path:
        """``root/ab/abcdef....npz`` for key ``abcdef...``."""
        return shard_path(self.root, key)

    def contains(self, video_path: str | Path) -> bool:
        """Whether a shard exists for the video as it is now (not verified; see :meth:`get`).
        ``False`` when the video cannot be stat'ed."""
        try:
            return self.shard_path(self.key(video_path)).is_file()
        except OSError:
            return False

    # -- reading ---------------------------------------------------------------------------

    def get(self, video_path: str | Path) -> CachedTracks | None:
        """The video's cached tracks, verified, or ``None`` (a miss).

        A missing video or shard is a miss. A shard that fails to load or verify (truncated,
        flipped bytes, wrong checksum or key) is reported with ``logging.warning`` naming the
        file, deleted (unless a writer replaced it meanwhile), and is a miss.
        """
        try:
            key = self.key(video_path)
        except OSError:
            return None
        return read_shard(self.shard_path(key), key, CachedTracks.from_arrays, "track cache",
                          video_path)

    # -- writing ---------------------------------------------------------------------------

    def put(self, video_path: str | Path, tracks: CachedTracks, key: str | None = None) -> Path:
        """Store a video's tracks atomically (temp file + fsync + rename); returns the shard.

        ``key``: the video's :meth:`key` taken *before* reading it (default: now), so a video
        changed while it was being tracked is stored under its old, never-served key.
        """
        key = key or self.key(video_path)
        meta = {"version": FORMAT_VERSION, "key": key, "video": str(Path(video_path).resolve()),
                "settings": self.settings.to_dict()}
        path = self.shard_path(key)
        write_shard(path, tracks.arrays(), meta)
        if not self._settings_written:
            self._write_settings()
        return path

    def _write_settings(self) -> None:
        """Add this cache's settings to ``root/settings.json`` (``{fingerprint: settings}``).

        Descriptive only (keys already cover the settings); concurrent writers of different
        settings may drop one another's line, never tear the file.
        """
        path = self.root / "settings.json"
        fingerprint = self.settings.fingerprint()
        known = recorded_settings(self.root)
        if known.get(fingerprint) != self.settings.to_dict():
            known[fingerprint] = self.settings.to_dict()
            text = json.dumps(known, indent=2, sort_keys=True) + "\n"
            atomic_write_bytes(path, text.encode("utf-8"))
        self._settings_written = True


def recorded_settings(root: Path) -> dict[str, Any]:
    """``root/settings.json``: the settings of the entries under a cache folder, by
    fingerprint; ``{}`` when there is none or it cannot be read."""
    loaded: Any = None
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads((root / "settings.json").read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}

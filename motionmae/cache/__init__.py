"""The offline cache: entries computed once per video and read by training in the loader
workers (point tracks of a dense grid, teacher features), in one folder (``cache.path``).

What every cache shares lives here; what one cache's entries are lives with its component
(:mod:`motionmae.motion.cache` for tracks, :mod:`motionmae.targets.teacher_cache` for teacher
features):

* :mod:`~motionmae.cache.shards`: verified ``.npz`` files, their keys and paths;
* :mod:`~motionmae.cache.layout`: :class:`ClipLayout`, which clips of a video are cached and
  the training clips drawn from them;
* :mod:`~motionmae.cache.extraction`: the extraction driver (sharded, resumable, parallel, with
  progress) that ``extract-tracks`` and ``extract-teacher`` run their jobs on;
* :mod:`~motionmae.cache.config`: :class:`CacheConfig`, the ``cache`` section.
"""

from typing import TYPE_CHECKING, Any

from motionmae.cache.config import CacheConfig
from motionmae.cache.layout import ClipLayout
from motionmae.cache.shards import (
    FORMAT_VERSION,
    read_shard,
    sha256_json,
    shard_path,
    video_key,
    write_shard,
)

if TYPE_CHECKING:
    from motionmae.cache.extraction import (
        ExtractJob,
        ExtractStats,
        ProgressFn,
        extract,
        shard_videos,
    )

# Lazy: the driver imports OpenCV and the data package (torch); the cache's readers in the
# loader workers need neither.
_LAZY = ("ExtractJob", "ExtractStats", "ProgressFn", "extract", "shard_videos")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from motionmae.cache import extraction

        return getattr(extraction, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "FORMAT_VERSION",
    "CacheConfig",
    "ClipLayout",
    "ExtractJob",
    "ExtractStats",
    "ProgressFn",
    "extract",
    "read_shard",
    "sha256_json",
    "shard_path",
    "shard_videos",
    "video_key",
    "write_shard",
]

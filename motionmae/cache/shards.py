"""Shards: verified, atomically written ``.npz`` files, one per cache entry, and their keys.

The on-disk unit of every offline cache: the track cache
(:class:`~motionmae.motion.cache.TrackCache`, one shard per video) and the teacher feature
cache (:class:`~motionmae.targets.teacher_cache.TeacherFeatureCache`, one per cached clip).
Both share one folder: a shard lives at :func:`shard_path` (``root/ab/abcdef....npz``, a
2-character fan-out of its key) and the keys never collide (each cache hashes its own
record). A shard holds named arrays, a
``meta`` record (JSON as a uint8 array, with the format version and the key it was written
for) and a ``checksum`` (sha256 of every other array's name, dtype, shape and bytes). Keys
come from :func:`video_key`, so a changed video or setting is a miss, never a stale hit.
Writes go through a temporary file, fsync and rename; a shard that fails to load or verify
is reported, deleted and treated as a miss.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from motionmae.fileio import atomic_write_bytes

__all__ = ["FORMAT_VERSION", "read_shard", "sha256_json", "shard_path", "video_key",
           "write_shard"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile,
                zlib.error, json.JSONDecodeError, UnicodeDecodeError)

T = TypeVar("T")


def sha256_json(value: Any) -> str:
    """sha256 hex of ``value`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _checksum(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8).copy()


def video_key(video_path: str | Path, settings: Mapping[str, Any]) -> str:
    """sha256 hex of the video's absolute path, size and ``mtime_ns`` and of ``settings`` (a
    JSON-ready mapping merged into the hashed record). Raises ``OSError`` when the video cannot
    be stat'ed."""
    path = Path(video_path).resolve()
    stat = path.stat()
    return sha256_json({"video": str(path), "size": stat.st_size,
                        "mtime_ns": stat.st_mtime_ns, **settings})


def shard_path(root: Path, key: str) -> Path:
    """``root/ab/abcdef....npz`` for key ``abcdef...``."""
    return root / key[:2] / f"{key}.npz"


def write_shard(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                compress: bool = True) -> None:
    """Store ``arrays`` plus ``meta`` (JSON, as the uint8 array ``meta``; must hold ``version``
    and ``key``) and a ``checksum`` of all of them at ``path``: temp file + fsync + rename.
    ``compress=False`` skips zlib (float features barely compress and decompress slowly)."""
    payload = dict(arrays)
    payload["meta"] = np.frombuffer(json.dumps(dict(meta), sort_keys=True).encode("utf-8"),
                                    dtype=np.uint8)
    payload["checksum"] = _checksum(payload)
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **payload)
    atomic_write_bytes(path, buffer.getvalue())


def _verified_arrays(path: Path, key: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    stored = arrays.pop("checksum")
    if not np.array_equal(stored, _checksum(arrays)):
        raise ValueError("checksum mismatch")
    meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"format version {meta.get('version')}, expected {FORMAT_VERSION}")
    if meta.get("key") != key:
        raise ValueError("entry was written for another key")
    return arrays


def read_shard(path: Path, key: str, parse: Callable[[dict[str, np.ndarray]], T],
               what: str, video_path: str | Path) -> T | None:
    """``parse(arrays)`` of the shard :func:`write_shard` stored at ``path`` for ``key``, or
    ``None`` (a miss).

    A missing shard is a miss. A shard that fails to load, verify or parse (truncated, flipped
    bytes, wrong checksum or key) is reported with ``logging.warning`` naming the file and
    ``what`` holds it, deleted (unless a writer replaced it meanwhile), and is a miss.
    """
    try:
        before = path.stat()
    except FileNotFoundError:
        return None
    try:
        return parse(_verified_arrays(path, key))
    except _READ_ERRORS as error:
        if isinstance(error, FileNotFoundError):
            return None
        logger.warning("%s: corrupt entry %s for %s (%s: %s); deleting it, it will be "
                       "recomputed", what, path, video_path, type(error).__name__, error)
        _discard(path, before, what)
        return None


def _discard(path: Path, seen: os.stat_result, what: str) -> None:
    try:
        now = path.stat()
        if (now.st_ino, now.st_mtime_ns, now.st_size) == (seen.st_ino, seen.st_mtime_ns,
                                                           seen.st_size):
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        logger.warning("%s: cannot delete %s: %s", what, path, error)

"""Crash-safe file writing and content hashing, shared by checkpoints, caches, exports and a
training run's logs.

The writers here go through ``os.write`` and report a full disk (or a quota, or a read-only
file system) as the ``OSError`` it is, leaving no torn file behind; the caller, who knows what
the file is for, turns it into a :class:`StorageError` that says what is left and how to go on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from motionmae.errors import SetupError


class StorageError(SetupError):
    """A file could not be written (disk full, quota, read-only file system); the message
    names it and says what is left."""


def cannot_write(path: Path, error: OSError) -> str:
    """``could not write PATH: reason``, in the operating system's words (no ``[Errno N]``)."""
    return f"could not write {path}: {error.strerror or error}"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Persist a folder's entries (a rename into it); a no-op where folders can't be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, payload: bytes | memoryview) -> None:
    """Write every byte of ``payload`` to ``fd`` (``os.write`` may write fewer)."""
    view = memoryview(payload).cast("B")
    while view:
        view = view[os.write(fd, view):]


def write_file(path: Path, payload: bytes | memoryview) -> None:
    """Write ``payload`` as ``path`` (replacing it) and fsync it: for files inside a folder that
    becomes visible by rename once complete (a checkpoint's)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        _write_all(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def append_text(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` (created if missing). A write that fails (disk full) is
    undone, so the file never ends in a torn line; a killed process keeps every appended one."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            _write_all(fd, text.encode("utf-8"))
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, payload: bytes | memoryview) -> None:
    """Write ``payload`` to ``path`` by same-folder temp file, fsync and ``os.replace``: a
    reader sees the old file or the new one, never a torn one, whoever is killed when."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            _write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))

"""Crash-safe file writing, content hashing and folder locks, shared by checkpoints, caches,
exports, ``prepare`` and a training run's logs and folder.

The writers here go through ``os.write`` and report a full disk (or a quota, or a read-only
file system) as the ``OSError`` it is, leaving no torn file behind; the caller, who knows what
the file is for, turns it into a :class:`StorageError` that says what is left and how to go on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from motionmae.errors import USAGE, MotionMAEError, SetupError

log = logging.getLogger(__name__)


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
class FolderInUseError(MotionMAEError, RuntimeError):
    """Another process holds a folder's lock (:func:`exclusive`); the message names its PID and
    host. Exit status 2: the command asked for a folder that is busy."""

    exit_code = USAGE


@contextlib.contextmanager
def exclusive(lock: Path, busy: str, advice: str = "") -> Iterator[None]:
    """Hold the lock file ``lock`` for the block, or raise :class:`FolderInUseError`.

    An advisory ``flock``: the operating system releases it when the holder exits, however it
    exits (also SIGKILL), so a crash never leaves the folder locked. The file records the
    holder (PID, host, start time) for the message of a process that finds it taken: ``"{folder}:
    {busy} (PID 4242 on node1 since 2025-01-31 12:00:00); {advice}"``. A clean exit empties
    it; a record found in a free lock is a holder that died without releasing it, taken over
    with a warning naming it.
    """
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: trust the user
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+") as handle:  # "a+": opening must not erase the holder's record
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            tail = f"; {advice}" if advice else ""
            raise FolderInUseError(
                f"{lock.parent}: {busy} ({_holder_text(lock)}){tail}") from None
        try:
            previous = _read_holder(handle)
            if previous:
                log.warning("%s: taking over the lock of %s, which ended without releasing "
                            "it (killed or crashed)", lock.parent, _describe(previous))
            _write_holder(handle, {"pid": os.getpid(), "host": socket.gethostname(),
                                   "since": time.strftime("%Y-%m-%d %H:%M:%S")})
            yield
        finally:
            _write_holder(handle, None)  # a clean exit leaves no holder behind
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_holder(lock: Path) -> str | None:
    """Who holds ``lock`` now (``PID 4242 on node1 since ...``), or ``None`` when nobody does;
    asks without writing anything (a read-only probe of :func:`exclusive`'s lock)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        handle = lock.open()
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_text(lock)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _read_holder(handle: IO[str]) -> dict | None:
    handle.seek(0)
    text = handle.read().strip()
    if not text:
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _write_holder(handle: IO[str], holder: dict | None) -> None:
    handle.seek(0)
    handle.truncate()
    if holder is not None:
        handle.write(json.dumps(holder))
    handle.flush()


def _holder_text(lock: Path) -> str:
    """Who holds ``lock``, read from its record; the holder writes it just after taking the
    lock, so an empty record is read again for a moment."""
    for _ in range(10):
        with contextlib.suppress(OSError), lock.open() as handle:
            holder = _read_holder(handle)
            if holder is not None:
                return _describe(holder)
        time.sleep(0.05)
    return "holder unknown: its lock file records no PID"


def _describe(holder: dict) -> str:
    """``PID 4242 on node1 since 2025-01-31 12:00:00`` (what the record has of it)."""
    parts = [f"PID {holder.get('pid', '?')}"]
    if holder.get("host"):
        parts.append(f"on {holder['host']}")
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    return " ".join(parts)

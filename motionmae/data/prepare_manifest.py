"""The state that makes ``motionmae prepare`` resumable: ``out/manifest.json`` and its lock.

The manifest maps each prepared output (its path relative to ``out``) to an entry: the source
path, size and modification time, the settings, the output's size and sha256 and what was
encoded. It is rewritten atomically (:func:`write_manifest`), so a reader sees the old or the
new one; an unreadable or foreign one means every video is prepared again. One ``prepare`` at
a time per ``out``: :func:`exclusive` holds ``out/.prepare.lock`` (an advisory lock the OS
releases if the process dies).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from motionmae.errors import SetupError
from motionmae.fileio import atomic_write_bytes

__all__ = ["LOCK_FILE", "MANIFEST", "MANIFEST_VERSION", "exclusive", "read_manifest",
           "write_manifest"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
LOCK_FILE = ".prepare.lock"


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


def write_manifest(out: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Replace ``out/manifest.json`` with ``entries``, atomically."""
    payload = {"version": MANIFEST_VERSION, "entries": entries}
    atomic_write_bytes(out / MANIFEST, json.dumps(payload, separators=(",", ":")).encode())


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
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
            raise SetupError(f"{out}: another motionmae prepare is writing here") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Run one ``motionmae`` command on a disk that is full for some files: a write to a file whose
name matches PATTERN fails with ``OSError(ENOSPC)`` (after half of its bytes are written, as a
full disk leaves a torn file), every later one too (a full disk stays full); other files are
written normally. The chaos check (``benchmarks/chaos.py``) runs the command through this
wrapper; nothing in the library knows about it.

Usage::

    python benchmarks/chaos_enospc.py PATTERN [--after N] -- pretrain --data L --out RUN ...

PATTERN is a regular expression searched in the file's name (``state\\.pt$``, ``latest``);
``--after N`` lets the first N matching writes through. Writes are caught where Python opens a
file (``open``, ``io.open``, ``os.open`` + ``os.fdopen`` or ``os.write``: ``Path.write_text``,
append handles, ``tempfile.mkstemp``, descriptors written directly) and where the native
writers are called (``torch.save``, ``safetensors.torch.save_file``: they write from C). On
exit one line on stderr says how many writes were refused, so the caller can tell a command
that never wrote the file.
"""

from __future__ import annotations

import argparse
import builtins
import errno
import io
import os
import re
import sys
from pathlib import Path
from typing import Any

_real_open = io.open
_real_os_open = os.open
_real_os_write = os.write
_real_os_close = os.close


class FullDisk:
    """Which writes fail: the ones to a matching name after the first ``after``."""

    def __init__(self, pattern: str, after: int) -> None:
        self.pattern = re.compile(pattern)
        self.after = after
        self.matched = 0
        self.refused = 0
        self.fd_paths: dict[int, str] = {}  # os.open'd descriptors of matching names

    def matches(self, path: Any) -> bool:
        try:
            name = os.path.basename(os.fsdecode(os.fspath(path)))
        except TypeError:
            return False
        return bool(self.pattern.search(name))

    def write_fails(self) -> bool:
        """Count one matching write; whether it fails."""
        self.matched += 1
        failed = self.matched > self.after
        self.refused += failed
        return failed

    def error(self, path: Any) -> OSError:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(os.fspath(path)))


class _FullFile:
    """A writable file of a matching name whose writes hit the full disk."""

    def __init__(self, handle: Any, path: Any, disk: FullDisk) -> None:
        self._handle, self._path, self._disk = handle, path, disk

    def write(self, data: Any) -> int:
        if self._disk.write_fails():
            self._handle.write(data[: len(data) // 2])
            self._handle.flush()
            raise self._disk.error(self._path)
        return self._handle.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __iter__(self) -> Any:
        return iter(self._handle)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def _writes(mode: str) -> bool:
    return any(flag in mode for flag in "wax+")


def install(disk: FullDisk) -> None:
    """Patch the file-writing entry points for ``disk``'s pattern (before the command runs)."""
    import safetensors.torch
    import torch

    def patched_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = _real_open(file, mode, *args, **kwargs)
        path = disk.fd_paths.pop(file, None) if isinstance(file, int) else file
        if path is not None and _writes(mode) and disk.matches(path):
            return _FullFile(handle, path, disk)
        return handle

    def patched_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = _real_os_open(path, flags, *args, **kwargs)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and disk.matches(path):
            disk.fd_paths[fd] = path
        return fd

    def patched_os_write(fd: int, data: Any) -> int:
        path = disk.fd_paths.get(fd)
        if path is not None and disk.write_fails():
            view = memoryview(data).cast("B")
            _real_os_write(fd, view[: len(view) // 2])
            raise disk.error(path)
        return _real_os_write(fd, data)

    def patched_os_close(fd: int) -> None:
        disk.fd_paths.pop(fd, None)
        _real_os_close(fd)

    def native(real: Any, target_name: str) -> Any:
        """A native writer (target: its second argument) that leaves half a file and raises
        when its target matches."""

        def patched(*args: Any, **kwargs: Any) -> Any:
            target = args[1] if len(args) > 1 else kwargs.get(target_name)
            result = real(*args, **kwargs)
            if isinstance(target, (str, os.PathLike)) and disk.matches(target) \
                    and disk.write_fails():
                size = Path(target).stat().st_size
                os.truncate(target, size // 2)
                raise disk.error(target)
            return result

        return patched

    builtins.open = io.open = patched_open
    os.open = patched_os_open
    os.write = patched_os_write
    os.close = patched_os_close
    torch.save = native(torch.save, "f")
    safetensors.torch.save_file = native(safetensors.torch.save_file, "filename")


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pattern")
    parser.add_argument("--after", type=int, default=0)
    args = parser.parse_args(argv[:split])
    disk = FullDisk(args.pattern, args.after)
    install(disk)
    from motionmae.cli import main as motionmae_main  # after the patches: it binds writers

    try:
        return motionmae_main(argv[split + 1:])
    finally:
        print(f"chaos-enospc: refused {disk.refused} of {disk.matched} write(s) matching "
              f"{args.pattern!r}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

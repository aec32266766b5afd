"""Errors a user can cause, and the exit status the ``motionmae`` command gives each kind.

Library code raises these (or the well-known types :func:`classify` maps) with a message that
names the file or the config key; the CLI's single entry point turns them into one line on
stderr, ``motionmae <command>: error: <message>``, and the exit status below. Anything else is
a bug: its traceback is shown (exit 1). ``--debug`` or ``MOTIONMAE_DEBUG=1`` shows the
traceback of every error.

Exit status:

==== =====================================================================================
0    success
1    internal error (a bug): the traceback is shown
2    usage: a flag, an option combination, a config key or value; a folder another process
     holds (``motionmae.fileio.FolderInUseError``), a run folder that already holds a run
3    data: a video, list, dataset spec, checkpoint, teacher or CoTracker folder is missing,
     unreadable or damaged; too many bad videos in a run
4    environment: a missing optional package, an unusable output folder, a full disk
5    training stopped: too many consecutive non-finite steps
143  preempted (SIGTERM): a checkpoint was saved, continue with ``--resume``
==== =====================================================================================
"""

from __future__ import annotations

INTERNAL = 1
USAGE = 2
DATA = 3
ENVIRONMENT = 4
DIVERGED = 5


class MotionMAEError(Exception):
    """An error the user can fix; ``exit_code`` is the command's exit status."""

    exit_code = INTERNAL


class UsageError(MotionMAEError, ValueError):
    """A flag, an option combination or a config value is wrong; the message names it."""

    exit_code = USAGE


class DataError(MotionMAEError, RuntimeError):
    """Input data is missing, unreadable or too often bad; the message names the file."""

    exit_code = DATA


class SetupError(MotionMAEError, RuntimeError):
    """The environment is not usable: an output folder that cannot be written, no space."""

    exit_code = ENVIRONMENT


class NonFiniteLossError(MotionMAEError, RuntimeError):
    """Too many consecutive training steps had a non-finite loss or gradient."""

    exit_code = DIVERGED


def classify(error: BaseException) -> tuple[int, str] | None:
    """``(exit status, one-line message)`` of an error the user caused; ``None`` for a bug.

    The project's own errors (config, list, spec, video, checkpoint, output folder, non-finite
    training) are :class:`MotionMAEError` subclasses carrying their status; besides them,
    missing files and FFmpeg errors are data errors and missing optional packages
    environment errors. Messages re-raised from a ``DataLoader`` worker
    (which carry the worker's traceback as text) are cut to their last line.
    """
    import av  # imported here: the CLI imports it lazily

    if isinstance(error, MotionMAEError):
        code = error.exit_code
    elif isinstance(error, (av.FFmpegError, FileNotFoundError, IsADirectoryError,
                            NotADirectoryError, PermissionError)):
        code = DATA
    elif isinstance(error, ImportError) and not (error.name or "").startswith("motionmae"):
        code = ENVIRONMENT  # a missing optional package (our own modules failing is a bug)
    else:
        return None
    return code, message(error)


def message(error: BaseException) -> str:
    """One line saying what is wrong, naming the file when the error knows it."""
    text = str(error).strip()
    if "Original Traceback" in text:  # re-raised by a DataLoader worker: keep the last line
        last = text.splitlines()[-1]
        head, sep, rest = last.partition(": ")
        text = rest if sep and "." in head and " " not in head else last
    filename = getattr(error, "filename", None)
    if isinstance(error, OSError) and filename is not None and (
            str(filename) not in text or text.startswith("[Errno")):
        text = f"{filename}: {error.strerror or text}"  # not "[Errno 2] ...: 'path'"
    return text or type(error).__name__

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
     unreadable or damaged, or a file that only arbitrary code could read (refused); too
     many bad videos in a run
4    environment: a missing optional package, an unusable output folder (or an output
     path that is an existing file), a full disk
5    training stopped: too many consecutive non-finite steps
130  interrupted (Ctrl-C): a training command saved a checkpoint first (continue with
     ``--resume``); a second Ctrl-C quits at once
143  preempted (SIGTERM): a checkpoint was saved, continue with ``--resume``
==== =====================================================================================
"""

from __future__ import annotations

import pickle
from pathlib import Path

INTERNAL = 1
USAGE = 2
DATA = 3
ENVIRONMENT = 4
DIVERGED = 5
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
PREEMPTED = 143  # 128 + SIGTERM: a scheduler sees the job was preempted, not that it failed


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


class UnsafeFileError(DataError, pickle.UnpicklingError):
    """A file that only arbitrary code could read back (a pickle of Python objects): refused.

    Still an ``UnpicklingError`` for callers that catch what ``torch.load`` raises."""


def unpickling_error(path: str | Path, error: pickle.UnpicklingError) -> DataError:
    """The one-line error of a file ``torch.load(weights_only=True)`` could not read:
    :class:`UnsafeFileError` when it holds Python objects (refused), else a
    :class:`DataError` (not a PyTorch checkpoint)."""
    reason = unpickling_reason(error)
    return (UnsafeFileError if _offending_global(error) else DataError)(f"{path}: {reason}")


def unpickling_reason(error: pickle.UnpicklingError) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line (torch's own message is a
    paragraph of advice around the offending global or opcode)."""
    offending = _offending_global(error)
    if offending is not None:
        return ("refused to load: the file holds Python objects that only arbitrary code "
                f"could rebuild ({offending}), and it is read with "
                "torch.load(weights_only=True). Convert a file you trust to plain tensors "
                "(safetensors) first")
    lines = _lines(error)
    marker = "WeightsUnpickler error:"
    at = next((i for i, line in enumerate(lines) if marker in line), None)
    detail = lines[0] if lines else ""
    if at is not None:
        detail = lines[at].split(marker, 1)[1].strip() or next(
            (line for line in lines[at + 1:] if not line.startswith("Check the")), detail)
    return "not a PyTorch checkpoint" + (f" ({detail})" if detail else "")


def _lines(error: BaseException) -> list[str]:
    return [line.strip() for line in str(error).splitlines() if line.strip()]


def _offending_global(error: pickle.UnpicklingError) -> str | None:
    """torch's line naming the global a weights-only load refused, without its advice on
    allow-listing it; None when no global was refused."""
    line = next((line for line in _lines(error) if "GLOBAL" in line), None)
    if line is None:
        return None
    line = line.split("WeightsUnpickler error:", 1)[-1].strip()
    return line.split(". ", 1)[0].rstrip(".")


class NonFiniteLossError(MotionMAEError, RuntimeError):
    """Too many consecutive training steps had a non-finite loss or gradient."""

    exit_code = DIVERGED


def classify(error: BaseException) -> tuple[int, str] | None:
    """``(exit status, one-line message)`` of an error the user caused; ``None`` for a bug.

    The project's own errors (config, list, spec, video, checkpoint, output folder, non-finite
    training) are :class:`MotionMAEError` subclasses carrying their status; besides them,
    missing files and FFmpeg errors are data errors and missing optional packages
    environment errors, and an output path that exists but is not a folder (``mkdir`` of an
    ``--out`` that is a file) an environment error. A file ``torch.load(weights_only=True)``
    refused (when the loader did not name it) is a data error. Messages re-raised from a
    ``DataLoader`` worker (which carry the worker's traceback as text) are cut to their last
    line.
    """
    import av  # imported here: the CLI imports it lazily

    if isinstance(error, MotionMAEError):
        code = error.exit_code
    elif isinstance(error, FileExistsError):
        code = ENVIRONMENT
    elif isinstance(error, pickle.UnpicklingError) and "weights only" in str(error).lower():
        return DATA, unpickling_reason(error)
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
    if isinstance(error, FileExistsError) and filename is not None:
        if not Path(filename).is_dir():  # mkdir of an output folder (or its parent)
            return f"{filename} is a file, not a folder: choose another output path"
        return f"{filename} already exists"
    if isinstance(error, OSError) and filename is not None and (
            str(filename) not in text or text.startswith("[Errno")):
        text = f"{filename}: {error.strerror or text}"  # not "[Errno 2] ...: 'path'"
    return text or type(error).__name__

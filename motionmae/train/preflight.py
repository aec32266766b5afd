"""Checks of a run's output folder before any training: it can be written, and it has room
for the run's checkpoints. A run that would die at its first checkpoint, hours in, fails in
its first second instead, saying why."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch

from motionmae.errors import SetupError

# A checkpoint's state.pt and manifest add a little to the tensors' bytes.
_OVERHEAD = 1.05
_SLACK = 1 << 20


class OutputFolderError(SetupError):
    """The output folder cannot hold the run (not writable, or not enough free space)."""


def prepare_output_folder(folder: Path) -> None:
    """Create ``folder`` (and parents) and prove a file can be written there.

    Raises:
        OutputFolderError: naming the folder and the operating system's reason.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A name of its own: two processes probing one folder must not delete each other's.
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"0" * 4096)
        os.unlink(probe)
    except OSError as error:
        raise OutputFolderError(f"output folder {folder} is not writable: {error}") from error


def checkpoint_bytes(tensors: Iterable[torch.Tensor], trainable: Iterable[torch.Tensor],
                     moments: int = 2) -> int:
    """Estimated size of one checkpoint: the weights (``tensors``, the full state dict) plus
    ``moments`` optimizer tensors per trainable parameter (AdamW keeps two)."""
    weights = sum(t.numel() * t.element_size() for t in tensors)
    optimizer = moments * sum(p.numel() * p.element_size() for p in trainable)
    return weights + optimizer


def check_free_space(folder: Path, one_checkpoint: int, copies: int) -> None:
    """Raise unless ``folder``'s file system has room for ``copies`` more checkpoints of
    about ``one_checkpoint`` bytes.

    Raises:
        OutputFolderError: with the free and needed sizes and what to do.
    """
    need = int(copies * one_checkpoint * _OVERHEAD) + _SLACK
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OutputFolderError(
            f"not enough free space for checkpoints in {folder}: {free / 1e6:.1f} MB free, "
            f"about {need / 1e6:.1f} MB needed ({copies} checkpoint(s) of "
            f"~{one_checkpoint / 1e6:.1f} MB: a new checkpoint is written in full before the "
            f"previous one is deleted). Free some space or choose another run.out.")

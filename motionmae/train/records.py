"""What a training run records besides checkpoints: ``RUN/env.json`` (the machine), and where
the logged records (the means of a :class:`~motionmae.train.step.Window` of steps) go on
rank 0: ``RUN/metrics.jsonl`` (one JSON line each, trimmed back to the checkpoint on resume), the
caller's ``on_log``, TensorBoard (``run.tensorboard``) and Weights & Biases (``run.wandb``).

A resumed run writes the same records as an uninterrupted one, step for step, except the
:data:`WALL_CLOCK_FIELDS`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from motionmae.config import RunConfig
from motionmae.environment import machine_environment
from motionmae.fileio import StorageError, append_text, atomic_write_text, cannot_write
from motionmae.train.preflight import OutputFolderError
from motionmae.train.tensorboard import TensorBoardWriter
from motionmae.train.wandb_logger import WandbLogger

METRICS_FILE = "metrics.jsonl"
# Fields of a record that measure the clock, not the training: the only ones that differ
# between a resumed run and an uninterrupted one (or two runs of the same seed).
WALL_CLOCK_FIELDS = frozenset({"time", "clips_per_s"})


def write_environment(path: Path, device: torch.device, world_size: int) -> None:
    """Record the machine this run trains on (rewritten on resume: the latest machine).

    Raises:
        OutputFolderError: the file cannot be written (disk full).
    """
    values = machine_environment()
    values["device"] = (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else str(device))
    values["world size"] = world_size
    values["torch threads"] = torch.get_num_threads()
    _rewrite(path, json.dumps(values, indent=1))


def trim_metrics(path: Path, step: int) -> None:
    """Drop records after ``step`` (and a torn last line) left by a run that died after
    logging but before checkpointing, so a resumed run's log has each step once.

    Raises:
        OutputFolderError: the file cannot be rewritten (disk full).
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= step:
            kept.append(line)
    _rewrite(path, "".join(f"{line}\n" for line in kept))


def _rewrite(path: Path, text: str) -> None:
    """Replace a file of the run folder atomically, before training starts."""
    try:
        atomic_write_text(path, text)
    except OSError as error:
        raise OutputFolderError(cannot_write(path, error)) from error


class RecordSinks:
    """The record writers of one run: all of them on rank 0 (``main``), none elsewhere."""

    def __init__(self, out_dir: Path, run: RunConfig, *, main: bool, resume: bool,
                 on_log: Callable[[dict[str, Any]], None] | None) -> None:
        # W&B first: a missing package fails before TensorBoard starts an event file.
        self.remote = WandbLogger(out_dir, run, resume=resume) if run.wandb and main else None
        self.scalars = (TensorBoardWriter(out_dir / "tensorboard")
                        if run.tensorboard and main else None)
        self.metrics = out_dir / METRICS_FILE if main else None
        self.on_log = on_log

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` everywhere it goes (a crash keeps every logged line).

        Raises:
            StorageError: ``metrics.jsonl`` cannot be appended to (disk full); it is as it was.
        """
        if self.metrics is not None:
            try:
                append_text(self.metrics, json.dumps(record) + "\n")
            except OSError as error:
                raise StorageError(cannot_write(self.metrics, error)) from error
            if self.on_log is not None:
                self.on_log(record)
        if self.scalars is not None:
            self.scalars.write(record)
        if self.remote is not None:
            self.remote.write(record)

    def close(self, *, failed: bool) -> None:
        """Close every writer; ``failed`` (an exception on its way out) marks the W&B run."""
        if self.scalars is not None:
            self.scalars.close()
        if self.remote is not None:
            self.remote.close(failed=failed)

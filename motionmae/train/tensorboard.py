"""TensorBoard scalars of the training loop's logged records (``run.tensorboard: true``).

The loop writes each record to ``RUN/metrics.jsonl`` and, with this option, every numeric
entry of it as a scalar at the record's ``step`` into ``RUN/tensorboard/`` (rank 0 only), so
``tensorboard --logdir runs/`` shows the runs live. Names are kept (``loss/pixel`` appears
as ``pixel`` under ``loss``). A resumed run appends a new event file; steps logged after the
last checkpoint of the interrupted run (dropped from ``metrics.jsonl``) stay in the old file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SKIPPED = ("step", "time")  # the x axis, and a wall clock the logging tools keep themselves


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """Every int/float entry of a logged record but ``step`` and ``time`` (also what
    :mod:`motionmae.train.wandb_logger` logs)."""
    return {name: value for name, value in record.items()
            if name not in SKIPPED and isinstance(value, int | float)}


class TensorBoardWriter:
    """Write logged records as TensorBoard scalars into ``log_dir``."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch's writer needs the tensorboard package
            raise ImportError("run.tensorboard: needs the tensorboard package "
                              "(pip install 'motionmae[tensorboard]')") from error
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, record: dict[str, Any]) -> None:
        """:func:`scalars` of ``record`` at ``record["step"]``; flushed, so the file is current
        at every logging interval."""
        step = int(record["step"])
        for name, value in scalars(record).items():
            self._writer.add_scalar(name, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

"""One owner per run folder, and what a training command does with a folder that already
holds a run.

A run folder *holds a run* when it has any of ``config.yaml``, ``metrics.jsonl`` or
``checkpoints/``. :func:`claim_run_folder` (the ``pretrain`` and ``finetune`` commands hold it
around the whole run) decides what a new process does with it:

- neither ``resume`` nor ``overwrite``: a folder holding a run is refused (exit 2, naming
  ``--resume`` and ``--overwrite``), so a second run never mixes its config, metrics and
  checkpoints into the first one's;
- ``overwrite``: the run's own files (:data:`RUN_FILES`) are deleted, other files are left,
  and the run starts at step 0;
- ``resume``: continue from the newest checkpoint; a folder without one (the job stopped
  before its first checkpoint) starts at step 0, one without a run starts a new run. So the
  same command, with ``--resume``, starts a job and continues it after every requeue.

And one process at a time: rank 0 holds ``RUN/.run.lock`` (:func:`motionmae.fileio.exclusive`)
for the run's life; a second process exits 2 naming the holder's PID and host. The lock goes
with its process however it ends; the lock file of a killed run is taken over with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from motionmae.checkpoints.format import list_checkpoints
from motionmae.config_loading import to_dict
from motionmae.data.badvideos import FILE_NAME as BAD_VIDEOS_FILE
from motionmae.errors import UsageError
from motionmae.fileio import (
    FolderInUseError,
    StorageError,
    atomic_write_bytes,
    cannot_write,
    exclusive,
    lock_holder,
)
from motionmae.train.distributed import DistInfo, any_across_ranks
from motionmae.train.preflight import prepare_output_folder
from motionmae.train.records import METRICS_FILE
from motionmae.train.wandb_logger import RUN_ID_FILE

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
CHECKPOINTS = "checkpoints"
LOCK_FILE = ".run.lock"
BUSY, WAIT = ("another training run is writing here",
              "wait for it to end, or train into another --out")
# Any of these makes a folder hold a run.
RUN_MARKERS = (CONFIG_FILE, METRICS_FILE, CHECKPOINTS)
# Everything a run writes into its folder, and what motionmae writes there about it (the
# fine-tuning evaluation, probe results, the report): what --overwrite deletes.
RUN_FILES = (*RUN_MARKERS, "env.json", BAD_VIDEOS_FILE, "tensorboard", "wandb", RUN_ID_FILE,
             "eval", "report")


def write_run_config(out_dir: Path, config: Any) -> None:
    """Write the resolved ``config`` as ``RUN/config.yaml`` (atomically: a run killed at any
    moment leaves a readable one for ``--resume``), after checking the folder can be written."""
    prepare_output_folder(out_dir)
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    try:
        atomic_write_bytes(out_dir / CONFIG_FILE, text.encode("utf-8"))
    except OSError as error:  # e.g. disk full: the temporary file is gone, no config.yaml
        raise StorageError(cannot_write(out_dir / CONFIG_FILE, error)) from error


def run_files(folder: Path) -> list[str]:
    """The names of :data:`RUN_MARKERS` present in ``folder``: empty when it holds no run."""
    return [name for name in RUN_MARKERS if (folder / name).exists()]


@contextlib.contextmanager
def claim_run_folder(folder: Path, *, resume: bool, overwrite: bool,
                     dist: DistInfo | None = None) -> Iterator[bool]:
    """Own ``folder`` for the ``with`` block; yields whether to resume from a checkpoint.

    Rank 0 takes the lock and applies the module's rules; every rank learns the outcome (also
    a failure, so no rank waits for a rank that gave up).

    Raises:
        FolderInUseError: another process holds the lock (its PID and host named).
        UsageError: the folder holds a run and neither ``resume`` nor ``overwrite`` is set.
    """
    if resume and overwrite:
        raise UsageError("--resume continues the run in the folder, --overwrite deletes it: "
                         "give one of them")
    dist = dist or DistInfo()
    created = not folder.exists()
    with contextlib.ExitStack() as held:
        problem: Exception | None = None
        from_checkpoint = False
        if dist.is_main:
            if created:  # a run that fails before writing anything leaves no folder behind
                held.callback(_remove_if_untouched, folder)
            try:
                if not (resume or overwrite):  # refused before the lock writes anything
                    _refuse_a_run(folder)
                prepare_output_folder(folder)
                held.enter_context(exclusive(folder / LOCK_FILE, BUSY, WAIT))
                from_checkpoint = _start(folder, resume, overwrite)
            except Exception as error:  # raised below, after the other ranks hear of it
                problem = error
        if any_across_ranks(problem is not None, dist):
            raise problem or UsageError(f"rank 0 could not start the run in {folder}: "
                                        "see its error")
        yield any_across_ranks(from_checkpoint, dist)


def _remove_if_untouched(folder: Path) -> None:
    """Remove ``folder``, made by :func:`claim_run_folder`, if it holds nothing but the lock."""
    if {path.name for path in folder.iterdir()} <= {LOCK_FILE}:
        shutil.rmtree(folder, ignore_errors=True)


def _refuse_a_run(folder: Path) -> None:
    """Raise :class:`UsageError` if ``folder`` holds a run (naming ``--resume`` and
    ``--overwrite``)."""
    present = run_files(folder)
    holder = lock_holder(folder / LOCK_FILE) if present else None
    if holder is not None:  # the run is going on: say who runs it
        raise FolderInUseError(f"{folder}: {BUSY} ({holder}); {WAIT}")
    if present:
        raise UsageError(f"{folder} already holds a run ({', '.join(present)}): continue it "
                         "with --resume, or delete it and start again with --overwrite")


def _start(folder: Path, resume: bool, overwrite: bool) -> bool:
    """Apply the rules to a folder this process owns; whether to resume from a checkpoint."""
    present = run_files(folder)
    if overwrite:
        removed = _delete_run(folder)
        if removed:
            log.warning("--overwrite: deleted the previous run's %s in %s", ", ".join(removed),
                        folder)
        return False
    if not resume:
        _refuse_a_run(folder)  # again under the lock: a run may have started meanwhile
        return False
    if list_checkpoints(folder / CHECKPOINTS):
        return True
    if present:
        # Stopped before its first checkpoint: its config (read by the caller) is kept, what
        # the stopped attempt logged goes, so that each step is recorded once.
        _delete_run(folder, keep=(CONFIG_FILE,))
        log.warning("--resume: %s has no checkpoint yet: starting at step 0 with its %s",
                    folder, CONFIG_FILE)
    else:
        log.warning("--resume: %s holds no run yet: starting a new one", folder)
    return False


def _delete_run(folder: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """Delete the :data:`RUN_FILES` in ``folder`` but ``keep``; returns the names deleted."""
    removed = []
    for name in RUN_FILES:
        path = folder / name
        if name in keep or not (path.exists() or path.is_symlink()):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(name)
    return removed

"""Checkpoints that survive a crash at any moment.

Layout of a run folder::

    RUN/checkpoints/step_00000500/model.safetensors   weights (safetensors)
                                  config.json         what the weights are (model, grid, run)
                                  state.pt            optimizer, train state (step, epoch,
                                                      data position, counts, log window)
                                  manifest.json       sha256 + size of the files above
    RUN/checkpoints/latest                            name of the newest complete checkpoint

``state.pt`` holds no RNG state: every draw is seeded from the run's seed and where the run
is (the data order from ``(seed, epoch)``, a sample's augmentation from ``(seed, epoch,
index)``, a step's masks and module randomness from ``(seed, step, micro-batch, rank)``), so
a resumed run redraws what an uninterrupted run would have drawn.

A checkpoint is written into a temporary folder, fsynced, verified and renamed into place, and
only then is ``latest`` replaced (also by rename). A process killed at any point leaves either
the previous checkpoint as ``latest`` or the new one, never a half-written folder that a resume
would read: on load every file is checked against the manifest, and the newest folder that
passes wins (a damaged newest one is passed over with a warning; a complete one the pointer
never reached is used). A write that fails (disk full) raises ``OSError`` and leaves the
folder as it was: no temporary files, ``latest`` on the previous checkpoint.
:func:`recover_latest` is what a resume reads: the folder cleared of what killed writes left,
``latest`` on the newest complete checkpoint. What ``state.pt`` holds is the training loop's
(:mod:`motionmae.train.save_resume`); this module only writes, verifies and finds the files.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from motionmae.errors import DataError, unpickling_error
from motionmae.fileio import (
    StorageError,
    atomic_write_text,
    cannot_write,
    fsync_dir,
    sha256_file,
    write_file,
)

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "state.pt"
MANIFEST = "manifest.json"
LATEST = "latest"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
# What a write killed midway leaves: save_checkpoint's temporary folders and
# atomic_write_text's temporary `latest`.
_LEFTOVER = re.compile(rf"^\.(step_\d{{8}}|{LATEST})\..+\.tmp$")


class CheckpointError(DataError):
    """A checkpoint is missing, incomplete or fails its integrity check."""


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder on disk."""

    path: Path

    @property
    def step(self) -> int:
        match = _STEP_DIR.match(self.path.name)
        return int(match.group(1)) if match else -1

    def config(self) -> dict[str, Any]:
        return json.loads((self.path / CONFIG).read_text())

    def weights(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        return load_file(str(self.path / WEIGHTS), device=str(device))

    def state(self) -> dict[str, Any]:
        """Training state, loaded with ``weights_only=True`` (never unpickles code)."""
        path = self.path / STATE
        if not path.exists():
            raise CheckpointError(f"{self.path} has no training state ({STATE}); cannot resume")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # one line naming the file, not torch's essay
            raise unpickling_error(path, error) from error


def verify(folder: Path) -> None:
    """Raise :class:`CheckpointError` unless every file matches ``manifest.json``."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{folder}: no {MANIFEST}; the checkpoint is incomplete")
    try:
        files = json.loads(manifest_path.read_text())["files"]
        expected = {name: (int(entry["size"]), str(entry["sha256"]))
                    for name, entry in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # bytes flipped in it
        raise CheckpointError(f"{folder}: {MANIFEST} is corrupt ({error!r})") from error
    for name, (size, digest) in expected.items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"{folder}: {name} is missing")
        if file.stat().st_size != size or sha256_file(file) != digest:
            raise CheckpointError(f"{folder}: {name} does not match its checksum (corrupt)")


def save_checkpoint(
    root: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
) -> Checkpoint:
    """Atomically write checkpoint ``step`` under ``root`` (``RUN/checkpoints``) and mark it latest.

    Args:
        weights: name -> tensor (copied to CPU, made contiguous).
        config: JSON-serialisable description (model config, grid, run info).
        state: training state for exact resume (tensors, numbers, strings, nested dicts/lists);
            saved with ``torch.save`` and loaded with ``weights_only=True``.

    Raises:
        OSError: a file could not be written (disk full); the folder is as it was before.
        CheckpointError: the files read back differ from what was written.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    # Serialised here and written by write_file, one file at a time (one copy in memory):
    # torch.save and safetensors' save_file report a failed write as RuntimeError or
    # SafetensorError (torch.save twice over), not as the OSError it is.
    payloads: dict[str, Callable[[], bytes | memoryview]] = {
        WEIGHTS: lambda: safetensors_bytes(
            {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}),
        CONFIG: lambda: json.dumps(config, indent=2, sort_keys=True).encode(),
    }
    if state is not None:
        payloads[STATE] = lambda: _torch_bytes(state)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        files = {}
        for name, serialise in payloads.items():
            payload = serialise()
            write_file(tmp / name, payload)
            files[name] = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
            del payload
        manifest = {"step": step, "files": dict(sorted(files.items()))}
        write_file(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
        fsync_dir(tmp)
        verify(tmp)  # read back: what is on disk is what was meant
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        mark_latest(final)
    except BaseException:
        # It never became latest: without it the previous checkpoint is the newest again.
        shutil.rmtree(final, ignore_errors=True)
        raise
    return Checkpoint(final)


def _torch_bytes(state: dict[str, Any]) -> memoryview:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer()


def list_checkpoints(root: Path) -> list[Checkpoint]:
    """Complete-looking checkpoint folders under ``root``, oldest first (not yet verified)."""
    if not root.is_dir():
        return []
    found = [Checkpoint(p) for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda c: c.step)


def read_latest(root: Path) -> str | None:
    """The folder name the ``latest`` pointer under ``root`` holds; None if missing or
    unreadable."""
    try:
        return (root / LATEST).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def mark_latest(folder: Path) -> None:
    """Point ``latest`` (beside ``folder``) at ``folder``, atomically.

    Raises:
        OSError: the pointer could not be written (disk full); it is as it was.
    """
    atomic_write_text(folder.parent / LATEST, folder.name + "\n")


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The newest checkpoint under ``root`` that passes verification, or None.

    Each newer folder passed over is logged as a warning naming it and what is wrong; so is a
    ``latest`` pointer that names none of them (missing, damaged, or behind a complete
    checkpoint written just before the run was killed: that one is used).
    """
    passed_over = []
    for checkpoint in reversed(list_checkpoints(root)):
        try:
            verify(checkpoint.path)
        except CheckpointError as error:
            log.warning("passing over the damaged checkpoint %s", error)
            passed_over.append(checkpoint.path.name)
            continue
        named = read_latest(root)
        if named != checkpoint.path.name and named not in passed_over:
            log.warning("%s names %s; the newest complete checkpoint is %s: using it",
                        root / LATEST, repr(named) if named else "nothing readable",
                        checkpoint.path.name)
        return checkpoint
    return None


def recover_latest(root: Path) -> Checkpoint | None:
    """The checkpoint a resume continues from (None if there is none), with ``root`` repaired
    for it: what killed writes left is removed (each logged), damaged checkpoints newer than
    it are renamed ``step_N.damaged`` (else they would count among the ``keep_last`` kept
    and the resumed run would prune the good ones before them), and ``latest`` is pointed at
    the newest complete checkpoint if a damaged or killed write left it elsewhere. One
    process repairs (rank 0); the others read :func:`latest_checkpoint`.

    Raises:
        StorageError: ``latest`` could not be rewritten (disk full; it is as it was) or a
            damaged checkpoint could not be renamed.
    """
    for leftover in remove_leftovers(root):
        log.info("removed %s, left by a checkpoint write that was killed", leftover)
    checkpoint = latest_checkpoint(root)
    resumed_step = checkpoint.step if checkpoint is not None else -1
    for newer in list_checkpoints(root):
        if newer.step > resumed_step:  # damaged: latest_checkpoint passed over it
            try:
                kept = _set_aside(newer.path)
            except OSError as error:
                raise StorageError(cannot_write(newer.path, error)) from error
            log.warning("moved the damaged checkpoint %s to %s: the run redoes its steps, and "
                        "it no longer counts among the run.keep_last kept", newer.path.name,
                        kept.name)
    if checkpoint is not None and read_latest(root) != checkpoint.path.name:
        try:
            mark_latest(checkpoint.path)
        except OSError as error:
            raise StorageError(cannot_write(root / LATEST, error)) from error
    return checkpoint


def _set_aside(folder: Path) -> Path:
    """Rename a damaged checkpoint folder out of the ``step_*`` names (kept for a look, not
    pruned, not found); returns its new path."""
    target = folder.with_name(f"{folder.name}.damaged")
    for copy in itertools.count(1):
        if not target.exists():
            break
        target = folder.with_name(f"{folder.name}.damaged.{copy}")
    folder.rename(target)
    return target


def remove_leftovers(root: Path) -> list[Path]:
    """Delete what writes killed midway left under ``root`` (temporary checkpoint folders and
    ``latest`` files); returns their paths."""
    leftovers = [p for p in root.iterdir() if _LEFTOVER.match(p.name)] if root.is_dir() else []
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return leftovers


def prune_checkpoints(root: Path, keep_last: int = 2, keep_every: int | None = None) -> None:
    """Delete old checkpoints, keeping the newest ``keep_last`` and every ``keep_every``-th step."""
    checkpoints = list_checkpoints(root)
    latest = read_latest(root)
    for checkpoint in checkpoints[:-keep_last] if keep_last > 0 else checkpoints:
        if checkpoint.path.name == latest:
            continue
        if keep_every and checkpoint.step % keep_every == 0:
            continue
        shutil.rmtree(checkpoint.path, ignore_errors=True)


def resolve_checkpoint(path: str | Path) -> Checkpoint:
    """Accept a run folder, a ``checkpoints`` folder, a checkpoint folder, its weights file, or an
    exported folder (``model.safetensors`` + ``config.json``), and return the checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_file():
        if path.name != WEIGHTS:
            raise CheckpointError(f"{path}: expected a {WEIGHTS} file or a folder")
        path = path.parent
    if (path / WEIGHTS).is_file():
        if (path / MANIFEST).is_file():
            verify(path)
        if not (path / CONFIG).is_file():
            raise CheckpointError(f"{path}: {CONFIG} is missing beside the weights")
        return Checkpoint(path)
    for root in (path / "checkpoints", path):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise CheckpointError(
        f"{path}: no complete checkpoint found (expected a run folder with checkpoints/, a "
        f"checkpoint folder or a {WEIGHTS} file)"
    )

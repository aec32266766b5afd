"""Checkpoints that survive a crash at any moment.

Layout of a run folder::

    RUN/checkpoints/step_00000500/model.safetensors   weights (safetensors)
                                  config.json         what the weights are (model, grid, run)
                                  state.pt            optimizer, step, RNG, data position
                                  manifest.json       sha256 + size of the files above
    RUN/checkpoints/latest                            name of the newest complete checkpoint

A checkpoint is written into a temporary folder, fsynced, verified and renamed into place, and
only then is ``latest`` replaced (also by rename). A process killed at any point leaves either
the previous checkpoint as ``latest`` or the new one, never a half-written folder that a resume
would read: on load every file is checked against the manifest.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from motionmae.errors import DataError, unpickling_error
from motionmae.fileio import atomic_write_bytes, fsync_dir, sha256_file

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "state.pt"
MANIFEST = "manifest.json"
LATEST = "latest"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


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


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`motionmae.fileio.atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def verify(folder: Path) -> None:
    """Raise :class:`CheckpointError` unless every file matches ``manifest.json``."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{folder}: no {MANIFEST}; the checkpoint is incomplete")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{folder}: {MANIFEST} is corrupt ({error})") from error
    for name, entry in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"{folder}: {name} is missing")
        if file.stat().st_size != entry["size"] or sha256_file(file) != entry["sha256"]:
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
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        cpu_weights = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
        save_file(cpu_weights, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        if state is not None:
            torch.save(state, tmp / STATE)
        files = {}
        for file in sorted(tmp.iterdir()):
            _fsync_file(file)
            files[file.name] = {"size": file.stat().st_size, "sha256": sha256_file(file)}
        (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=2))
        _fsync_file(tmp / MANIFEST)
        fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / LATEST, final.name + "\n")
    return Checkpoint(final)


def list_checkpoints(root: Path) -> list[Checkpoint]:
    """Complete-looking checkpoint folders under ``root``, oldest first (not yet verified)."""
    if not root.is_dir():
        return []
    found = [Checkpoint(p) for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The newest checkpoint under ``root`` that passes verification, or None.

    Starts from the ``latest`` pointer; a corrupt or missing one falls back to the newest
    folder that verifies, logging what was passed over.
    """
    candidates = list_checkpoints(root)
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        candidates = [c for c in candidates if c.path != named] + [Checkpoint(named)]
    for checkpoint in reversed(candidates):
        try:
            verify(checkpoint.path)
        except CheckpointError as error:
            log.warning("skipping checkpoint: %s", error)
            continue
        return checkpoint
    return None


def prune_checkpoints(root: Path, keep_last: int = 1, keep_every: int | None = None) -> None:
    """Delete old checkpoints, keeping the newest ``keep_last`` and every ``keep_every``-th step."""
    checkpoints = list_checkpoints(root)
    pointer = root / LATEST
    latest = pointer.read_text().strip() if pointer.is_file() else None
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

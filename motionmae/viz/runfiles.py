"""Read what a run folder holds, tolerating the traces of a crash.

A run folder (see :mod:`motionmae.train.loop` and :mod:`motionmae.checkpoints.format`)::

    RUN/config.yaml                      the resolved config
    RUN/metrics.jsonl                    one JSON record per logging interval
    RUN/checkpoints/step_XXXXXXXX/       model.safetensors, config.json, state.pt, manifest.json
    RUN/checkpoints/latest               name of the newest complete checkpoint
    RUN/eval/*.json                      evaluations: probe results (``motionmae probe --out``)
                                         and classifier evaluations (a fine-tune run's
                                         ``eval/val.json``, ``motionmae evaluate --out``)
    RUN/env.json                         optional: the training machine's environment

Nothing here imports torch: the layout is read from names and sizes only (checkpoints are not
verified against their checksums, which would read every weight file).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motionmae.environment import machine_environment

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step_(\d{8})$")  # as in motionmae.checkpoints.format


@dataclass
class Metrics:
    """Records of ``metrics.jsonl``, one per step (sorted by step), and what was skipped."""

    records: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of the records that have a numeric ``key``."""
        steps, values = [], []
        for record in self.records:
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                steps.append(int(record["step"]))
                values.append(float(value))
        return steps, values

    def keys(self) -> list[str]:
        """Numeric keys in order of first appearance."""
        seen: dict[str, None] = {}
        for record in self.records:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    seen.setdefault(key, None)
        return list(seen)


def read_metrics(path: Path) -> Metrics:
    """Parse ``metrics.jsonl``.

    A line that is not a JSON object is skipped with a warning (a truncated last line is what
    a crash mid-write leaves). Records without an integer ``step`` are skipped too. After a
    resume the file repeats the steps since the checkpoint: the last record of each step wins.
    """
    metrics = Metrics()
    if not path.is_file():
        return metrics
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    by_step: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            where = "the last line (truncated by a crash?)" if number == len(lines) else (
                f"line {number}"
            )
            metrics.warnings.append(f"{path.name}: {where} is not a JSON record; skipped")
            continue
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            metrics.warnings.append(f"{path.name}: line {number} has no integer step; skipped")
            continue
        by_step[step] = record
    metrics.records = [by_step[s] for s in sorted(by_step)]
    for warning in metrics.warnings:
        log.warning("%s", warning)
    return metrics


@dataclass(frozen=True)
class CheckpointInfo:
    name: str
    step: int
    size: int
    """Bytes of all files in the folder."""
    mtime: float
    """Modification time (seconds since the epoch) of its manifest, else of the folder."""
    complete: bool
    """Has a ``manifest.json`` (written last, so a complete save)."""
    latest: bool


def list_checkpoints(run_dir: Path) -> list[CheckpointInfo]:
    """Checkpoint folders under ``RUN/checkpoints``, oldest first (temporary folders ignored)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    pointer = root / "latest"
    latest = pointer.read_text(errors="replace").strip() if pointer.is_file() else None
    found = []
    for folder in root.iterdir():
        match = _STEP_DIR.match(folder.name)
        if not match or not folder.is_dir():
            continue
        files = [f for f in folder.iterdir() if f.is_file()]
        manifest = folder / "manifest.json"
        found.append(
            CheckpointInfo(
                name=folder.name,
                step=int(match.group(1)),
                size=sum(f.stat().st_size for f in files),
                mtime=(manifest if manifest.is_file() else folder).stat().st_mtime,
                complete=manifest.is_file(),
                latest=folder.name == latest,
            )
        )
    return sorted(found, key=lambda c: c.step)


@dataclass
class EvalResult:
    """One ``eval/*.json`` document: its file name and parsed JSON object."""

    file: str
    data: dict[str, Any]

    @property
    def scores(self) -> dict[str, Any]:
        """The document's scores, whichever command wrote it (see :func:`eval_scores`)."""
        return eval_scores(self.data)


_CLASSIFIER_BULK = ("metrics", "classes", "predictions")
"""Keys of a classifier evaluation holding per-video or per-class lists, not shown as
details (the scores are taken from ``metrics``)."""


def eval_scores(data: dict[str, Any]) -> dict[str, Any]:
    """What one ``eval/*.json`` document scores, in one shape whichever command wrote it.

    Keys: ``classifier`` (True for a classifier evaluation, False for a probe result),
    ``kind`` (the probe's kind, or ``"classifier"``), ``top1``, ``top5``,
    ``mean_class``, ``chance`` (fractions), ``num_train``, ``num_val`` (clips),
    ``num_videos``, each None where the document does not say, and ``details``: its other
    fields (for a classifier evaluation, without the per-video predictions and per-class
    lists).

    Two layouts are read: a probe result (``motionmae probe --out``: ``kind``, ``top1``,
    ``top5``, ``chance``, ``num_train``, ``num_val`` at the top level) and a classifier
    evaluation (:func:`motionmae.eval.predictions.save_evaluation`, a fine-tune run's
    ``eval/val.json`` and ``motionmae evaluate --out``: ``metrics`` with ``top1``, ``top5``,
    ``mean_class``, ``num_videos``, or null for unlabelled videos, beside ``classes``,
    ``views`` and one record per video in ``predictions``). The chance of a classifier
    evaluation is a uniform guess among its classes.
    """
    if "predictions" in data and "metrics" in data:
        metrics = data["metrics"] if isinstance(data["metrics"], dict) else {}
        predictions = data["predictions"] if isinstance(data["predictions"], list) else []
        classes = data.get("classes")
        if not isinstance(classes, list) and predictions and isinstance(predictions[0], dict):
            classes = predictions[0].get("probs")  # no class names: one probability each
        videos = metrics.get("num_videos")
        return {
            "classifier": True,
            "kind": "classifier" if metrics else "classifier (unlabelled videos)",
            "top1": finite_number(metrics.get("top1")),
            "top5": finite_number(metrics.get("top5")),
            "mean_class": finite_number(metrics.get("mean_class")),
            "chance": 1 / len(classes) if isinstance(classes, list) and classes else None,
            "num_train": None,
            "num_val": None,
            "num_videos": videos if isinstance(videos, int) and not isinstance(videos, bool)
            else len(predictions),
            "details": {k: v for k, v in data.items() if k not in _CLASSIFIER_BULK},
        }
    scores = {
        "kind": data.get("kind"),
        **{k: finite_number(data.get(k)) for k in ("top1", "top5", "mean_class", "chance")},
        **{k: data.get(k) for k in ("num_train", "num_val", "num_videos")},
    }
    details = {k: v for k, v in data.items() if k not in scores}
    return {"classifier": False, **scores, "details": details}


def read_evals(run_dir: Path) -> tuple[list[EvalResult], list[str]]:
    """JSON objects in ``RUN/eval/*.json`` (sorted by name) and warnings for unreadable ones.

    :func:`eval_scores` reads the scores of each, whichever command wrote it."""
    folder = run_dir / "eval"
    results, warnings = [], []
    if not folder.is_dir():
        return results, warnings
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        except (OSError, json.JSONDecodeError) as error:
            warnings.append(f"eval/{path.name}: unreadable ({error}); skipped")
            continue
        # `probe --kind linear,knn --out F.json` writes one object per probe, in a list.
        documents = data if isinstance(data, list) else [data]
        if not documents or not all(isinstance(d, dict) for d in documents):
            warnings.append(f"eval/{path.name}: neither a JSON object nor a list of them; "
                            "skipped")
            continue
        results.extend(EvalResult(path.name, document) for document in documents)
    for warning in warnings:
        log.warning("%s", warning)
    return results, warnings


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def environment(run_dir: Path) -> tuple[dict[str, Any], str]:
    """The environment to show and where it comes from.

    ``RUN/env.json`` (written by the training run) when it exists and is a JSON object;
    otherwise gathered now, from the machine building the report (which may not be the one
    that trained). Returns ``(values, source)``.
    """
    path = run_dir / "env.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
            if isinstance(data, dict):
                return data, "recorded by the training run (env.json)"
        except json.JSONDecodeError as error:
            log.warning("%s is unreadable (%s); gathering the environment now", path, error)
    values = machine_environment()
    return values, "gathered when this report was built (not recorded by the training run)"

"""What a run folder says, as plain values: the run's key facts and how its targets fit.

:func:`summary` reads ``metrics.jsonl``, ``config.yaml``, the checkpoint folders and
``eval/*.json`` into one JSON-able dict (None where unknown); :func:`target_fit` compares each
target's loss with its trivial predictor's (a pretraining run's reconstruction targets; a
fine-tune run has none), and :func:`stuck_targets` words a warning for each target the model
does not learn. The HTML report (:mod:`~motionmae.viz.report`) shows these.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from motionmae.viz.runfiles import (
    CheckpointInfo,
    EvalResult,
    Metrics,
    finite_number,
    list_checkpoints,
    read_evals,
    read_metrics,
)

__all__ = ["STUCK_EXPLAINED", "STUCK_TAIL", "read_config", "run_kind", "stuck_targets",
           "summarise", "summary", "target_fit"]

STUCK_EXPLAINED = 0.05
"""A target whose explained fraction stays below this over the run's tail is not learned: its
loss stays at the trivial predictor's when the fraction is within this of 0, and is above it
when the fraction is at or below minus this."""
STUCK_TAIL = 0.2
"""The tail: this share of the logged records that carry the target's explained fraction."""


def target_fit(metrics: Metrics) -> dict[str, dict[str, float | None]]:
    """Per target with ``explained/<target>`` records: ``loss``, ``trivial``, ``explained``
    (the last record's) and ``tail_explained``, the mean explained fraction over the last
    ``STUCK_TAIL`` of the records that have it (at least one)."""
    fit = {}
    numeric = metrics.keys()  # a Metrics method, not a dict's
    for key in (k for k in numeric if k.startswith("explained/")):
        name = key.split("/", 1)[1]
        _, values = metrics.series(key)
        tail = values[-max(1, math.ceil(STUCK_TAIL * len(values))):]
        finite = [v for v in tail if math.isfinite(v)]
        last = metrics.records[-1]
        fit[name] = {
            "loss": finite_number(last.get(f"loss/{name}")),
            "trivial": finite_number(last.get(f"trivial/{name}")),
            "explained": finite_number(last.get(key)),
            "tail_explained": sum(finite) / len(finite) if finite else None,
        }
    return fit


def stuck_targets(fit: dict[str, dict[str, float | None]]) -> list[str]:
    """A warning, in words, for each target the model does not learn: one whose explained
    fraction over the run's tail is below ``STUCK_EXPLAINED``. Near 0 the loss stays at the
    trivial predictor's; at or below ``-STUCK_EXPLAINED`` it is above it (the model does worse
    than the batch mean), and the warning says by how much."""
    warnings = []
    for name, values in fit.items():
        tail = values["tail_explained"]
        if tail is None or tail >= STUCK_EXPLAINED:
            continue
        over = f"explained {tail:.1%} over the last {STUCK_TAIL:.0%} of logged steps"
        if tail > -STUCK_EXPLAINED:
            warnings.append(
                f"target {name}: the loss stays at the trivial predictor's ({over}); the "
                f"model predicts the batch mean, it is not learning this target")
        else:  # explained = 1 - loss / trivial, so loss / trivial = 1 - explained
            warnings.append(
                f"target {name}: the loss is above the trivial predictor's, {1 - tail:.3g} "
                f"times it ({over}); the model does worse than predicting the batch mean, it "
                f"is not learning this target")
    return warnings


def read_config(run_dir: Path) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """``(parsed, pretty_text, problem)`` of ``RUN/config.yaml``."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None, None, "no config.yaml in the run folder"
    raw = path.read_text(encoding="utf-8", errors="replace")
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        return None, raw, f"config.yaml is not valid YAML ({error}); shown as written"
    if not isinstance(parsed, dict):
        return None, raw, None
    pretty = yaml.safe_dump(parsed, sort_keys=False, default_flow_style=False, width=100,
                            allow_unicode=True)
    return parsed, pretty, None


def _get(tree: dict[str, Any] | None, dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def run_kind(config: dict[str, Any] | None) -> str | None:
    """``"finetune"`` for a fine-tune run's config (it has a ``finetune`` section),
    ``"pretrain"`` for a pretraining run's (``targets`` or ``masking``), else None."""
    if not isinstance(config, dict):
        return None
    if isinstance(config.get("finetune"), dict):
        return "finetune"
    if "targets" in config or "masking" in config:
        return "pretrain"
    return None


def _best(evals: list[EvalResult], classifier: bool, keys: tuple[str, ...]
          ) -> dict[str, Any] | None:
    """``file`` and ``keys`` of the scores with the highest top-1 among the classifier
    evaluations (``classifier``) or among the probe results."""
    scored = [(e.file, e.scores) for e in evals]
    scored = [(f, s) for f, s in scored if s["top1"] is not None
              and s["classifier"] == classifier]
    if not scored:
        return None
    file, best = max(scored, key=lambda item: item[1]["top1"])
    return {"file": file, **{k: best[k] for k in keys}}


def summarise(
    run_dir: Path,
    metrics: Metrics,
    config: dict[str, Any] | None,
    checkpoints: list[CheckpointInfo],
    evals: list[EvalResult],
) -> dict[str, Any]:
    """The :func:`summary` of a run whose files are already read."""
    records = metrics.records
    last = records[-1] if records else {}
    losses = [(r["step"], finite_number(r.get("loss"))) for r in records]
    losses = [(s, v) for s, v in losses if v is not None]
    times = [t for t in (finite_number(r.get("time")) for r in records) if t is not None]
    latest = [c for c in checkpoints if c.latest] or checkpoints[-1:]
    targets = _get(config, "targets.names")
    return {
        "run_name": run_dir.resolve().name,
        "run_dir": str(run_dir.resolve()),
        "kind": run_kind(config),
        "model": _get(config, "model.size"),
        "masking": _get(config, "masking.kind"),
        "mask_ratio": _get(config, "masking.ratio"),
        "targets": list(targets) if isinstance(targets, list) else None,
        "records": len(records),
        "skipped_lines": len(metrics.warnings),
        "last_step": last.get("step"),
        "last_epoch": last.get("epoch"),
        "final_loss": finite_number(last.get("loss")),
        "final_losses": {
            k.split("/", 1)[1]: finite_number(v) for k, v in last.items() if k.startswith("loss/")
        },
        "min_loss": min(losses, key=lambda item: item[1])[1] if losses else None,
        "min_loss_step": min(losses, key=lambda item: item[1])[0] if losses else None,
        "final_lr": finite_number(last.get("lr")),
        "clips_per_s": finite_number(last.get("clips_per_s")),
        "skipped_steps": last.get("skipped_steps"),
        "bad_video_files": last.get("bad_video_files"),
        # Runs from before the two counts logged the draws alone, as bad_videos.
        "bad_video_draws": last.get("bad_video_draws", last.get("bad_videos")),
        "duration_s": times[-1] - times[0] if len(times) > 1 else None,
        "num_checkpoints": len(checkpoints),
        "latest_checkpoint": latest[0].name if latest else None,
        "num_evals": len(evals),
        "best_probe": _best(evals, False, ("kind", "top1", "top5", "chance")),
        "best_classifier": _best(evals, True, ("top1", "top5", "mean_class", "num_videos")),
        "target_fit": target_fit(metrics),
        "probes": {k.split("/", 1)[1]: finite_number(v) for k, v in _last_values(
            records, "probe/").items()},
    }


def _last_values(records: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The latest value of every key starting with ``prefix`` (records need not all have
    it: probes run at their own cadence)."""
    found: dict[str, Any] = {}
    for record in records:
        found.update({k: v for k, v in record.items() if k.startswith(prefix)})
    return found


def summary(run_dir: str | Path) -> dict[str, Any]:
    """Key facts of a run as plain JSON-able values (None where unknown).

    Keys: ``run_name, run_dir, kind`` (:func:`run_kind`), ``model, masking, mask_ratio,
    targets, records, skipped_lines, last_step, last_epoch, final_loss, final_losses``
    (target -> loss), ``min_loss, min_loss_step, final_lr, clips_per_s`` (last interval),
    ``skipped_steps``, ``bad_video_files`` (distinct bad files skipped), ``bad_video_draws``
    (draws of them replaced by other videos), ``duration_s`` (first to last record),
    ``num_checkpoints, latest_checkpoint, num_evals, best_probe`` (``file, kind, top1, top5,
    chance`` of the probe result with the highest top-1, or None), ``best_classifier``
    (``file, top1, top5, mean_class, num_videos`` of the classifier evaluation with the
    highest top-1, as a fine-tune run's ``eval/val.json``, or None), ``target_fit``
    (:func:`target_fit`), ``probes`` (probe kind -> the latest in-run ``probe/<kind>``
    accuracy).
    """
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / "metrics.jsonl")
    config, _, _ = read_config(run_dir)
    evals, _ = read_evals(run_dir)
    return summarise(run_dir, metrics, config, list_checkpoints(run_dir), evals)

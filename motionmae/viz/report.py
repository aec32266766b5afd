"""A one-page HTML report of a run folder: summary, targets against their trivial predictor
(a pretraining run's), evaluations (probe results, a fine-tune run's ``eval/val.json``),
curves, checkpoints, config.

``build_report(RUN)`` writes ``RUN/report/index.html`` (self-contained: inline CSS, plot PNGs
beside it referenced relatively) and returns its path. Everything read from the run's files
is HTML-escaped.

The page is put together beside this module: :mod:`~motionmae.viz.run_summary` (the run's
facts and target fit), :mod:`~motionmae.viz.report_html` (the HTML) and
:mod:`~motionmae.viz.plots` (the curves).
"""

from __future__ import annotations

import logging
from pathlib import Path

from motionmae.viz.plots import plot_metrics
from motionmae.viz.report_html import render_html
from motionmae.viz.run_summary import (
    read_config,
    stuck_targets,
    summarise,
    summary,
    target_fit,
)
from motionmae.viz.runfiles import environment, list_checkpoints, read_evals, read_metrics

__all__ = ["REPORT_DIR", "build_report", "render_html", "report_main", "stuck_targets",
           "summary", "target_fit"]

log = logging.getLogger(__name__)

REPORT_DIR = "report"


def build_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report/`` (``index.html`` and plot PNGs) and return the path of the HTML.

    Reads ``metrics.jsonl`` (skipping unreadable lines with a warning), ``config.yaml``, the
    checkpoint folders, ``eval/*.json`` and ``env.json`` if present. Without matplotlib the
    page is written without plots and says so.
    """
    run_dir = Path(run_dir)
    out_dir = run_dir / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = read_metrics(run_dir / "metrics.jsonl")
    config, config_text, config_problem = read_config(run_dir)
    checkpoints = list_checkpoints(run_dir)
    evals, eval_warnings = read_evals(run_dir)
    info = summarise(run_dir, metrics, config, checkpoints, evals)
    for warning in stuck_targets(info["target_fit"]):
        log.warning("%s", warning)
    plots, plot_note = plot_metrics(metrics, out_dir)
    page = render_html(info, plots, plot_note, evals, checkpoints, config_text, config_problem,
                       environment(run_dir), metrics.warnings + eval_warnings)
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def report_main(run_dir: str | Path) -> Path:
    """Entry point of ``motionmae report RUN_DIR``: check the folder, build, log the path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    expected = ("metrics.jsonl", "config.yaml", "checkpoints", "eval")
    if not any((run_dir / name).exists() for name in expected):
        raise FileNotFoundError(
            f"{run_dir} does not look like a run folder (none of {', '.join(expected)})"
        )
    index = build_report(run_dir)
    log.debug("wrote report %s", index)
    return index

"""The report page's HTML: one self-contained page (inline CSS) from a run's summary.

:func:`render_html` lays out the summary cards, the targets against their trivial predictor
(left out for a fine-tune run, which has no reconstruction targets), the evaluations (probe
results and classifier evaluations such as a fine-tune run's ``eval/val.json``), the plots
(PNG files beside the page, referenced relatively), the checkpoints, the config and the
environment. Every value read from the run's files is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Collection
from datetime import datetime
from typing import Any

from motionmae.viz.plots import Plot
from motionmae.viz.run_summary import STUCK_TAIL, stuck_targets
from motionmae.viz.runfiles import CheckpointInfo, EvalResult, finite_number

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2433;
background:#f4f5f7}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px;font-size:24px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid
#d5d9e0;padding-bottom:4px}
.sub{color:#5b6475;margin:0}
.note{background:#fff7e0;border:1px solid #f0d48a;padding:8px 12px;border-radius:6px}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{padding:5px 10px;border-bottom:1px solid #e6e8ec;text-align:left;vertical-align:top}
th{background:#eceef2;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #e0e3e8;border-radius:8px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:18px}.card span{color:#5b6475;font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:#fff;border:1px solid #e0e3e8;border-radius:8px;padding:6px}
figure img{max-width:100%;height:auto;display:block}
pre{background:#fff;border:1px solid #e0e3e8;border-radius:8px;padding:12px;overflow:auto;
font-size:12.5px}
code{font-size:12px;word-break:break-all}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str = ".4g") -> str:
    number = finite_number(value)
    if number is None:
        return "–" if value is None else _e(value)
    if isinstance(value, int) and fmt == ".4g":
        return str(value)
    return format(number, fmt)


def _pct(value: Any) -> str:
    number = finite_number(value)
    return "–" if number is None else f"{number:.1%}"


def _size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _table(header: list[str], rows: list[list[str]], numeric: Collection[int] = ()) -> str:
    """``rows`` hold already-escaped cell HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cards(info: dict[str, Any]) -> str:
    best, classifier = info["best_probe"], info["best_classifier"]
    items = [
        ("last step", _num(info["last_step"])),
        ("epoch", _num(info["last_epoch"])),
        ("final loss", _num(info["final_loss"])),
        ("lowest loss", f"{_num(info['min_loss'])}" + (
            f" <span>@ {_num(info['min_loss_step'])}</span>" if info["min_loss"] is not None
            else "")),
        ("clips / s", _num(info["clips_per_s"], ".1f")),
        ("duration", _e(_duration(info["duration_s"]))),
        ("checkpoints", _num(info["num_checkpoints"])),
    ]
    if classifier is not None:
        items.append(("classifier top-1", f"{_pct(classifier['top1'])} "
                      f"<span>{_e(classifier['file'])}</span>"))
    if best is not None or (classifier is None and info["kind"] != "finetune"):
        items.append(("best probe top-1", "–" if best is None else
                      f"{_pct(best['top1'])} <span>{_e(best['kind'])}</span>"))
    for name, value in info["final_losses"].items():
        items.append((f"final loss/{_e(name)}", _num(value)))
    for name, value in info["probes"].items():
        items.append((f"in-run probe/{_e(name)}", _pct(value)))
    if info["skipped_steps"]:
        items.append(("skipped steps", _num(info["skipped_steps"])))
    if info["bad_video_files"]:
        items.append(("bad video files skipped", _num(info["bad_video_files"])))
    if info["bad_video_draws"]:
        items.append(("draws of bad videos replaced", _num(info["bad_video_draws"])))
    cards = "".join(f'<div class="card"><b>{v}</b><span>{n}</span></div>' for n, v in items)
    facts = ", ".join(
        f"{name} <b>{_e(value)}</b>"
        for name, value in (("model", info["model"]), ("masking", info["masking"]),
                            ("mask ratio", info["mask_ratio"]),
                            ("targets", ", ".join(info["targets"] or []) or None))
        if value is not None
    )
    return f'<div class="cards">{cards}</div>' + (f"<p>{facts}</p>" if facts else "")


def _fit_section(fit: dict[str, dict[str, float | None]]) -> str:
    if not fit:
        return ("<p>No <code>explained/*</code> records (runs before the trivial predictor was "
                "logged): nothing to compare.</p>")
    notes = "".join(f'<p class="note">{_e(w)}</p>' for w in stuck_targets(fit))
    rows = [[_e(name), _num(v["loss"]), _num(v["trivial"]), _pct(v["explained"]),
             _pct(v["tail_explained"])] for name, v in fit.items()]
    table = _table(["target", "final loss", "trivial loss", "explained",
                    f"explained, last {STUCK_TAIL:.0%} of steps"], rows, numeric={1, 2, 3, 4})
    return (notes + table + "<p>The trivial predictor outputs the batch mean of the target "
            "per channel; explained = 1 - loss / trivial loss (0: the model predicts the "
            "mean, 1: a perfect reconstruction, below 0: worse than predicting the mean).</p>")


def _eval_section(evals: list[EvalResult]) -> str:
    if not evals:
        return "<p>No evaluation results (<code>eval/*.json</code>) in the run folder.</p>"
    rows = []
    for result in evals:
        scores = result.scores
        details = scores["details"]
        text = json.dumps(details, sort_keys=True, default=str) if details else ""
        if len(text) > 300:
            text = text[:297] + "..."
        rows.append([
            _e(result.file), _e("–" if scores["kind"] is None else scores["kind"]),
            _pct(scores["top1"]), _pct(scores["top5"]), _pct(scores["mean_class"]),
            _pct(scores["chance"]), _num(scores["num_train"]), _num(scores["num_val"]),
            _num(scores["num_videos"]), f"<code>{_e(text)}</code>",
        ])
    return _table(["file", "kind", "top-1", "top-5", "mean class", "chance", "train clips",
                   "val clips", "videos", "other fields"], rows,
                  numeric={2, 3, 4, 5, 6, 7, 8}) + (
        "<p>Mean class: the accuracy of each class, averaged over the classes present. Chance: "
        "a uniform guess among the classes.</p>")


def _plots_section(plots: list[Plot], note: str | None) -> str:
    parts = [f'<p class="note">{_e(note)}</p>'] if note else []
    if plots:
        figures = "".join(
            f'<figure><img src="{_e(p.file)}" alt="{_e(p.title)}"></figure>' for p in plots
        )
        parts.append(f'<div class="plots">{figures}</div>')
    return "".join(parts)


def _checkpoint_section(checkpoints: list[CheckpointInfo]) -> str:
    if not checkpoints:
        return "<p>No checkpoints.</p>"
    rows = []
    for c in checkpoints:
        status = "latest" if c.latest else ("complete" if c.complete else
                                            "incomplete (no manifest.json)")
        rows.append([_e(c.name), str(c.step), _e(_size(c.size)), _e(_when(c.mtime)),
                     _e(status)])
    return _table(["folder", "step", "size", "written", "status"], rows, numeric={1, 2})


def _env_section(values: dict[str, Any], source: str) -> str:
    rows = [[_e(k), _e(v if isinstance(v, str) else json.dumps(v, default=str))]
            for k, v in values.items()]
    return f"<p>{_e(source[:1].upper() + source[1:])}.</p>" + _table(["", "value"], rows)


def render_html(
    info: dict[str, Any],
    plots: list[Plot],
    plot_note: str | None,
    evals: list[EvalResult],
    checkpoints: list[CheckpointInfo],
    config_text: str | None,
    config_problem: str | None,
    env: tuple[dict[str, Any], str],
    warnings: list[str],
) -> str:
    """The whole page as a string (every value from the run's files escaped)."""
    notes = "".join(f'<p class="note">{_e(w)}</p>' for w in warnings)
    config = ""
    if config_problem:
        config += f'<p class="note">{_e(config_problem)}</p>'
    if config_text is not None:
        config += f"<pre>{_e(config_text)}</pre>"
    generated = _when(time.time())
    fit = "" if info["kind"] == "finetune" and not info["target_fit"] else (
        "<h2>Targets against their trivial predictor</h2>\n"
        f"{_fit_section(info['target_fit'])}\n")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>motionmae run {_e(info["run_name"])}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>{_e(info["run_name"])}</h1>
<p class="sub">run folder <code>{_e(info["run_dir"])}</code> · report built {_e(generated)}
· {info["records"]} metric records</p>
{notes}
<h2>Summary</h2>
{_cards(info)}
{fit}<h2>Evaluation</h2>
{_eval_section(evals)}
<h2>Training curves</h2>
{_plots_section(plots, plot_note)}
<h2>Checkpoints</h2>
{_checkpoint_section(checkpoints)}
<h2>Configuration</h2>
{config}
<h2>Environment</h2>
{_env_section(*env)}
</main></body></html>
"""

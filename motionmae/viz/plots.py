"""Training-curve PNGs from a run's metrics (matplotlib, the optional ``viz`` extra).

Figures are drawn with the Agg canvas directly (no ``pyplot``, no global backend switch), each
``PLOT_SIZE`` pixels. Without matplotlib :func:`plot_metrics` returns no plots and says why.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from motionmae.viz.runfiles import Metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PLOT_SIZE = (800, 360)
"""Width, height in pixels of every plot PNG."""
_DPI = 100
_HEALTH = {
    "skipped_steps": "skipped steps (non-finite loss or gradient)",
    "bad_video_files": "bad video files (distinct, skipped)",
    "bad_video_draws": "draws of a bad video (replaced by another)",
    "bad_videos": "draws of a bad video (replaced by another)",  # runs before the two counts
}
"""The health plot's series and the label of each line."""
_KNOWN = {"step", "epoch", "time", "lr", "loss", "grad_norm", "clips_per_s", *_HEALTH}
_PLOTTED_PREFIXES = ("loss/", "trivial/", "explained/", "probe/", "sampler/")
_MAX_OTHER = 16


@dataclass(frozen=True)
class Plot:
    title: str
    file: str
    """File name inside the report folder."""


@dataclass(frozen=True)
class _Spec:
    title: str
    file: str
    keys: tuple[str, ...]
    ylabel: str
    smooth: bool = False
    log: bool | None = None
    """Log y axis: None = when it helps (:func:`_wants_log`)."""
    counts: bool = False


def _file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "metric"


def plan_plots(metrics: Metrics) -> list[_Spec]:
    """Which plots the metrics support: losses per target (each beside its trivial
    predictor's, dashed), the fraction of each target explained, in-run probe accuracy, total
    loss, lr, clips/s, grad norm, bad steps/videos (if any), one per ``sampler/*`` key, then
    other numeric keys."""
    keys = metrics.keys()
    targets = tuple(k for k in keys if k.startswith("loss/"))
    specs = []
    if targets:
        paired = tuple(k for t in targets for k in (t, f"trivial/{t[5:]}")
                       if k in keys)
        title = "Loss per target" + (" (dashed: trivial predictor)" if len(paired) > len(targets)
                                     else "")
        specs.append(_Spec(title, "loss_targets.png", paired, "loss", True))
    explained = tuple(k for k in keys if k.startswith("explained/"))
    if explained:
        specs.append(_Spec("Fraction explained per target (1 - loss / trivial)",
                           "explained.png", explained, "explained", True, log=False))
    probes = tuple(k for k in keys if k.startswith("probe/"))
    if probes:
        specs.append(_Spec("Probe accuracy during training", "probe.png", probes, "top-1",
                           log=False))
    if "loss" in keys:
        specs.append(_Spec("Total loss", "loss.png", ("loss",), "loss", True))
    if "lr" in keys:
        specs.append(_Spec("Learning rate", "lr.png", ("lr",), "lr", log=False))
    if "clips_per_s" in keys:
        specs.append(_Spec("Throughput", "clips_per_s.png", ("clips_per_s",), "clips / s"))
    if "grad_norm" in keys:
        specs.append(_Spec("Gradient norm", "grad_norm.png", ("grad_norm",), "norm", True))
    health = tuple(k for k in _HEALTH if any(v for v in metrics.series(k)[1]))
    if health:
        specs.append(_Spec("Skipped steps and bad videos (cumulative)", "health.png", health,
                           "count", log=False, counts=True))
    sampler = [k for k in keys if k.startswith("sampler/")]
    for key in sampler:
        specs.append(_Spec(key, f"{_file_name(key)}.png", (key,), key.split("/", 1)[1], True))
    other = [k for k in keys if k not in _KNOWN and not k.startswith(_PLOTTED_PREFIXES)]
    for key in other[:_MAX_OTHER]:
        specs.append(_Spec(key, f"metric_{_file_name(key)}.png", (key,), key, True))
    return specs


def _wants_log(values: list[float]) -> bool:
    """Log scale when every value is positive and they span more than a factor of 30."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 30


def _smooth(values: list[float], window: int) -> list[float]:
    """Centred moving average over ``window`` points (shrinking at the ends, NaNs ignored):
    unlike an exponential average it does not lag behind the raw curve."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = [v for v in values[max(0, i - half) : i + half + 1] if math.isfinite(v)]
        out.append(sum(part) / len(part) if part else math.nan)
    return out


def _group(key: str) -> str:
    """The target (probe) a per-target key belongs to; other keys are their own group."""
    prefix, _, rest = key.partition("/")
    return rest if rest and prefix in ("loss", "trivial", "explained", "probe") else key


def _draw(spec: _Spec, metrics: Metrics, path: Path) -> Figure:
    """Draw ``spec`` into the PNG ``path``; returns the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(PLOT_SIZE[0] / _DPI, PLOT_SIZE[1] / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    all_values: list[float] = []
    # A target's curves share a colour (its loss solid, its trivial loss dashed).
    groups = list(dict.fromkeys(_group(key) for key in spec.keys))
    for key in spec.keys:
        steps, values = metrics.series(key)
        all_values += values
        color = f"C{groups.index(_group(key))}"
        label = _HEALTH.get(key) or _group(key) + (" (trivial)" if key.startswith("trivial/")
                                                   else "")
        style = "--" if key.startswith("trivial/") else "-"
        smooth = spec.smooth and len(values) >= 30
        if smooth:
            ax.plot(steps, values, color=color, alpha=0.3, linewidth=0.8, linestyle=style)
            ax.plot(steps, _smooth(values, max(5, len(values) // 25)), color=color, linewidth=1.6,
                    linestyle=style, label=f"{label} (smoothed)")
        else:
            ax.plot(steps, values, color=color, linewidth=1.4, linestyle=style,
                    marker="." if len(values) < 30 else None, label=label,
                    drawstyle="steps-post" if spec.counts else "default")
    if spec.log if spec.log is not None else _wants_log(all_values):
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    if spec.counts:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(spec.title)
    ax.set_xlabel("step")
    ax.set_ylabel(spec.ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if len(spec.keys) > 1 or spec.smooth or spec.counts:  # every health line is labelled
        ax.legend(loc="best", fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    return fig


def plot_metrics(metrics: Metrics, out_dir: Path) -> tuple[list[Plot], str | None]:
    """Write one PNG per planned plot into ``out_dir``.

    Returns ``(plots, note)``: the plots written, and why some or all are missing (matplotlib
    not installed, no records, a plot that failed), or None.
    """
    if not metrics.records:
        return [], "no metrics records: nothing to plot"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], (
            "matplotlib is not installed, so this report has no plots "
            "(install the optional extra: pip install 'motionmae[viz]')"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    plots, failed = [], []
    for spec in plan_plots(metrics):
        try:
            _draw(spec, metrics, out_dir / spec.file)
        except Exception as error:  # one bad series must not sink the report
            log.warning("plot %s failed: %s", spec.title, error)
            failed.append(spec.title)
            continue
        plots.append(Plot(spec.title, spec.file))
    note = f"plots that failed: {', '.join(failed)}" if failed else None
    return plots, note

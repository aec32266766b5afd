"""Pictures of what the model sees and learns, and reports of runs.

- :mod:`~motionmae.viz.draw`: tracks (GT vs predicted); :mod:`~motionmae.viz.overlays`: masks
  and token heatmaps; :mod:`~motionmae.viz.panels`: labelled grids.
- :mod:`~motionmae.viz.io`: PNG, MP4 (H.264) and GIF writers.
- :mod:`~motionmae.viz.report`: ``RUN/report/index.html`` with training curves.
- :mod:`~motionmae.viz.reconstruct`: what a checkpoint reconstructs on one clip.

Attributes load lazily, so ``import motionmae.viz`` pulls in neither OpenCV nor matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from motionmae.viz.draw import draw_track_pairs, draw_tracks
    from motionmae.viz.io import write_png, write_video
    from motionmae.viz.overlays import overlay_mask, overlay_token_values
    from motionmae.viz.panels import make_grid, make_grid_video
    from motionmae.viz.reconstruct import visualize
    from motionmae.viz.report import build_report, report_main
    from motionmae.viz.run_summary import summary

_EXPORTS = {
    "draw_tracks": "draw",
    "draw_track_pairs": "draw",
    "overlay_mask": "overlays",
    "overlay_token_values": "overlays",
    "make_grid": "panels",
    "make_grid_video": "panels",
    "write_png": "io",
    "write_video": "io",
    "build_report": "report",
    "report_main": "report",
    "summary": "run_summary",
    "visualize": "reconstruct",
}

__all__ = [
    "build_report",
    "draw_track_pairs",
    "draw_tracks",
    "make_grid",
    "make_grid_video",
    "overlay_mask",
    "overlay_token_values",
    "report_main",
    "summary",
    "visualize",
    "write_png",
    "write_video",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'motionmae.viz' has no attribute {name!r}")
    return getattr(importlib.import_module(f"motionmae.viz.{module}"), name)

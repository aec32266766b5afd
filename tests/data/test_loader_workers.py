"""The training stream's loader workers run OpenCV at one thread, and the parent keeps its own
count (OpenCV's threads spin between a tracker's small calls, taking CPU from the step)."""

from __future__ import annotations

import cv2
import pytest
import torch
from torch.utils.data import Dataset

from motionmae.data.stream import BatchStream


class OpenCVThreads(Dataset):
    """Each item reports the OpenCV thread count of the process that loads it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"threads": torch.tensor(cv2.getNumThreads())}


@pytest.fixture
def two_opencv_threads():
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    yield
    cv2.setNumThreads(before)


def test_workers_load_with_one_opencv_thread_and_the_parent_keeps_its_count(
        two_opencv_threads):
    stream = BatchStream(OpenCVThreads(), 2, seed=0, workers=1)
    for _ in range(3):  # into the second epoch: the persistent worker keeps one thread
        assert next(stream)["threads"].tolist() == [1, 1]
    assert stream.epoch == 1
    assert cv2.getNumThreads() == 2


def test_without_workers_the_process_keeps_its_opencv_threads(two_opencv_threads):
    stream = BatchStream(OpenCVThreads(), 2, seed=0, workers=0)
    assert next(stream)["threads"].tolist() == [2, 2]

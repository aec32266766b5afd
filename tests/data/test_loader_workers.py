"""The training stream's loader workers: OpenCV at one thread while the parent keeps its own
count (OpenCV's threads spin between a tracker's small calls, taking CPU from the step); a
SIGTERM to the job's process group leaves them serving; the stream stops them, and a process
that still holds a loader at exit is not held up by them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from torch.utils.data import Dataset

from motionmae.data.loader import WORKER_STOP_GRACE_S
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


class WorkerPids(Dataset):
    """Each item is its index and the pid of the process that loads it."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"index": torch.tensor(index), "pid": torch.tensor(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A stopped child not yet reaped is a zombie: not serving.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_worker_serves_on_after_a_sigterm_and_close_stops_it_at_the_same_position():
    stream = BatchStream(WorkerPids(), 2, seed=0, workers=1)
    first = next(stream)
    worker = int(first["pid"][0])
    assert worker != os.getpid()
    os.kill(worker, signal.SIGTERM)  # what `kill -TERM -- -PGID` sends every process
    # One stop often arrives twice (the group and `pkill -f`, `timeout` forwarding it).
    os.kill(worker, signal.SIGTERM)
    second, third = next(stream), next(stream)
    assert _alive(worker)
    assert int(third["pid"][0]) == worker
    stream.close()
    assert not _alive(worker)
    fourth = next(stream)  # new workers, the epoch's next batch
    seen = [int(i) for batch in (first, second, third, fourth) for i in batch["index"]]
    assert sorted(seen) == list(range(8))
    assert int(fourth["pid"][0]) != worker
    stream.close()


@pytest.mark.parametrize("stopped", [False, True])
def test_a_process_that_holds_a_loader_at_exit_is_not_held_up_by_its_workers(stopped):
    """Multiprocessing's exit handler signals the workers before it joins them; a worker
    takes a SIGTERM for the job's stop and serves on, so the loader stops them first."""
    script = f"STOPPED = {stopped}\n" + """
import os
import signal
import torch
from torch.utils.data import Dataset
from motionmae.data.loader import build_loader
class Items(Dataset):
    def __len__(self): return 8
    def __getitem__(self, index): return {"x": torch.zeros(2)}
held = iter(build_loader(Items(), batch_size=2, workers=1, shuffle=False, seed=0))
next(held)
if STOPPED:  # the job's stop reached the worker (twice) before the process ends
    for _ in range(2):
        os.kill(held._workers[0].pid, signal.SIGTERM)
    next(held)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=WORKER_STOP_GRACE_S / 2)
    assert done.returncode == 0, done.stderr[-2000:]

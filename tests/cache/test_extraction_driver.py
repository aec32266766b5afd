"""The extraction driver runs any cache's job: sharded, resumable, failures reported."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from motionmae.cache import extract
from motionmae.data.video_info import VideoReadError


class MarkerJob:
    """A cache whose entry for a video is a marker file beside it."""

    name = "extract-markers"

    def __init__(self) -> None:
        self.started = 0

    def start(self) -> None:
        self.started += 1

    def __call__(self, video: Path) -> Literal["done", "skipped"]:
        marker = video.with_suffix(".done")
        if marker.exists():
            return "skipped"
        if "broken" in video.name:
            raise VideoReadError.for_file(video, "no video stream")
        if "odd" in video.name:
            raise KeyError("odd")
        marker.write_text("")
        return "done"


def test_a_job_runs_on_its_shard_resumes_and_reports_failures(tmp_path: Path) -> None:
    names = ["a.mp4", "broken.mp4", "b.mp4", "odd.mp4", "c.mp4", "d.mp4"]
    videos = [tmp_path / name for name in names]
    job, progress = MarkerJob(), []
    stats = extract(videos, job, shard=(0, 2), on_progress=lambda *args: progress.append(args))
    assert job.started == 1
    assert (stats.done, stats.skipped_existing, stats.failed) == (3, 0, [])  # a, b, c
    assert [(done, total, status) for done, total, _, status in progress] == [
        (1, 3, "done"), (2, 3, "done"), (3, 3, "done")]
    stats = extract(videos, job)  # every video: a, b, c resumed; broken and odd fail
    assert (stats.done, stats.skipped_existing) == (1, 3)
    assert stats.failed == [(tmp_path / "broken.mp4", "no video stream"),
                            (tmp_path / "odd.mp4", "KeyError: 'odd'")]

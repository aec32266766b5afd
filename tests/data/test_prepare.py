"""``motionmae prepare``: sizes, frame counts and rates of the re-encoded videos, resume from
the manifest, failures counted without stopping, the written list, the command."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from motionmae.cli import main
from motionmae.config import ConfigError, DataConfig, PrepareConfig
from motionmae.data.dataset import VideoDataset
from motionmae.data.lists import VideoEntry, VideoList, read_video_list, write_video_list
from motionmae.data.prepare import (
    LOCK_FILE,
    MANIFEST,
    output_paths,
    prepare_dataset,
    prepared_size,
    transcode,
)
from motionmae.data.video_reader import probe_video, read_frames
from motionmae.data.video_writer import write_video


def _video(path: Path, frames: int, height: int, width: int, fps: float = 10.0) -> Path:
    """Moving gradient frames (so that the encoder has real work and frames differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:height, 0:width]
    clip = np.stack([np.stack([(x * 4 + t * 16) % 256, (y * 4) % 256,
                               np.full_like(x, 20 * t % 256)], -1) for t in range(frames)])
    write_video(path, clip.astype(np.uint8), fps=fps)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A list of three videos in class folders (landscape, portrait, already small) and a
    file that is not a video."""
    src = tmp_path / "src"
    _video(src / "walk" / "a.mp4", 6, 48, 80)
    _video(src / "walk" / "b.mp4", 5, 80, 48)
    _video(src / "run" / "c.mp4", 4, 24, 40)
    (src / "run" / "broken.mp4").write_bytes(b"\x00\x00\x00 not a video at all" * 10)
    listing = src / "train.txt"
    listing.write_text("walk/a.mp4 walk\nwalk/b.mp4 walk\nrun/broken.mp4 run\nrun/c.mp4 run\n")
    return listing


def test_prepared_size_short_side_even_aspect_never_enlarged() -> None:
    assert prepared_size(720, 1280, 320) == (320, 568)  # 568.9 -> nearest even
    assert prepared_size(1280, 720, 320) == (568, 320)  # portrait
    assert prepared_size(48, 80, 32) == (32, 54)  # 53.3 -> 54
    assert prepared_size(24, 40, 32) == (24, 40)  # already smaller: kept
    assert prepared_size(143, 175, None) == (144, 176)  # odd sides become even
    assert prepared_size(720, 1280, 225) == (224, 400)


def test_prepare_sizes_frames_labels_and_failures(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[tuple[int, int, str]] = []
    stats = prepare_dataset(dataset, out, PrepareConfig(short_side=32), workers=1,
                            on_progress=lambda done, total, path, status: seen.append(
                                (done, total, status)))
    assert (stats.done, stats.skipped, stats.frames) == (3, 0, 6 + 5 + 4)
    assert [(Path(p).name, "cannot be opened" in r) for p, r in stats.failed] == [
        ("broken.mp4", True)]
    assert [s[0] for s in seen] == [1, 2, 3, 4] and {s[1] for s in seen} == {4}
    videos = out / "videos"
    expect = {"walk/a.mp4": (6, 32, 54), "walk/b.mp4": (5, 54, 32), "run/c.mp4": (4, 24, 40)}
    for relative, (frames, height, width) in expect.items():
        info = probe_video(videos / relative, exact=True)
        assert (info.num_frames, info.height, info.width, info.fps) == (frames, height, width,
                                                                       10.0)
    # The list: the prepared videos with the same labels and classes, failures beside it.
    assert stats.list_path == out / "train.txt"
    prepared = read_video_list(stats.list_path)
    assert [(e.path, e.label) for e in prepared.entries] == [
        (videos / "walk" / "a.mp4", 1), (videos / "walk" / "b.mp4", 1),
        (videos / "run" / "c.mp4", 0)]
    assert prepared.classes == ["run", "walk"]
    failed = (out / "train.failed.txt").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith(f"{dataset.parent / 'run' / 'broken.mp4'}\t")
    # The prepared list loads and decodes.
    sample = VideoDataset(prepared, DataConfig(frames=4, stride=1, size=16), train=False)[1]
    assert sample["clip"].shape == (3, 4, 16, 16) and int(sample["label"]) == 1


def test_keyframes_follow_the_setting_not_the_source(tmp_path: Path) -> None:
    source = _video(tmp_path / "s.mp4", 12, 24, 40, fps=10)  # one keyframe: x264's default
    transcode(source, tmp_path / "p.mp4", PrepareConfig(keyframe_seconds=0.5))
    with av.open(str(tmp_path / "p.mp4")) as container:
        stream = container.streams.video[0]
        keys = [round(float(p.pts * stream.time_base * 10)) for p in container.demux(stream)
                if p.is_keyframe and p.pts is not None]
    assert keys == [0, 5, 10]


def test_prepared_pixels_match_the_source(tmp_path: Path) -> None:
    source = _video(tmp_path / "s.mp4", 6, 48, 80)
    transcode(source, tmp_path / "p.mp4", PrepareConfig(short_side=None, crf=10))
    original = read_frames(source, range(6)).astype(np.float32)
    prepared = read_frames(tmp_path / "p.mp4", range(6)).astype(np.float32)
    assert np.abs(original - prepared).mean() < 3.0  # only the encoder's rounding differs


def test_fps_resampling_keeps_the_duration(tmp_path: Path) -> None:
    source = _video(tmp_path / "s.mp4", 8, 24, 40, fps=10)  # 0.8 s
    half = transcode(source, tmp_path / "half.mp4", PrepareConfig(fps=5))
    double = transcode(source, tmp_path / "double.mp4", PrepareConfig(fps=20))
    assert (half.frames, half.fps) == (4, 5.0) and (double.frames, double.fps) == (16, 20.0)
    assert probe_video(tmp_path / "half.mp4", exact=True).num_frames == 4
    # Frame k of the 5 fps copy is source frame 2k (shown at k / 5 s).
    source_frames = read_frames(source, [0, 2, 4, 6]).astype(np.float32)
    resampled = read_frames(tmp_path / "half.mp4", range(4)).astype(np.float32)
    assert np.abs(source_frames - resampled).mean() < 4.0


def test_resume_skips_verified_videos_and_redoes_changed_ones(dataset: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = PrepareConfig(short_side=32)
    prepare_dataset(dataset, out, settings)
    videos = out / "videos"
    outputs = [videos / "walk" / "a.mp4", videos / "walk" / "b.mp4", videos / "run" / "c.mp4"]
    stamps = [p.stat().st_mtime_ns for p in outputs]
    again = prepare_dataset(dataset, out, settings)
    assert (again.done, again.skipped, len(again.failed)) == (0, 3, 1)
    assert [p.stat().st_mtime_ns for p in outputs] == stamps  # untouched
    # A changed source, a corrupted output and a lost output are done again; the rest not.
    source_b = dataset.parent / "walk" / "b.mp4"
    os.utime(source_b, ns=(source_b.stat().st_atime_ns, source_b.stat().st_mtime_ns + 10**9))
    data = bytearray(outputs[2].read_bytes())
    data[len(data) // 2] ^= 0xFF
    outputs[2].write_bytes(bytes(data))
    manifest = json.loads((out / MANIFEST).read_text())
    assert set(manifest["entries"]) == {"videos/walk/a.mp4", "videos/walk/b.mp4",
                                        "videos/run/c.mp4"}
    third = prepare_dataset(dataset, out, settings)
    assert (third.done, third.skipped) == (2, 1)
    assert outputs[0].stat().st_mtime_ns == stamps[0]
    # Other settings are other outputs: everything is encoded again.
    assert prepare_dataset(dataset, out, PrepareConfig(short_side=16)).done == 3
    assert probe_video(outputs[0]).height == 16


def test_parallel_run_matches_and_a_dead_source_is_reported(dataset: Path,
                                                            tmp_path: Path) -> None:
    stats = prepare_dataset(dataset, tmp_path / "out", PrepareConfig(short_side=32), workers=2)
    assert (stats.done, len(stats.failed)) == (3, 1)
    inline = prepare_dataset(dataset, tmp_path / "inline", PrepareConfig(short_side=32))
    for relative in ("walk/a.mp4", "walk/b.mp4", "run/c.mp4"):
        parallel = read_frames(tmp_path / "out" / "videos" / relative, [0, 3])
        single = read_frames(tmp_path / "inline" / "videos" / relative, [0, 3])
        # Not bit-exact: x264's analysis of frames this tiny (32 rows) varies from run to run
        # with its assembly paths on (real-size videos encode identically every time); runs
        # differed by up to 2.02 grey levels on average. A wrong frame, size or colour
        # conversion differs by tens of levels.
        assert parallel.shape == single.shape
        assert np.abs(parallel.astype(np.float32) - single).mean() < 4.0
    assert inline.failed[0][1] == stats.failed[0][1]


def test_output_conflicts_lock_and_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"a\.avi would both be prepared as .*a\.mp4"):
        output_paths([tmp_path / "a.mp4", tmp_path / "a.avi"], tmp_path / "videos")
    source = _video(tmp_path / "src" / "a.mp4", 2, 24, 40)
    videos = VideoList([VideoEntry(source, 0)])
    out = tmp_path / "out"
    out.mkdir()
    with (out / LOCK_FILE).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another motionmae prepare is writing here"):
            prepare_dataset(videos, out)
    with pytest.raises(ConfigError, match=r"prepare\.crf: must be in"):
        prepare_dataset(videos, out, PrepareConfig(crf=60))
    # An output already holding another source's copy is not overwritten.
    assert prepare_dataset(videos, out).done == 1
    other = _video(tmp_path / "elsewhere" / "a.mp4", 2, 24, 40)
    stats = prepare_dataset(VideoList([VideoEntry(other, 0)]), out)
    assert "is the prepared copy of another video" in stats.failed[0][1]


def test_prepare_command(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["prepare", "--data", str(dataset), "--out", str(out), "--short-side", "32",
                 "--workers", "1", "--list-name", "prepared.txt"]) == 3  # one video failed: data
    captured = capsys.readouterr()
    assert "3 encoded, 0 already prepared, 1 failed" in captured.out
    assert "failed: " in captured.err and "broken.mp4" in captured.err
    assert len(read_video_list(out / "prepared.txt")) == 3
    (dataset.parent / "run" / "broken.mp4").unlink()
    write_video_list(dataset, [e for e in read_video_list(dataset).entries
                               if e.path.exists()], ["run", "walk"])
    assert main(["prepare", "--data", str(dataset), "--out", str(out), "--short-side", "32",
                 "--workers", "1", "--list-name", "prepared.txt"]) == 0
    assert "0 encoded, 3 already prepared, 0 failed" in capsys.readouterr().out
    assert not (out / "prepared.failed.txt").exists()
    assert main(["prepare", "--data", str(dataset), "--out", str(tmp_path / "lists"),
                 "--list-only"]) == 0
    assert read_video_list(tmp_path / "lists" / "train.txt") == read_video_list(dataset)


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_list_line_climbing_out_of_its_folder_writes_only_inside_out(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``../vids/a.mp4`` with ``--out`` at the list's parent: the source's path below the
    common folder used to be ``../vids/a.mp4``, and ``out/videos/../vids/a.mp4`` is the source
    itself, which was re-encoded in place."""
    source = _video(tmp_path / "vids" / "a.mp4", 4, 24, 40)
    _video(tmp_path / "lists" / "b.mp4", 4, 24, 40)
    listing = tmp_path / "lists" / "train.txt"
    listing.write_text("../vids/a.mp4 0\nb.mp4 1\n")
    before = _snapshot(tmp_path)
    assert main(["prepare", "--data", str(listing), "--out", str(tmp_path),
                 "--workers", "1"]) == 0
    after = _snapshot(tmp_path)
    assert {p: after[p] for p in before} == before  # every source byte for byte, the list too
    written = sorted(p.relative_to(tmp_path).as_posix() for p in set(after) - set(before))
    assert written == [".prepare.lock", "manifest.json", "train.txt", "videos/lists/b.mp4",
                       "videos/vids/a.mp4"]
    assert [e.path for e in read_video_list(tmp_path / "train.txt").entries] == [
        tmp_path / "videos" / "vids" / "a.mp4", tmp_path / "videos" / "lists" / "b.mp4"]
    assert probe_video(source).num_frames == 4


def test_an_output_that_is_an_input_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    inner = _video(data / "videos" / "videos" / "a.mp4", 2, 24, 40)
    _video(data / "videos" / "b.mp4", 2, 24, 40)
    listing = data / "train.txt"
    listing.write_text("videos/videos/a.mp4 0\nvideos/b.mp4 1\n")
    before = _snapshot(tmp_path)
    # Common folder data/videos, so a.mp4 would be prepared as data/videos/videos/a.mp4: itself.
    assert main(["prepare", "--data", str(listing), "--out", str(data), "--list-name",
                 "prepared.txt", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (f"motionmae prepare: error: refusing to write the prepared copy of {inner} "
                   f"over the input {inner}: choose an --out outside the folders of the videos "
                   "and the list\n")
    # The prepared list over the input list, with or without re-encoding.
    assert main(["prepare", "--data", str(listing), "--out", str(data), "--root", str(tmp_path),
                 "--workers", "1"]) == 2
    assert "refusing to write the prepared list over the input" in capsys.readouterr().err
    assert main(["prepare", "--data", str(listing), "--out", str(data), "--list-only"]) == 2
    assert capsys.readouterr().err.startswith("motionmae prepare: error: refusing to write the "
                                              f"list over the input {listing}")
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed

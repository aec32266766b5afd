"""Video reading on real footage and on broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datatest_helpers import decode_all, make_audio_only, make_faststart

from motionmae.data.transforms import output_size
from motionmae.data.video_info import VideoReadError
from motionmae.data.video_reader import VideoReader, probe_video, read_frames
from motionmae.data.video_writer import write_video

FOOTAGE = {  # name: (frames, width, height)
    "bikes.mp4": (250, 640, 272),
    "bigbuckbunny.mp4": (132, 1280, 720),
    "carphone_pristine.mp4": (120, 176, 144),
}


@pytest.mark.parametrize("name", sorted(FOOTAGE))
def test_probe_real_footage(footage: Path, name: str) -> None:
    frames, width, height = FOOTAGE[name]
    info = probe_video(footage / name)
    assert (info.num_frames, info.width, info.height) == (frames, width, height)
    assert info.fps == pytest.approx(25.0 if name != "carphone_pristine.mp4" else 29.97, 1e-3)
    assert info.duration == pytest.approx(frames / info.fps, rel=0.02)


def test_probe_exact_counts_by_decoding(bikes: Path) -> None:
    assert probe_video(bikes, exact=True).num_frames == 250


@pytest.mark.parametrize("name", sorted(FOOTAGE))
def test_seeking_returns_the_frames_of_sequential_decoding(footage: Path, name: str) -> None:
    frames = FOOTAGE[name][0]
    info = probe_video(footage / name)
    size = output_size(info.height, info.display_width, 48)
    reference = decode_all(footage / name, size)
    assert len(reference) == frames
    # Keyframes of bikes are at 0, 30, 76, 137, 187, 242: cover before/after/on them.
    for wanted in ([0, 1, 2], [29, 30, 31, 75], [100, 104, 108, 112], [137, 186, 187],
                   [frames - 3, frames - 1], [77, 5, 77, 40]):
        indices = [i for i in wanted if i < frames]
        if not indices:
            continue
        got = read_frames(footage / name, indices, size=48)
        assert got.shape == (len(indices), *size, 3)
        assert got.dtype == np.uint8
        diff = np.abs(got.astype(int) - reference[indices].astype(int))
        assert diff.max() <= 2, f"{name} {indices}: max diff {diff.max()}"


def test_full_resolution_seek_matches_sequential(bikes: Path) -> None:
    reference = decode_all(bikes)
    indices = [140, 150, 160, 248]
    got = read_frames(bikes, indices)
    assert got.shape == (4, 272, 640, 3)
    np.testing.assert_array_equal(got, reference[indices])
    np.testing.assert_array_equal(read_frames(bikes, indices, seek=False), got)
    no_skip = read_frames(bikes, indices, skip_unneeded=False)  # decode every frame
    np.testing.assert_array_equal(no_skip, got)


@pytest.mark.parametrize("name", sorted(FOOTAGE))
def test_reduced_size_keeps_aspect(footage: Path, name: str) -> None:
    _, width, height = FOOTAGE[name]
    info = probe_video(footage / name)
    # carphone is QCIF with 128:117 pixels: the display aspect is kept, not the coded one.
    assert info.sample_aspect == pytest.approx(128 / 117 if "carphone" in name else 1.0)
    assert info.display_width == (193 if "carphone" in name else width)  # 176 * 128 / 117
    got = read_frames(footage / name, [3], size=112)
    h, w = got.shape[1:3]
    assert min(h, w) == 112
    assert abs(w / h - width * info.sample_aspect / height) < 1.0 / 112


def test_indices_past_the_end_repeat_the_last_frame(footage: Path) -> None:
    path = footage / "carphone_pristine.mp4"
    got = read_frames(path, [119, 120, 500], size=32)
    np.testing.assert_array_equal(got[1], got[0])
    np.testing.assert_array_equal(got[2], got[0])
    with pytest.raises(ValueError, match=">= 0"):
        read_frames(path, [-1])


def test_reader_reads_twice(bikes: Path) -> None:
    with VideoReader(bikes) as reader:
        first = reader.read([200, 201], size=32)
        again = reader.read([10, 200], size=32)
    np.testing.assert_array_equal(first[0], again[1])


def test_write_video_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    frames = np.stack([np.kron(np.roll(base, t, axis=1), np.ones((8, 8, 1), np.uint8))
                       for t in range(10)])  # [10, 64, 64, 3] blocks moving right
    path = tmp_path / "clip.mp4"
    write_video(path, frames)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (10, 64, 64)
    got = read_frames(path, range(10))
    assert np.abs(got.astype(float) - frames).mean() < 6.0  # lossy, but close
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 63, 64, 3), np.uint8))


# -- broken files -------------------------------------------------------------------------


def _expect_error(path: Path, reason: str, indices: tuple[int, ...] = (0,)) -> None:
    with pytest.raises(VideoReadError) as caught:
        read_frames(path, indices)
    message = str(caught.value)
    assert str(path) in message
    assert reason in message
    assert caught.value.path == str(path)
    assert isinstance(caught.value, RuntimeError)


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.mp4", "file not found")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    _expect_error(path, "empty file (0 bytes)")


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    _expect_error(path, "cannot be opened as media")


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_truncated_mp4(bikes: Path, tmp_path: Path, fraction: float) -> None:
    data = bikes.read_bytes()  # index (moov) at the end: a cut file cannot be opened
    path = tmp_path / f"cut{fraction}.mp4"
    path.write_bytes(data[: int(len(data) * fraction)])
    _expect_error(path, "truncated")


def test_truncated_faststart_mp4(bikes: Path, tmp_path: Path) -> None:
    full = make_faststart(bikes, tmp_path / "faststart.mp4")
    data = full.read_bytes()
    path = tmp_path / "faststart_cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    assert read_frames(path, [0, 10], size=32).shape == (2, 32, 75, 3)  # early frames exist
    _expect_error(path, "truncated", (200, 220))  # the header still says 250 frames


def test_audio_only_file(tmp_path: Path) -> None:
    path = make_audio_only(tmp_path / "audio.mp4")
    _expect_error(path, "no video stream (streams: audio)")


def test_zero_frame_video(tmp_path: Path) -> None:
    import av

    path = tmp_path / "zero_frames.mp4"
    with av.open(str(path), "w") as container:  # header only, no frame
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    _expect_error(path, "zero frames")


def test_damaged_payload(footage: Path, tmp_path: Path) -> None:
    data = bytearray((footage / "carphone_pristine.mp4").read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    data[start:end] = bytes(end - start)  # keep the index, zero the coded frames
    path = tmp_path / "zeroed.mp4"
    path.write_bytes(bytes(data))
    _expect_error(path, "damaged", (50,))


def test_error_survives_pickling(tmp_path: Path) -> None:
    import pickle

    error = VideoReadError.for_file(tmp_path / "a.mp4", "empty file (0 bytes)")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.path, copy.reason) == (str(error), error.path, error.reason)
    assert str(VideoReadError("worker said: x")) == "worker said: x"  # DataLoader re-raise


def test_header_overstating_by_a_few_frames_is_tolerated(bikes: Path, tmp_path: Path) -> None:
    """Losing the last frames or two (header says 250) clamps instead of failing."""
    data = make_faststart(bikes, tmp_path / "faststart.mp4").read_bytes()
    path = tmp_path / "short_tail.mp4"
    path.write_bytes(data[: int(len(data) * 0.995)])
    got = read_frames(path, [240, 249], size=32)
    assert got.shape == (2, 32, 75, 3)
    reference = read_frames(bikes, [240], size=32)
    np.testing.assert_array_equal(got[0], reference[0])


@pytest.mark.parametrize("suffix", [".h264", ".mkv"])
def test_other_containers_and_unseekable_raw_streams(tmp_path: Path, suffix: str) -> None:
    frames = np.zeros((30, 32, 48, 3), np.uint8)
    frames[..., 1] = (np.arange(30) * 8)[:, None, None]  # frame t has green level 8 t
    path = tmp_path / f"clip{suffix}"
    write_video(path, frames)
    assert probe_video(path).num_frames == 30
    with VideoReader(path) as reader:
        late = reader.read([20, 3])
        early = reader.read([1, 29, 40])  # rewinds (reopens a raw stream)
    green = [int(v) for v in np.concatenate([late, early])[:, 5, 5, 1]]
    assert np.abs(np.array(green) - np.array([160, 24, 8, 232, 232])).max() <= 4

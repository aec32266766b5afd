"""The bad input suite: every kind of broken or unusual input a long run meets.

Broken files are a named error with ``on_error: raise`` (the message names the file and what
is wrong) and are replaced and counted with ``on_error: skip``. Unusual but valid files
(one frame, shorter than the clip, grey, 4:2:2 / 4:4:4 chroma, odd sizes, 4K, variable frame
rate) decode to the right pixels. List files and the track cache have their own cases.
"""

from __future__ import annotations

import logging
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from datatest_helpers import make_audio_only, make_faststart

from motionmae.config import DataConfig
from motionmae.data import dataset as dataset_module
from motionmae.data.dataset import VideoDataset
from motionmae.data.lists import ListFormatError, VideoEntry, VideoList, read_video_list
from motionmae.data.video_info import VideoReadError
from motionmae.data.video_reader import VideoReader, read_frames

FRAMES, STRIDE, SIZE = 8, 3, 32  # a clip spans 22 source frames


def _ramp(num_frames: int, height: int, width: int) -> np.ndarray:
    """Frame t: red 8 t, green 128, blue 0 (so a decoded frame tells its index)."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = (8 * np.arange(num_frames))[:, None, None]
    frames[..., 1] = 128
    return frames


def _encode(path: Path, frames: np.ndarray, *, codec: str = "libx264",
            pix_fmt: str = "yuv420p", fmt: str = "rgb24",
            pts_ms: list[int] | None = None) -> Path:
    """Encode ``frames`` ([T, H, W, 3] rgb24 or [T, H, W] gray); ``pts_ms`` makes the frame
    rate variable (presentation times in milliseconds)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "10"}
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for t, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[t], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


VFR_PTS_MS = [0, 40, 80, 200, 240, 400, 440, 480, 520, 560, 600, 640]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-inputs")
    good = _encode(folder / "good.mp4", _ramp(24, 48, 64))
    data = good.read_bytes()  # the index (moov) is at the end: a cut copy cannot be opened
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    faststart = make_faststart(good, folder / "faststart.mp4").read_bytes()
    (folder / "truncated_faststart.mp4").write_bytes(faststart[: int(len(faststart) * 0.6)])
    (folder / "empty.mp4").touch()
    (folder / "text.mp4").write_text("id,caption\n1,a person waves\n" * 10)
    make_audio_only(folder / "audio.mp4")
    _encode(folder / "one_frame.mp4", _ramp(1, 48, 64))
    _encode(folder / "short.mp4", _ramp(5, 48, 64))
    grey = np.repeat((30 * np.arange(8, dtype=np.uint8))[:, None, None], 48 * 64).reshape(8, 48, 64)
    _encode(folder / "gray.mkv", grey, codec="ffv1", pix_fmt="gray", fmt="gray")
    _encode(folder / "gray.mp4", grey, pix_fmt="gray", fmt="gray")
    _encode(folder / "yuv422p.mp4", _ramp(24, 48, 64), pix_fmt="yuv422p")
    _encode(folder / "yuv444p.mp4", _ramp(24, 48, 64), pix_fmt="yuv444p")
    _encode(folder / "odd.mp4", _ramp(24, 61, 97), pix_fmt="yuv444p")  # 4:2:0 needs even sides
    _encode(folder / "4k.mp4", np.full((3, 2160, 3840, 3), 90, np.uint8))
    _encode(folder / "vfr.mp4", _ramp(len(VFR_PTS_MS), 48, 64), pts_ms=VFR_PTS_MS)
    return folder


def _config(on_error: str = "raise") -> DataConfig:
    return DataConfig(frames=FRAMES, stride=STRIDE, size=SIZE, scales=(1.0,), flip=False,
                      workers=0, on_error=on_error)


def _red_index(frames: np.ndarray) -> np.ndarray:
    """Which ramp frame each decoded frame is (red 8 t, lossy within +-3)."""
    return np.round(frames[..., 0].astype(float).mean(axis=(1, 2)) / 8).astype(int)


# -- broken files ------------------------------------------------------------------------------

BROKEN = {
    "truncated.mp4": "cannot be opened as media",
    "truncated_faststart.mp4": "truncated or damaged",
    "empty.mp4": "empty file (0 bytes)",
    "text.mp4": "cannot be opened as media",
    "audio.mp4": "no video stream (streams: audio)",
    "missing.mp4": "file not found",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_raises_a_named_error(media: Path, name: str) -> None:
    videos = VideoList([VideoEntry(media / "good.mp4", 0), VideoEntry(media / name, 1)])
    dataset = VideoDataset(videos, _config("raise"), train=True)
    with pytest.raises(VideoReadError) as caught:
        dataset[1]
    message = str(caught.value)
    assert message.startswith(f"video 2 of the list: {media / name}: ")
    assert BROKEN[name] in message
    assert caught.value.path == str(media / name)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_is_skipped_and_counted(media: Path, name: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    videos = VideoList([VideoEntry(media / "good.mp4", 0), VideoEntry(media / name, 1)])
    dataset = VideoDataset(videos, _config("skip"), train=True, seed=1)
    dataset_module._REPORTED_BAD.discard(str(media / name))
    with caplog.at_level(logging.WARNING, logger="motionmae.data.dataset"):
        sample = dataset[1]
    assert sample["index"].item() == 0 and sample["label"].item() == 0  # the good video
    assert sample["bad_videos"].item() >= 1
    assert sample["clip"].shape == (3, FRAMES, SIZE, SIZE)
    warning = next(r.getMessage() for r in caplog.records if "skipping bad video" in
                   r.getMessage())
    assert warning.startswith(f"skipping bad video {media / name}: ")
    assert BROKEN[name] in warning
    assert dataset[0]["bad_videos"].item() == 0


def test_truncated_file_still_serves_the_frames_it_has(media: Path) -> None:
    early = read_frames(media / "truncated_faststart.mp4", [0, 4], size=SIZE)
    np.testing.assert_array_equal(_red_index(early), [0, 4])


# -- unusual but valid files -------------------------------------------------------------------


def test_one_frame_video_repeats_its_frame(media: Path) -> None:
    sample = VideoDataset(VideoList([VideoEntry(media / "one_frame.mp4")]), _config(),
                          train=True)[0]
    assert sample["frame_indices"].tolist() == [0] * FRAMES
    clip = sample["clip"]
    assert clip.shape == (3, FRAMES, SIZE, SIZE)
    assert bool((clip == clip[:, :1]).all())


def test_video_shorter_than_the_clip_repeats_its_last_frame(media: Path) -> None:
    dataset = VideoDataset(VideoList([VideoEntry(media / "short.mp4")]), _config(), train=True)
    sample = dataset[0]
    expected = np.minimum(STRIDE * np.arange(FRAMES), 4)  # stride kept, tail clamped
    assert sample["frame_indices"].tolist() == expected.tolist()
    with VideoReader(media / "short.mp4") as reader:
        np.testing.assert_array_equal(_red_index(reader.read(expected, SIZE)), expected)


@pytest.mark.parametrize("name", ["gray.mkv", "gray.mp4"])
def test_grayscale_becomes_equal_rgb_channels(media: Path, name: str) -> None:
    with VideoReader(media / name) as reader:
        frames = reader.read([0, 2, 7], SIZE)
    assert frames.shape == (3, SIZE, 43, 3)
    assert (frames == frames[..., :1]).all()
    if name.endswith(".mkv"):  # lossless grey (pix_fmt gray): exact levels
        with av.open(str(media / name)) as container:
            assert container.streams.video[0].codec_context.pix_fmt == "gray"
        np.testing.assert_array_equal(frames[:, 10, 10, 0], [0, 60, 210])


@pytest.mark.parametrize("name", ["yuv422p.mp4", "yuv444p.mp4"])
def test_422_and_444_chroma_decode_to_the_right_colours(media: Path, name: str) -> None:
    with av.open(str(media / name)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == name.removesuffix(".mp4")
    frames = read_frames(media / name, [0, 5, 20], size=SIZE)
    np.testing.assert_array_equal(_red_index(frames), [0, 5, 20])
    np.testing.assert_allclose(frames[..., 1].mean(axis=(1, 2)), 128, atol=3)
    np.testing.assert_allclose(frames[..., 2].mean(axis=(1, 2)), 0, atol=3)


def test_odd_frame_size(media: Path) -> None:
    with VideoReader(media / "odd.mp4") as reader:
        assert (reader.info.width, reader.info.height) == (97, 61)
        assert reader.read([0], None).shape == (1, 61, 97, 3)
        frames = reader.read([0, 9], SIZE)
    assert frames.shape == (2, SIZE, 51, 3)  # 97 * 32 / 61 = 50.9
    np.testing.assert_array_equal(_red_index(frames), [0, 9])
    sample = VideoDataset(VideoList([VideoEntry(media / "odd.mp4")]), _config(), train=True)[0]
    assert sample["clip"].shape == (3, FRAMES, SIZE, SIZE)


def test_4k_video_is_decoded_at_the_working_size_in_bounded_memory(media: Path) -> None:
    full_frame = 2160 * 3840 * 3  # 24.9 MB of RGB: never allocated
    tracemalloc.start()
    try:
        with VideoReader(media / "4k.mp4") as reader:
            assert (reader.info.width, reader.info.height) == (3840, 2160)
            frames = reader.read([0, 1, 2], SIZE)
        dataset = VideoDataset(VideoList([VideoEntry(media / "4k.mp4")]),
                               DataConfig(frames=2, stride=1, size=SIZE, workers=0), train=True)
        sample = dataset[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames.shape == (3, SIZE, 57, 3)  # 3840 * 32 / 2160 = 56.9
    assert (np.abs(frames.astype(int) - 90) <= 2).all()
    assert sample["clip"].shape == (3, 2, SIZE, SIZE)
    assert peak < full_frame / 20, peak


def test_variable_frame_rate_maps_indices_by_presentation_time(media: Path) -> None:
    with VideoReader(media / "vfr.mp4") as reader:
        fps = reader.info.fps
        frames = reader.read(np.arange(reader.info.num_frames), SIZE)
    # Documented mapping: frame k sits at index round(t_k * fps); an index reached by no frame
    # shows the last frame before it; the first frame reaching an index wins.
    mapped = [round(t / 1000 * fps) for t in VFR_PTS_MS]
    expected = []
    for index in range(len(frames)):
        exact = [k for k, m in enumerate(mapped) if m == index]
        expected.append(exact[0] if exact else max(k for k, m in enumerate(mapped) if m < index))
    assert mapped != list(range(len(mapped)))  # the rate really varies
    np.testing.assert_array_equal(_red_index(frames), expected)


# -- list files --------------------------------------------------------------------------------


def test_list_with_a_missing_path(media: Path, tmp_path: Path) -> None:
    listing = tmp_path / "train.txt"
    listing.write_text(f"{media / 'good.mp4'} 0\nclips/gone.mp4 1\n")
    videos = read_video_list(listing)  # existence is checked when read (lists can be huge)
    dataset = VideoDataset(videos, _config("raise"), train=True)
    gone = tmp_path / "clips/gone.mp4"
    with pytest.raises(VideoReadError, match=rf"video 2 of the list: {gone}: file not found"):
        dataset[1]
    skipping = VideoDataset(videos, _config("skip"), train=True)
    assert skipping[1]["bad_videos"].item() >= 1


@pytest.mark.parametrize(("text", "error"), [
    ("a.mp4 0\nb.mp4 walk\n", r"train\.txt:2: bad label 'walk': not an integer, but line 1"),
    ("a.mp4 0\nb.mp4 -3\n", r"train\.txt:2: bad label '-3': must be >= 0"),
    ("a.mp4 0\nb.mp4\n", r"train\.txt:2: missing label \(line 1 has one"),
    ("a.mp4 0 1\n", r"train\.txt:1: expected 'path \[label\]', got 3 fields"),
])
def test_list_with_a_bad_label(tmp_path: Path, text: str, error: str) -> None:
    listing = tmp_path / "train.txt"
    listing.write_text(text)
    with pytest.raises(ListFormatError, match=error):
        read_video_list(listing)


def test_list_with_blank_lines(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("\n\na.mp4 1\n   \n\t\nb.mp4 0\n\n\n")
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\n\na.mp4,1\n,\nb.mp4,0\n\n")
    for listing in (plain, csv):
        videos = read_video_list(listing)
        assert [(e.path.name, e.label) for e in videos.entries] == [("a.mp4", 1), ("b.mp4", 0)]
    only_blank = tmp_path / "blank.txt"
    only_blank.write_text("\n  \n")
    with pytest.raises(ListFormatError, match=r"blank\.txt: empty list"):
        read_video_list(only_blank)


def test_list_with_duplicate_entries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    listing = tmp_path / "train.txt"
    listing.write_text(f"a.mp4 1\nb.mp4 0\n./a.mp4 1\n{tmp_path / 'b.mp4'} 0\nc.mp4 2\n")
    with caplog.at_level(logging.WARNING, logger="motionmae.data.lists"):
        videos = read_video_list(listing)
    # Kept (a repeat weighs an entry, e.g. to overfit one video) but counted.
    assert [(e.path.name, e.label) for e in videos.entries] == [
        ("a.mp4", 1), ("b.mp4", 0), ("a.mp4", 1), ("b.mp4", 0), ("c.mp4", 2)]
    assert f"{listing}: 2 duplicate entries, kept (e.g. line 3 repeats line 1)" in caplog.text
    listing.write_text("a.mp4 1\nb.mp4 0\na.mp4 2\n")
    with pytest.raises(ListFormatError,
                       match=r"train\.txt:3: a\.mp4 is listed again with label '2', but line 1 "
                             r"gives it '1'"):
        read_video_list(listing)


# -- track cache -------------------------------------------------------------------------------


def test_corrupt_track_cache_entry_is_recomputed_and_counted(
        media: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from motionmae.cache import ClipLayout
    from motionmae.motion.cache import CacheSettings, TrackCache
    from motionmae.motion.extract import track_video
    from motionmae.motion.hooks import TracksHook

    settings = CacheSettings(decode_size=SIZE, layout=ClipLayout(FRAMES, STRIDE, clips=1))
    cache = TrackCache(tmp_path / "cache", settings)
    video = media / "good.mp4"
    shard = cache.put(video, track_video(video, settings))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # flipped bytes mid-file
    shard.write_bytes(bytes(data))

    hook = TracksHook(patch=16, cache=cache, decode_size=SIZE)
    dataset = VideoDataset(
        VideoList([VideoEntry(video)]), _config(), train=True, sample_hooks=[hook],
        clip_sampler=settings.layout.sample)
    with caplog.at_level(logging.WARNING, logger="motionmae.cache.shards"):
        sample = dataset[0]
    assert f"track cache: corrupt entry {shard}" in caplog.text
    assert not shard.exists()  # removed, so a later extract-tracks recomputes it
    assert (hook.stats.no_entry, hook.stats.online, hook.stats.cached) == (1, 1, 0)
    assert sample["tracks"].shape == (FRAMES, (SIZE // 16) ** 2, 2)

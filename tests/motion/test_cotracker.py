"""The CoTracker3 adapter: setup errors, and the mapping logic against a fake ``cotracker``.

The fake predictors see the frame index encoded in the video's pixel values, so they can
return the tracks of a known motion whatever slice, order or direction of the clip they are
given, as a real tracker would.
"""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import numpy as np
import pytest
import torch

from motionmae.motion import (
    CoTrackerConfig,
    CoTrackerTracker,
    cotracker_grid_queries,
    make_tracker,
    track,
)

VELOCITY = np.array([1.5, -0.5], np.float32)  # pixels per frame of every point


def _video(t_len: int = 10, h: int = 24, w: int = 32) -> np.ndarray:
    """Frames whose every pixel holds the frame index (+ 100, to be told apart from 0)."""
    return np.broadcast_to((np.arange(t_len, dtype=np.uint8) + 100)[:, None, None, None],
                           (t_len, h, w, 3)).copy()


def _truth(frame_ids: torch.Tensor, queries: torch.Tensor, query_ids: torch.Tensor):
    """Tracks of the known motion: ``[1, T, N, 2]`` from frame indices ``[T]``."""
    dt = (frame_ids[:, None] - query_ids[None, :]).float()  # [T, N]
    return (queries[0, None, :, 1:] + dt[..., None] * torch.from_numpy(VELOCITY))[None]


def _scores(frame_ids: torch.Tensor, n: int) -> torch.Tensor:
    """Visibility scores: 0.9 on even frames, 0.3 on odd ones (point 0 always 0.7)."""
    s = torch.where(frame_ids % 2 == 0, 0.9, 0.3)[None, :, None].repeat(1, 1, n)
    s[..., 0] = 0.7
    return s


class FakeOffline:
    calls: ClassVar[list[dict]] = []

    def __init__(self, checkpoint: str, window_len: int):
        self.checkpoint, self.window_len = checkpoint, window_len
        self.device = None

    def to(self, device):
        self.device = device
        return self

    def eval(self):
        return self

    def __call__(self, video, queries=None, backward_tracking=False, grid_size=0):
        FakeOffline.calls.append({"video": video, "queries": queries,
                                  "backward": backward_tracking, "grid_size": grid_size})
        if queries is None:  # the predictor lays its own grid (no support points) at frame 0
            h, w = video.shape[-2:]
            queries = torch.from_numpy(cotracker_grid_queries(h, w, grid_size, grid_size))[None]
        ids = video[0, :, 0, 0, 0] - 100  # frame index of each model time step
        qids = ids[queries[0, :, 0].long()]
        tracks = _truth(ids, queries, qids)
        if not backward_tracking:  # a forward-only model knows nothing before the query
            before = torch.arange(len(ids))[:, None] < queries[0, None, :, 0]
            tracks[0][before] = -1.0
        return tracks, _scores(ids, queries.shape[1])


class FakeOnline:
    calls: ClassVar[list[tuple]] = []

    def __init__(self, checkpoint: str, window_len: int):
        self.window_len, self.step = window_len, window_len // 2

    def __call__(self, video_chunk, is_first_step=False, queries=None):
        if is_first_step:
            self.queries, self.ids, self.ind = queries, [], 0
            FakeOnline.calls.append(("init", video_chunk.shape[1]))
            return None, None
        assert video_chunk.shape[1] <= self.window_len
        chunk_ids = (video_chunk[0, :, 0, 0, 0] - 100).tolist()
        FakeOnline.calls.append(("chunk", int(chunk_ids[0]), len(chunk_ids)))
        # the chunk must start at the model's current window position
        known = self.ids[self.ind:]
        assert chunk_ids[:len(known)] == known, (chunk_ids, known)
        self.ids = self.ids[:self.ind] + chunk_ids
        self.ind += self.step
        ids = torch.tensor(self.ids)
        q = self.queries
        qids = ids[q[0, :, 0].long().clamp(max=len(ids) - 1)]
        tracks = _truth(ids, q, qids)
        before = torch.arange(len(ids))[:, None] < q[0, None, :, 0]
        tracks[0][before] = -1.0  # online models only track forwards
        return tracks, _scores(ids, q.shape[1]) > 0.6  # the real predictor returns bools


@pytest.fixture
def fake_cotracker(monkeypatch, tmp_path):
    pkg = types.ModuleType("cotracker")
    mod = types.ModuleType("cotracker.predictor")
    mod.CoTrackerPredictor = FakeOffline
    mod.CoTrackerOnlinePredictor = FakeOnline
    pkg.predictor = mod
    monkeypatch.setitem(sys.modules, "cotracker", pkg)
    monkeypatch.setitem(sys.modules, "cotracker.predictor", mod)
    FakeOffline.calls.clear()
    FakeOnline.calls.clear()
    for name in ("scaled_offline.pth", "scaled_online.pth"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def _expected(queries: np.ndarray, t_len: int) -> np.ndarray:
    dt = np.arange(t_len)[:, None] - queries[None, :, 0]
    return queries[None, :, 1:] + dt[..., None] * VELOCITY


def test_missing_checkpoint_says_what_to_provide(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        make_tracker("cotracker")
    assert "scaled_offline.pth" in str(err.value) and "checkpoint" in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        CoTrackerTracker(CoTrackerConfig(checkpoint=tmp_path / "scaled_online.pth",
                                         variant="online"))
    msg = str(err.value)
    assert "scaled_online.pth" in msg and "not found" in msg
    assert "huggingface.co/facebook/cotracker3" in msg


def test_missing_code_base_says_what_to_install(monkeypatch, tmp_path):
    ckpt = tmp_path / "scaled_offline.pth"
    ckpt.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "cotracker", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "cotracker.predictor", None)
    with pytest.raises(ImportError) as err:
        make_tracker("cotracker", checkpoint=str(ckpt))
    msg = str(err.value)
    assert "pip install git+https://github.com/facebookresearch/co-tracker" in msg
    assert "git clone https://github.com/facebookresearch/co-tracker" in msg


def test_offline_mapping(fake_cotracker):
    tracker = make_tracker("cotracker", checkpoint=fake_cotracker / "scaled_offline.pth")
    assert tracker.predictor.window_len == 60 and tracker.predictor.device == "cpu"
    frames = _video()
    queries = np.array([[0, 3.0, 4.0], [4, 10.5, 20.25], [9, 31.5, 0.0]], np.float32)
    tracks, visible = tracker.track(frames, queries)
    call = FakeOffline.calls[-1]
    video = call["video"]
    assert video.shape == (1, 10, 3, 24, 32) and video.dtype == torch.float32
    assert float(video[0, 7, 2, 5, 5]) == 107.0  # 0..255 values, channels first
    assert call["queries"].shape == (1, 3, 3) and call["queries"].dtype == torch.float32
    np.testing.assert_array_equal(call["queries"][0].numpy(), queries)  # (t, x, y) unchanged
    assert call["backward"] is True  # some queries start after frame 0
    assert tracks.dtype == np.float32 and tracks.shape == (10, 3, 2)
    assert visible.dtype == bool and visible.shape == (10, 3)
    np.testing.assert_allclose(tracks, _expected(queries, 10), atol=1e-5)
    # scores thresholded at 0.5; query frames always visible (frame 9 is odd)
    assert visible[:, 0].all()
    assert visible[:, 1].tolist() == [t % 2 == 0 or t == 4 for t in range(10)]
    assert visible[9, 2]


def test_offline_forward_only_when_all_queries_at_frame_0(fake_cotracker):
    tracker = make_tracker("cotracker", checkpoint=fake_cotracker / "scaled_offline.pth",
                           visibility_threshold=0.8)
    queries = np.array([[0, 3.0, 4.0], [0, 5.0, 6.0]], np.float32)
    _, visible = tracker.track(_video(6), queries)
    assert FakeOffline.calls[-1]["backward"] is False
    assert not visible[1:, 0].any()  # score 0.7 < 0.8


@pytest.mark.parametrize("t_len", [5, 8, 16, 17, 20, 25])
def test_online_windows_and_backward_pass(fake_cotracker, t_len):
    tracker = CoTrackerTracker(CoTrackerConfig(
        checkpoint=fake_cotracker / "scaled_online.pth", variant="online", window_len=8))
    queries = np.array([[0, 3.0, 4.0], [t_len // 2, 10.0, 12.0], [t_len - 1, 1.0, 2.0]],
                       np.float32)
    tracks, visible = tracker.track(_video(t_len), queries)
    np.testing.assert_allclose(tracks, _expected(queries, t_len), atol=1e-5)
    dt = np.arange(t_len)[:, None] - queries[None, :, 0]
    expected_vis = (np.arange(t_len)[:, None] % 2 == 0) | (dt == 0)
    expected_vis[:, 0] = True
    np.testing.assert_array_equal(visible, expected_vis)
    # windows of the forward pass start at multiples of step (4) and end at the clip's end
    chunks = [c for c in FakeOnline.calls if c[0] == "chunk"]
    forward = chunks[: len(chunks) // 2]
    assert [c[1] for c in forward] == list(range(0, 4 * len(forward), 4))
    assert forward[-1][1] + forward[-1][2] == t_len
    assert chunks[len(chunks) // 2][1] == t_len - 1  # the reversed clip starts at T - 1


def test_track_convenience_with_cotracker(fake_cotracker):
    queries = np.array([[2, 3.0, 4.0]], np.float32)
    tracks, visible = track(_video(4), queries, tracker="cotracker",
                            checkpoint=str(fake_cotracker / "scaled_offline.pth"))
    np.testing.assert_allclose(tracks, _expected(queries, 4), atol=1e-5)
    assert visible.shape == (4, 1)


def test_config_errors(fake_cotracker):
    with pytest.raises(ValueError, match=r"CoTrackerConfig\.variant"):
        make_tracker("cotracker", checkpoint=fake_cotracker / "scaled_offline.pth",
                     variant="streaming")


def test_its_own_grid_is_asked_for_as_grid_size_as_trackmae_does(fake_cotracker):
    tracker = make_tracker("cotracker", checkpoint=str(fake_cotracker / "scaled_offline.pth"))
    frames = _video(t_len=8, h=48, w=64)
    grid = cotracker_grid_queries(48, 64, 4, 4)
    tracks, _ = tracker.track(frames, grid)
    (call,) = FakeOffline.calls
    assert call["grid_size"] == 4 and call["queries"] is None  # no support points added
    np.testing.assert_allclose(tracks, _expected(grid, 8), atol=1e-4)
    FakeOffline.calls.clear()
    shifted = grid.copy()
    shifted[:, 1] += 0.5  # not the predictor's grid: passed as queries
    tracker.track(frames, shifted)
    (call,) = FakeOffline.calls
    assert call["grid_size"] == 0 and call["queries"] is not None

"""TracksHook: online tracks on the model's frames, cached tracks mapped to the sample's crop."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from motionmae.cache import ClipLayout
from motionmae.data.hooks import HookInput, SampleHook
from motionmae.data.lists import VideoEntry
from motionmae.data.transforms import CropBox, Geometry, apply_geometry
from motionmae.data.video_reader import read_frames
from motionmae.data.video_writer import write_video
from motionmae.motion import (
    CacheSettings,
    TrackCache,
    TracksHook,
    extract_tracks,
    patch_center_queries,
)
from motionmae.motion.protocol import in_frame
from motionmae.motion.synthetic import translation_clip

VELOCITY = (1.5, 0.75)  # scene motion, source pixels per source frame
PATCH = 16
SETTINGS = CacheSettings(decode_size=192, layout=ClipLayout(frames=8, stride=2, clips=2),
                         grid_spacing=8)

GEOMETRIES = {
    "full": Geometry(CropBox(0, 0, 192, 192), 192, False),
    "crop-resize": Geometry(CropBox(32, 0, 192, 192), 128, False),
    "crop-flip": Geometry(CropBox(40, 20, 144, 144), 112, True),
    "small-crop-flip": Geometry(CropBox(64, 0, 126, 126), 112, True),
}


@pytest.fixture(scope="module")
def moving(bunny: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real texture translating by VELOCITY, 24 frames 256 x 192, H.264."""
    clip = translation_clip(bunny, 24, (192, 256), VELOCITY)
    path = tmp_path_factory.mktemp("hooks") / "moving.mp4"
    write_video(path, clip.frames)
    return path


@pytest.fixture(scope="module")
def cache(moving: Path, tmp_path_factory: pytest.TempPathFactory) -> TrackCache:
    cache = TrackCache(tmp_path_factory.mktemp("cache"), SETTINGS)
    stats = extract_tracks([moving], cache)
    assert stats.done == 1, stats
    return cache


def make_input(path: Path, indices: np.ndarray, geometry: Geometry,
               decode_size: int = 192) -> HookInput:
    """What the dataset hands a hook: frames decoded at ``decode_size``, then augmented."""
    frames = apply_geometry(read_frames(path, indices, decode_size), geometry).numpy()
    frames.flags.writeable = False
    return HookInput(frames=frames, entry=VideoEntry(path), frame_indices=np.asarray(indices),
                     geometry=geometry)


def ground_truth(indices: np.ndarray, geometry: Geometry,
                 decode_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """True tracks of the patch centres in clip pixels, and whether they are in the clip."""
    size = geometry.size
    scale = size / geometry.box.width * decode_scale
    q = patch_center_queries(size, size, PATCH)[:, 1:].astype(np.float64)
    sign = -1.0 if geometry.flip else 1.0
    step = np.array([sign * VELOCITY[0], VELOCITY[1]]) * scale
    gt = q[None] + (indices - indices[0])[:, None, None] * step
    return torch.from_numpy(gt), torch.from_numpy(in_frame(gt, size, size))


def epe(a: dict[str, torch.Tensor], b: torch.Tensor, visible: torch.Tensor) -> float:
    return float((a["tracks"].double() - b.double()).norm(dim=-1)[visible].mean())


def test_is_a_sample_hook_with_the_documented_outputs(moving: Path) -> None:
    hook = TracksHook(PATCH)
    assert isinstance(hook, SampleHook) and hook.needs_dense_frames is False
    geometry = GEOMETRIES["crop-resize"]
    out = hook(make_input(moving, np.arange(0, 16, 2), geometry))
    n = (geometry.size // PATCH) ** 2
    assert out["tracks"].shape == (8, n, 2) and out["tracks"].dtype == torch.float32
    assert out["track_visible"].shape == (8, n) and out["track_visible"].dtype == torch.bool
    queries = patch_center_queries(geometry.size, geometry.size, PATCH)[:, 1:]
    np.testing.assert_allclose(out["tracks"][0].numpy(), queries)  # token order


def test_online_tracker_sees_the_flip(moving: Path) -> None:
    """Known answer: on mirrored frames the x displacement is negated, y unchanged."""
    hook = TracksHook(PATCH)
    indices = np.arange(0, 16, 2)
    box = CropBox(32, 0, 192, 192)
    moves = {}
    for flip in (False, True):
        out = hook(make_input(moving, indices, Geometry(box, 192, flip)))
        seen = out["track_visible"][-1]
        moves[flip] = (out["tracks"][-1] - out["tracks"][0])[seen].mean(0)
    expected = torch.tensor([VELOCITY[0] * 14, VELOCITY[1] * 14])
    assert torch.allclose(moves[False], expected, atol=0.2)
    assert torch.allclose(moves[True], expected * torch.tensor([-1.0, 1.0]), atol=0.2)
    assert hook.stats.online == 2 and hook.stats.cached == 0


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_cached_tracks_agree_with_online_tracks(name: str, moving: Path,
                                                cache: TrackCache) -> None:
    """Measured mean EPE over the visible points, per clip: cached vs online 0.04-0.12 px;
    against the ground truth: cached 0.05-0.19 px, online 0.08-0.27 px."""
    geometry = GEOMETRIES[name]
    cached_hook, online_hook = TracksHook(PATCH, cache=cache), TracksHook(PATCH)
    entry = cache.get(moving)
    assert entry is not None
    for indices in entry.frame_indices:
        sample = make_input(moving, indices, geometry)
        cached, online = cached_hook(sample), online_hook(sample)
        both = cached["track_visible"] & online["track_visible"]
        assert both.float().mean() > 0.7  # measured 0.78-0.88
        assert epe(cached, online["tracks"], both) < 0.2
        gt, inside = ground_truth(indices, geometry)
        assert epe(cached, gt, cached["track_visible"]) < 0.35
        assert epe(online, gt, online["track_visible"]) < 0.4
        # nothing reported visible outside the clip frame (1 px of slack for tracking
        # error); most in-frame points visible
        margin = geometry.size + 2
        near = torch.from_numpy(in_frame(gt.numpy() + 1.0, margin, margin))
        assert not (cached["track_visible"] & ~near).any()
        assert (cached["track_visible"] & inside).sum() > 0.75 * inside.sum()  # 0.84-0.98
    assert cached_hook.stats.cached == len(entry.frame_indices)
    assert cached_hook.stats.misses == 0


def test_cached_tracks_for_another_decode_size(moving: Path, cache: TrackCache) -> None:
    """The dataset decodes at 144 px while the cache holds 192 px tracks."""
    geometry = Geometry(CropBox(10, 6, 120, 120), 96, True)  # box in 144-px decoded frames
    indices = cache.get(moving).frame_indices[0]
    hook = TracksHook(PATCH, cache=cache, decode_size=144)
    out = hook(make_input(moving, indices, geometry, decode_size=144))
    gt, _ = ground_truth(indices, geometry, decode_scale=144 / 192)
    assert hook.stats.cached == 1
    assert epe(out, gt, out["track_visible"]) < 0.35


def test_misses_fall_back_to_online_and_are_counted(moving: Path, cache: TrackCache,
                                                    tmp_path: Path) -> None:
    hook = TracksHook(PATCH, cache=cache)
    geometry = GEOMETRIES["crop-resize"]
    online = TracksHook(PATCH)
    sample = make_input(moving, np.arange(3, 19, 2), geometry)  # start 3 is not cached
    torch.testing.assert_close(hook(sample), online(sample))
    assert (hook.stats.clip_not_cached, hook.stats.no_entry, hook.stats.online) == (1, 0, 1)
    other = tmp_path / "other.mp4"
    other.write_bytes(moving.read_bytes())  # same content, another file: no entry
    hook(make_input(other, np.arange(0, 16, 2), geometry))
    assert hook.stats.no_entry == 1 and hook.stats.misses == 2 and hook.stats.cached == 0


def test_hook_refuses_a_cache_of_another_tracker(cache: TrackCache) -> None:
    with pytest.raises(ValueError, match="different trackers"):
        TracksHook(PATCH, cache=cache, tracker_settings={"window": 21})
    with pytest.raises(ValueError, match="unknown"):
        TracksHook(PATCH, tracker="nope")
    # A cache filled tracking every frame is not served to a run tracking every second one.
    with pytest.raises(ValueError, match=r"every 2 frame.* every 1: cached and online"):
        TracksHook(PATCH, cache=cache, frame_step=2)
    with pytest.raises(ValueError, match="grid must be one of"):
        TracksHook(PATCH, grid="centres")


class _Clips(Dataset):
    """A stand-in for the dataset: decode, augment, call the hooks, in a worker."""

    def __init__(self, path: Path, hook: TracksHook) -> None:
        self.path, self.hook = path, hook

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        geometry = GEOMETRIES["crop-flip"]
        return self.hook(make_input(self.path, np.arange(0, 16, 2) + 9 * i, geometry))


def test_hook_pickles_and_runs_in_a_loader_worker(moving: Path, cache: TrackCache) -> None:
    hook = TracksHook(PATCH, cache=cache)
    expected = [_Clips(moving, hook)[i] for i in range(2)]
    hook._online()  # the tracker built in this process does not travel to the worker
    clone = pickle.loads(pickle.dumps(hook))
    assert hook._track is not None and clone._track is None
    assert clone.cache.root == cache.root
    loader = DataLoader(_Clips(moving, hook), batch_size=2, num_workers=1)
    batch = next(iter(loader))
    assert batch["tracks"].shape[:2] == (2, 8)
    for i in range(2):
        torch.testing.assert_close(batch["tracks"][i], expected[i]["tracks"])
        torch.testing.assert_close(batch["track_visible"][i], expected[i]["track_visible"])

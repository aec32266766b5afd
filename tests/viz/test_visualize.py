"""``motionmae visualize``: pictures of a tiny checkpoint's masking and reconstruction."""

import inspect

import cv2
import numpy as np
import pytest
import torch

from motionmae.cli import main
from motionmae.data import make_synthetic_dataset
from motionmae.tokens import TokenGrid
from motionmae.viz.draw import LEGEND_HEIGHT
from motionmae.viz.panels import LABEL_HEIGHT
from motionmae.viz.reconstruct import (
    integrate_tracks,
    normalised_prediction_frames,
    zscores_to_pixels,
)

FRAMES, SIZE, PAD = 4, 32, 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz-videos")
    videos = make_synthetic_dataset(root, num_train=2, num_val=1, frames=8, size=SIZE, seed=3)
    out = tmp_path_factory.mktemp("viz-run") / "run"
    # tracked in the step: visualize still tracks its one clip itself
    _pretrain(videos, out, "tracking.where=step")
    video = next(videos.train_list.parent.rglob("*.mp4"))
    return out, video


def _pretrain(videos, out, *sets: str) -> None:
    """Two steps of pixels + tracks with motion masking on a one-block model."""
    extra = [arg for item in sets for arg in ("--set", item)]
    assert main([
        "pretrain", "--data", str(videos.train_list), "--out", str(out), "--frames",
        str(FRAMES), "--size", str(SIZE), "--steps", "2", "--batch-size", "2",
        "--targets", "pixel,tracks", "--masking", "motion", "--set", "model.depth=1",
        "--set", "model.decoder_depth=1", "--set", "data.workers=0", *extra,
    ]) == 0


def _size(path):
    image = cv2.imread(str(path))
    assert image is not None, path
    return image.shape[:2]


def test_visualize_writes_labelled_panels(run, tmp_path, capsys, caplog):
    run_dir, video = run
    out = tmp_path / "viz"
    with caplog.at_level("INFO", logger="motionmae.viz.reconstruct"):
        assert main(["visualize", "--checkpoint", str(run_dir), str(video), "--out", str(out),
                     "--seed", "1"]) == 0
    assert "mask.png" in capsys.readouterr().out
    # Which clip is drawn: 4 frames at the default stride 4 reach 13 source frames, more
    # than the video's 8.
    assert f"{video}: the centre clip, source frames 0 to 7 every 4 (of 8), centre crop at " \
           "32 px; shorter than a clip: its last frame repeated" in caplog.messages
    names = {"mask.png", "reconstruction.png", "tracks.png", "tracks.mp4", "motion_bins.png",
             "panel.mp4"}
    assert {p.name for p in out.iterdir()} == names
    assert all((out / n).stat().st_size > 0 for n in names)
    width = 2 * PAD + FRAMES * SIZE + PAD * (FRAMES - 1)

    def height(rows, panel=SIZE):
        return PAD + rows * (LABEL_HEIGHT + panel + PAD)

    assert _size(out / "mask.png") == (height(2), width)
    # input, masked, normalised prediction, prediction with GT statistics (norm_pix default)
    assert _size(out / "reconstruction.png") == (height(4), width)
    assert _size(out / "tracks.png") == (height(1, SIZE + LEGEND_HEIGHT), width)
    assert _size(out / "motion_bins.png") == (height(2), width)


def test_normalised_panel_ignores_hidden_ground_truth():
    assert set(inspect.signature(zscores_to_pixels).parameters) == {"pred", "channels"}
    grid = TokenGrid(frames=4, height=32, width=32, tubelet=2, patch=16)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    hidden = torch.tensor([1, 2, 5, 6])
    pred = torch.randn(len(hidden), grid.patch_dim)
    panel = normalised_prediction_frames(frames, pred, hidden, grid)
    brighter = frames.copy()
    brighter[:, :16, 16:] = 255  # token (t, 0, 1): hidden at t = 0 (1) and t = 1 (5)
    brighter[:, 16:, :16] //= 4  # token (t, 1, 0): hidden (2, 6)
    np.testing.assert_array_equal(normalised_prediction_frames(brighter, pred, hidden, grid),
                                  panel)
    # Scaling / shifting a patch's prediction changes nothing: only the shape is shown.
    np.testing.assert_array_equal(
        normalised_prediction_frames(frames, pred * 3 + 1, hidden, grid), panel)
    np.testing.assert_array_equal(panel[:, :16, :16], frames[:, :16, :16])  # visible kept


def test_integrate_tracks_overlapping_last_window():
    start = torch.zeros(1, 2)
    disp = torch.tensor([[[2.0, 0.0]], [[4.0, 2.0]]])  # windows (0, 2) and (1, 3)
    out = integrate_tracks(start, disp, frames=4, tubelet=2)
    expected = [[0, 0], [1, 0], [2, 0], [1 + 4, 2]]
    np.testing.assert_allclose(out[:, 0].numpy(), expected)


@pytest.mark.parametrize("norm", ["none", "scale", "patch_mean", "batch", "patch"])
def test_tubelet_displacements_recover_pixels_for_every_norm(norm):
    """A perfect prediction of each normalised target maps back to the true pixel motion."""
    from motionmae.targets import TracksTargetConfig
    from motionmae.targets.tracks import TracksTarget
    from motionmae.viz.reconstruct import tubelet_displacements

    grid = TokenGrid(frames=4, height=32, width=32, tubelet=2, patch=8)
    target = TracksTarget(TracksTargetConfig(norm=norm, scale=4.0), grid)
    gen = torch.Generator().manual_seed(0)
    # Each point moves along its own random per-frame velocity, so tokens differ.
    velocity = torch.randn(1, 1, grid.spatial, 2, generator=gen) * 3
    start = torch.rand(1, 1, grid.spatial, 2, generator=gen) * 32
    tracks = start + velocity * torch.arange(4.0).view(1, 4, 1, 1)
    pixels = target.pixels(tracks)[0]  # [L, U^2, 2]
    pred = target.values(tracks)[0]
    gt = pixels if norm in ("batch", "patch") else None
    recovered = tubelet_displacements(pred, target, gt)
    torch.testing.assert_close(recovered, pixels.mean(dim=1), atol=1e-3, rtol=1e-3)


def test_visualize_leaves_the_tracks_panel_out_for_reseeded_points(tmp_path, caplog):
    """With ``targets.tracks.queries=every_tubelet`` a token's points start at its own
    tubelet, so there is no frame-0 track to draw its prediction on: said, and left out."""
    videos = make_synthetic_dataset(tmp_path / "videos", num_train=2, num_val=0, frames=8,
                                    size=SIZE, seed=3)
    out = tmp_path / "run"
    _pretrain(videos, out, "targets.tracks.queries=every_tubelet")
    video = next(videos.train_list.parent.rglob("*.mp4"))
    with caplog.at_level("WARNING", logger="motionmae.viz.reconstruct"):
        assert main(["visualize", "--checkpoint", str(out), str(video), "--out",
                     str(tmp_path / "viz")]) == 0
    assert {p.name for p in (tmp_path / "viz").iterdir()} == {
        "mask.png", "reconstruction.png", "motion_bins.png", "panel.mp4"}
    assert any("every_tubelet" in m and "left out" in m for m in caplog.messages)

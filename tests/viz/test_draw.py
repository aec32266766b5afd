import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from motionmae.viz.colors import colormap, point_colors
from motionmae.viz.draw import LEGEND_HEIGHT, draw_track_pairs, draw_tracks
from motionmae.viz.overlays import overlay_mask, overlay_token_values
from motionmae.viz.panels import LABEL_HEIGHT, make_grid, make_grid_video

BG = 40
RED = np.array([255, 40, 40])
GREEN = np.array([40, 255, 40])


def _frames(t=8, h=48, w=80):
    return np.full((t, h, w, 3), BG, np.uint8)


def _line_track(t, start, step):
    """One point moving in a straight line: [T, 1, 2]."""
    return (np.asarray(start, float) + np.arange(t)[:, None] * np.asarray(step, float))[:, None]


def _distance_to_path(h, w, points):
    """Distance of every pixel to the polyline through ``points`` [K, 2] (x, y)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    pix = np.stack([xx, yy], -1)
    best = np.full((h, w), np.inf)
    for a, b in itertools.pairwise(points):
        ab = b - a
        u = np.clip(((pix - a) @ ab) / max(ab @ ab, 1e-9), 0, 1)
        best = np.minimum(best, np.linalg.norm(pix - (a + u[..., None] * ab), axis=-1))
    if len(points) == 1:
        best = np.linalg.norm(pix - points[0], axis=-1)
    return best


def test_draw_tracks_marks_current_positions_with_point_colour():
    frames = _frames()
    tracks = np.concatenate([_line_track(8, (8, 10), (5, 0)), _line_track(8, (60, 40), (0, -4))], 1)
    colors = np.stack([RED, GREEN]).astype(np.uint8)
    out = draw_tracks(frames, tracks, None, colors=colors)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert (frames == BG).all(), "input must not be modified"
    for t in range(8):
        for n, color in enumerate(colors):
            x, y = tracks[t, n].round().astype(int)
            pixel = out[t, y, x].astype(int)
            assert np.abs(pixel - color).max() <= 8, (t, n, pixel)


def test_draw_tracks_leaves_pixels_far_from_any_track_untouched():
    frames = _frames()
    tracks = _line_track(8, (8, 12), (6, 3))
    out = draw_tracks(frames, tracks, np.ones((8, 1), bool), radius=2)
    for t in (0, 3, 7):
        far = _distance_to_path(48, 80, tracks[: t + 1, 0]) > 2 + 1 + 1.5  # radius, rim, AA
        assert (out[t][far] == BG).all()
        near = _distance_to_path(48, 80, tracks[: t + 1, 0]) < 0.5
        assert (out[t][near] != BG).any(axis=-1).all()
    # The future is not drawn: the last position is background on frame 2.
    x, y = tracks[7, 0].round().astype(int)
    assert (out[2, y, x] == BG).all()


def test_default_colours_are_distinct_per_point():
    colors = point_colors(12).astype(int)
    assert colors.shape == (12, 3)
    diffs = np.abs(colors[:, None] - colors[None]).max(-1)
    assert (diffs[~np.eye(12, dtype=bool)] > 20).all()


def test_invisible_points_get_a_hollow_ring_and_break_the_tail():
    frames = _frames()
    tracks = _line_track(8, (6, 24), (8, 0))  # 8 px per frame, horizontal
    visible = np.ones((8, 1), bool)
    visible[4, 0] = False
    out = draw_tracks(frames, tracks, visible, colors=RED[None].astype(np.uint8), radius=2)
    x, y = tracks[4, 0].round().astype(int)
    assert (out[4, y, x] == BG).all(), "centre of an invisible point stays untouched"
    ring = out[4, y, x - 3 : x + 4]  # the ring crosses the row at x +- 3
    assert (ring[0] != BG).any() and (ring[-1] != BG).any()
    # At the last frame the segments 3->4 and 4->5 are gaps, 2->3 and 5->6 are drawn.
    mid = lambda a, b: ((tracks[a, 0] + tracks[b, 0]) / 2).round().astype(int)  # noqa: E731
    for a, b, drawn in ((2, 3, True), (3, 4, False), (4, 5, False), (5, 6, True)):
        mx, my = mid(a, b)
        assert (out[7, my, mx] != BG).any() == drawn, (a, b)


def test_tail_brightens_with_time():
    frames = np.zeros((10, 64, 32, 3), np.uint8)
    tracks = _line_track(10, (16, 4), (0, 6))  # vertical: samples fall on the line
    out = draw_tracks(frames, tracks, None, colors=GREEN[None].astype(np.uint8), fade=0.2)
    last = out[-1].astype(int).sum(-1)
    ys = [round((tracks[s, 0, 1] + tracks[s + 1, 0, 1]) / 2) for s in range(8)]
    brightness = [last[y, 16] for y in ys]
    assert all(b > 0 for b in brightness)
    assert brightness == sorted(brightness) and brightness[-1] > 2 * brightness[0]


def test_tail_length_limits_history():
    frames = _frames()
    tracks = _line_track(8, (6, 24), (8, 0))
    out = draw_tracks(frames, tracks, None, tail=2)
    old = ((tracks[1, 0] + tracks[2, 0]) / 2).round().astype(int)
    recent = ((tracks[6, 0] + tracks[7, 0]) / 2).round().astype(int)
    assert (out[7, old[1], old[0]] == BG).all()
    assert (out[7, recent[1], recent[0]] != BG).any()


def test_draw_track_pairs_shows_both_and_a_legend():
    frames = _frames()
    true = _line_track(8, (10, 12), (6, 0))
    pred = true + np.array([0.0, 20.0])
    out = draw_track_pairs(frames, true, pred, None, colors=RED[None].astype(np.uint8))
    assert out.shape == (8, 48 + LEGEND_HEIGHT, 80, 3)
    for t in (0, 5):
        tx, ty = true[t, 0].round().astype(int)
        px, py = pred[t, 0].round().astype(int)
        assert np.abs(out[t, ty, tx].astype(int) - RED).max() <= 8
        assert (out[t, py, px] != BG).any()
    legend = out[0, 48:]
    assert legend.std() > 10, "legend strip has drawn content"
    plain = draw_track_pairs(frames, true, pred, None, legend=False)
    assert plain.shape == frames.shape
    with pytest.raises(ValueError, match="pred_tracks"):
        draw_track_pairs(frames, true, pred[:, :0], None)


def test_draw_tracks_rejects_bad_shapes():
    with pytest.raises(ValueError, match="T = 8"):
        draw_tracks(_frames(), np.zeros((7, 2, 2)), None)
    with pytest.raises(ValueError, match="uint8"):
        draw_tracks(_frames().astype(float), np.zeros((8, 2, 2)), None)


@dataclass(frozen=True)
class Grid:
    t: int = 2
    h: int = 3
    w: int = 4
    tubelet: int = 2
    patch: int = 8


def test_overlay_mask_darkens_exactly_the_hidden_patches():
    grid = Grid()
    rng = np.random.default_rng(0)
    frames = rng.integers(60, 256, (4, 24, 32, 3), dtype=np.uint8)
    mask = rng.random(grid.t * grid.h * grid.w) < 0.5
    out = overlay_mask(frames, mask, grid, strength=0.6)
    luma = frames.astype(float) @ [0.299, 0.587, 0.114]
    for index, hidden in enumerate(mask):
        t, rest = divmod(index, grid.h * grid.w)
        h, w = divmod(rest, grid.w)
        region = np.s_[2 * t : 2 * t + 2, 8 * h : 8 * h + 8, 8 * w : 8 * w + 8]
        if hidden:
            assert abs(out[region].mean() - 0.4 * luma[region].mean()) < 1.0
            assert (out[region][..., 0] == out[region][..., 1]).all(), "hidden = grey"
        else:
            assert (out[region] == frames[region]).all()


def test_overlay_mask_accepts_a_token_grid_and_checks_sizes():
    from motionmae.tokens import TokenGrid

    grid = TokenGrid(frames=4, height=32, width=48, tubelet=2, patch=16)
    frames = np.full((4, 32, 48, 3), 200, np.uint8)
    out = overlay_mask(frames, np.ones(grid.num_tokens, bool), grid)
    assert out.max() < 200
    with pytest.raises(ValueError, match="token grid"):
        overlay_mask(frames[:, :16], np.ones(grid.num_tokens, bool), grid)
    with pytest.raises(ValueError, match="12 token values"):
        overlay_mask(frames, np.ones(5, bool), grid)


def test_overlay_token_values_blends_the_colormap():
    grid = Grid()
    frames = np.full((4, 24, 32, 3), 100, np.uint8)
    values = np.linspace(0.0, 1.0, 24)
    values[5] = np.nan
    out = overlay_token_values(frames, values, grid, cmap="viridis", alpha=0.5)
    top = colormap(np.array(1.0), "viridis").astype(float)
    expected_top = np.round(0.5 * 100 + 0.5 * top)
    assert np.abs(out[3, 23, 31] - expected_top).max() <= 1  # last token: value 1
    assert (out[0, 0, 5 * 8 : 6 * 8] == 100).all(), "NaN token: no overlay"
    assert not (out[0, 0, 0] == 100).all()


def test_make_grid_size_is_panels_plus_padding_and_labels():
    a = np.full((20, 30, 3), 255, np.uint8)
    b = np.full((10, 15, 3), 128, np.uint8)
    c = np.full((25, 12), 60, np.uint8)  # grey panel
    pad = 3
    out = make_grid([[a, b], [c]], labels=["prediction (normalised)", "mask"], pad=pad)
    height = pad + (LABEL_HEIGHT + 20 + pad) + (LABEL_HEIGHT + 25 + pad)
    width = 2 * pad + max(30 + 15 + pad, 12)
    assert out.shape == (height, width, 3)
    assert (out[pad + LABEL_HEIGHT : pad + LABEL_HEIGHT + 20, pad : pad + 30] == 255).all()
    label_strip = out[pad : pad + LABEL_HEIGHT, pad:-pad]
    assert (label_strip > 150).any(), "label text is drawn"
    plain = make_grid([[a, b], [c]], pad=pad)
    assert plain.shape == (pad + 20 + pad + 25 + pad, width, 3)
    with pytest.raises(ValueError, match="labels"):
        make_grid([[a]], labels=["x", "y"])


def test_make_grid_video_stacks_frames():
    video = np.zeros((3, 16, 16, 3), np.uint8)
    out = make_grid_video([[video, video]], labels=["a"], pad=2)
    assert out.shape == (3, 2 + LABEL_HEIGHT + 16 + 2, 2 + 16 + 2 + 16 + 2, 3)

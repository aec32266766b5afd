"""TAP-Vid metrics on hand-made predictions."""

from __future__ import annotations

import numpy as np

from motionmae.motion import (
    average_jaccard,
    delta_avg,
    median_epe,
    occlusion_accuracy,
    tapvid_metrics,
)


def _gt(t: int = 5, n: int = 4):
    rng = np.random.default_rng(0)
    tracks = rng.uniform(0, 200, (t, n, 2)).astype(np.float32)
    visible = np.ones((t, n), bool)
    return tracks, visible


def test_perfect_prediction():
    gt, vis = _gt()
    m = tapvid_metrics(gt, vis, gt, vis, (256, 256))
    assert m == {"delta_avg": 1.0, "median_epe": 0.0, "occlusion_accuracy": 1.0,
                 "average_jaccard": 1.0}


def test_thresholds_rescale_to_256():
    gt, vis = _gt()
    pred = gt + np.array([3.0, 0.0], np.float32)  # 3 px: inside 4, 8, 16 -> 3/5
    assert delta_avg(pred, gt, vis, (256, 256)) == 0.6
    # on a 512-wide frame a 6 px error is 3 px at 256 scale; y is scaled by 256 / H
    pred = gt + np.array([6.0, 0.0], np.float32)
    assert delta_avg(pred, gt, vis, (128, 512)) == 0.6
    pred = gt + np.array([0.0, 6.0], np.float32)
    assert delta_avg(pred, gt, vis, (128, 512)) == 0.2  # 12 px at 256 scale: only 16
    assert median_epe(pred, gt, vis) == 6.0  # EPE stays in the frames' pixels


def test_only_visible_and_non_query_frames_count():
    gt, vis = _gt()
    pred = gt.copy()
    pred[2, 1] += 100.0  # a wild error on a point that is occluded in ground truth
    vis = vis.copy()
    vis[2, 1] = False
    assert delta_avg(pred, gt, vis, (256, 256)) == 1.0
    pred[0] += 50.0  # errors in the query frame are excluded
    q = np.zeros(4)
    assert delta_avg(pred, gt, vis, (256, 256), query_frames=q) == 1.0
    assert delta_avg(pred, gt, vis, (256, 256)) < 1.0


def test_occlusion_accuracy_and_jaccard():
    gt, vis = _gt(t=4, n=5)
    vis[2:, 0] = False
    pred_vis = np.ones_like(vis)  # wrong on the 2 occluded entries of 20
    assert occlusion_accuracy(pred_vis, vis) == 18 / 20
    # all positions exact: AJ = TP / (TP + FP + FN) = 18 / (18 + 2 + 0)
    assert np.isclose(average_jaccard(gt, pred_vis, gt, vis, (256, 256)), 0.9)
    assert np.isnan(delta_avg(gt, gt, np.zeros_like(vis), (256, 256)))

"""TAP-Vid style point-tracking metrics.

All functions take predictions and ground truth in the layout of :class:`PointTracker` results:
``tracks [T, N, 2]`` ``(x, y)`` pixels and ``visible [T, N]`` bool. ``query_frames [N]``
(optional) excludes each point's own query frame from evaluation, as TAP-Vid does (a tracker
gets the query position for free there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "DELTA_THRESHOLDS",
    "average_jaccard",
    "delta_avg",
    "median_epe",
    "occlusion_accuracy",
    "tapvid_metrics",
]

DELTA_THRESHOLDS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)


def _eval_mask(shape: tuple[int, int], query_frames: np.ndarray | None) -> np.ndarray:
    mask = np.ones(shape, dtype=bool)
    if query_frames is not None:
        q = np.asarray(query_frames).astype(np.int64).reshape(-1)
        mask[q, np.arange(shape[1])] = False
    return mask


def _scaled_error(pred: np.ndarray, gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    d = (np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) * np.array([256.0 / w,
                                                                               256.0 / h])
    return np.linalg.norm(d, axis=-1)


def delta_avg(pred_tracks: np.ndarray, gt_tracks: np.ndarray, gt_visible: np.ndarray,
              size: tuple[int, int], thresholds: Sequence[float] = DELTA_THRESHOLDS,
              query_frames: np.ndarray | None = None) -> float:
    """TAP-Vid ``< delta^x_avg``: position accuracy on visible ground-truth points.

    Errors are measured after rescaling coordinates to a 256 x 256 frame (``x * 256 / W``,
    ``y * 256 / H``); for each threshold (default 1, 2, 4, 8, 16 px at that scale) the fraction
    of ground-truth-visible points (query frames excluded) with error strictly below it is
    taken, and the fractions are averaged. Predicted visibility is ignored.

    Args:
        pred_tracks, gt_tracks: ``[T, N, 2]`` ``(x, y)`` pixels of the ``size`` frame.
        gt_visible: ``[T, N]`` bool.
        size: ``(H, W)`` of the frames the coordinates refer to.
        thresholds: pixel thresholds at the 256 x 256 scale.
        query_frames: ``[N]`` int, optional (see module docstring).

    Returns:
        A float in ``[0, 1]``; ``nan`` when no point is evaluated.
    """
    err = _scaled_error(pred_tracks, gt_tracks, size)
    mask = np.asarray(gt_visible, bool) & _eval_mask(err.shape, query_frames)
    if not mask.any():
        return float("nan")
    e = err[mask]
    return float(np.mean([np.mean(e < th) for th in thresholds]))


def median_epe(pred_tracks: np.ndarray, gt_tracks: np.ndarray, gt_visible: np.ndarray,
               query_frames: np.ndarray | None = None) -> float:
    """Median end-point error in pixels of the given frames (no rescaling) over
    ground-truth-visible points, query frames excluded. ``nan`` when nothing is evaluated.

    Args: ``pred_tracks, gt_tracks [T, N, 2]`` pixels, ``gt_visible [T, N]`` bool,
    ``query_frames [N]`` optional.
    """
    err = np.linalg.norm(np.asarray(pred_tracks, np.float64) - np.asarray(gt_tracks, np.float64),
                         axis=-1)
    mask = np.asarray(gt_visible, bool) & _eval_mask(err.shape, query_frames)
    return float(np.median(err[mask])) if mask.any() else float("nan")


def occlusion_accuracy(pred_visible: np.ndarray, gt_visible: np.ndarray,
                       query_frames: np.ndarray | None = None) -> float:
    """Fraction of ``(frame, point)`` pairs (query frames excluded) whose predicted visibility
    equals the ground truth. ``pred_visible, gt_visible``: ``[T, N]`` bool."""
    pv, gv = np.asarray(pred_visible, bool), np.asarray(gt_visible, bool)
    mask = _eval_mask(gv.shape, query_frames)
    return float(np.mean(pv[mask] == gv[mask])) if mask.any() else float("nan")


def average_jaccard(pred_tracks: np.ndarray, pred_visible: np.ndarray, gt_tracks: np.ndarray,
                    gt_visible: np.ndarray, size: tuple[int, int],
                    thresholds: Sequence[float] = DELTA_THRESHOLDS,
                    query_frames: np.ndarray | None = None) -> float:
    """TAP-Vid Average Jaccard: per threshold, ``TP / (TP + FP + FN)`` where a true positive is
    a point predicted visible, visible in ground truth and within the threshold (256 x 256
    scale); averaged over thresholds. Shapes as in :func:`delta_avg`."""
    err = _scaled_error(pred_tracks, gt_tracks, size)
    mask = _eval_mask(err.shape, query_frames)
    pv = np.asarray(pred_visible, bool) & mask
    gv = np.asarray(gt_visible, bool) & mask
    out = []
    for th in thresholds:
        close = err < th
        tp = np.sum(pv & gv & close)
        fp = np.sum(pv & ~(gv & close))
        fn = np.sum(gv & ~(pv & close))
        denom = tp + fp + fn
        out.append(tp / denom if denom else np.nan)
    return float(np.nanmean(out)) if not np.all(np.isnan(out)) else float("nan")


def tapvid_metrics(pred_tracks: np.ndarray, pred_visible: np.ndarray, gt_tracks: np.ndarray,
                   gt_visible: np.ndarray, size: tuple[int, int],
                   query_frames: np.ndarray | None = None) -> dict[str, float]:
    """All metrics at once: ``{"delta_avg", "median_epe", "occlusion_accuracy",
    "average_jaccard"}`` (see the individual functions for shapes and units)."""
    return {
        "delta_avg": delta_avg(pred_tracks, gt_tracks, gt_visible, size,
                               query_frames=query_frames),
        "median_epe": median_epe(pred_tracks, gt_tracks, gt_visible, query_frames),
        "occlusion_accuracy": occlusion_accuracy(pred_visible, gt_visible, query_frames),
        "average_jaccard": average_jaccard(pred_tracks, pred_visible, gt_tracks, gt_visible,
                                           size, query_frames=query_frames),
    }

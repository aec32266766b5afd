"""Camera-motion estimation: one homography per frame pair.

``homographies[t]`` (``3 x 3``, float64) maps pixel coordinates of frame ``t`` to frame ``t+1``
(``x_{t+1} ~ H_t @ (x_t, y_t, 1)``, pixel centres at integers) for the dominant (background)
motion; independently moving objects are RANSAC outliers. Two methods:

* ``"lk"`` (default): Shi-Tomasi corners in frame ``t`` tracked into ``t+1`` by pyramidal LK
  with a forward-backward check, then a RANSAC homography (OpenCV refines it on the inliers).
  Sub-pixel matches make it accurate (a few hundredths of a pixel on a synthetic warp).
* ``"orb"``: ORB keypoints and binary descriptors, cross-checked brute-force matching, RANSAC.
  Copes with larger motions (no pyramid capture range) but keypoint positions are
  integer-ish, so it is an order of magnitude less accurate (about a pixel).

When too few inliers are found the pair gets the identity; :func:`estimate_camera_motion`
then issues a :class:`CameraMotionWarning` (once per process, by Python's warning rules).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from motionmae.motion.protocol import to_gray

__all__ = [
    "CameraConfig",
    "cumulative_homographies",
    "estimate_camera_motion",
    "estimate_homography",
]

logger = logging.getLogger(__name__)


@dataclass
class CameraConfig:
    """Settings of the camera-motion estimator (pixels).

    Attributes:
        method: ``"lk"`` (Shi-Tomasi + LK) or ``"orb"`` (ORB matches).
        max_corners: at most this many Shi-Tomasi corners (``"lk"``).
        quality_level: Shi-Tomasi quality relative to the best corner (``"lk"``).
        min_distance: minimum distance between corners, pixels (``"lk"``).
        lk_window: LK window side, pixels (``"lk"``).
        lk_levels: LK pyramid levels (``"lk"``).
        fb_threshold: forward-backward error above which an LK match is dropped, pixels.
        orb_features: ORB keypoints per frame (``"orb"``).
        ransac_threshold: RANSAC reprojection threshold, pixels.
        min_inliers: fewer RANSAC inliers than this -> identity (and a CameraMotionWarning).
    """

    method: str = "lk"
    max_corners: int = 200
    quality_level: float = 0.001
    min_distance: float = 10.0
    lk_window: int = 15
    lk_levels: int = 3
    fb_threshold: float = 0.2
    orb_features: int = 1000
    ransac_threshold: float = 1.0
    min_inliers: int = 12

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.method not in ("lk", "orb"):
            raise ValueError(f"CameraConfig.method: must be 'lk' or 'orb', got {self.method!r}")
        if self.max_corners < 4 or self.orb_features < 4:
            raise ValueError("CameraConfig.max_corners / orb_features: need at least 4 points")
        if self.min_inliers < 4:
            raise ValueError(f"CameraConfig.min_inliers: must be >= 4, got {self.min_inliers}")
        if not self.ransac_threshold > 0:
            raise ValueError(f"CameraConfig.ransac_threshold: must be > 0, "
                             f"got {self.ransac_threshold}")


def _matches_lk(a: np.ndarray, b: np.ndarray, cfg: CameraConfig) -> tuple[np.ndarray, np.ndarray]:
    pts = cv2.goodFeaturesToTrack(a, cfg.max_corners, cfg.quality_level, cfg.min_distance)
    if pts is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    pts = pts.astype(np.float32).reshape(-1, 1, 2)
    win = (cfg.lk_window, cfg.lk_window)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
    p1, st, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, winSize=win, maxLevel=cfg.lk_levels,
                                         criteria=crit)
    p0b, st_b, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, winSize=win, maxLevel=cfg.lk_levels,
                                            criteria=crit)
    fb = np.linalg.norm((p0b - pts).reshape(-1, 2), axis=1)
    ok = (st.ravel() == 1) & (st_b.ravel() == 1) & (fb <= cfg.fb_threshold)
    return pts.reshape(-1, 2)[ok], p1.reshape(-1, 2)[ok]


def _matches_orb(a: np.ndarray, b: np.ndarray,
                 cfg: CameraConfig) -> tuple[np.ndarray, np.ndarray]:
    orb = cv2.ORB_create(nfeatures=cfg.orb_features)
    ka, da = orb.detectAndCompute(a, None)
    kb, db = orb.detectAndCompute(b, None)
    if da is None or db is None or len(ka) < 4 or len(kb) < 4:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(da, db)
    pa = np.float32([ka[m.queryIdx].pt for m in matches]).reshape(-1, 2)
    pb = np.float32([kb[m.trainIdx].pt for m in matches]).reshape(-1, 2)
    return pa, pb


class CameraMotionWarning(UserWarning):
    """Some frame pairs got no homography (the identity was used)."""


def estimate_homography(gray_a: np.ndarray, gray_b: np.ndarray,
                        config: CameraConfig | None = None) -> tuple[np.ndarray, int]:
    """Dominant homography from frame ``a`` to frame ``b``.

    Args:
        gray_a, gray_b: ``[H, W]`` ``uint8`` grayscale frames.
        config: :class:`CameraConfig`; defaults when ``None``.

    Returns:
        ``(H [3, 3] float64, inliers)``: ``H`` maps pixel coordinates of ``a`` to ``b``
        (normalised so ``H[2, 2] == 1``); the identity (and ``inliers = 0``) when fewer than
        ``min_inliers`` RANSAC inliers support a model.
    """
    cfg = config or CameraConfig()
    cfg.validate()
    if cfg.method == "lk":
        pa, pb = _matches_lk(gray_a, gray_b, cfg)
    else:
        pa, pb = _matches_orb(gray_a, gray_b, cfg)
    if len(pa) >= cfg.min_inliers:
        h, mask = cv2.findHomography(pa, pb, cv2.RANSAC, cfg.ransac_threshold, maxIters=2000,
                                     confidence=0.999)
        inliers = int(mask.sum()) if mask is not None else 0
        if h is not None and inliers >= cfg.min_inliers:
            return h / h[2, 2], inliers
    return np.eye(3), 0


def estimate_camera_motion(frames: np.ndarray, config: CameraConfig | None = None) -> np.ndarray:
    """Homographies between consecutive frames.

    Args:
        frames: ``[T, H, W, 3]`` ``uint8`` RGB, or ``[T, H, W]`` ``uint8`` grayscale.
        config: :class:`CameraConfig`; defaults when ``None``.

    Returns:
        ``[T - 1, 3, 3]`` float64; entry ``t`` maps frame ``t`` pixel coordinates to frame
        ``t + 1`` (see the module docstring).
    """
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4):
        raise ValueError(f"frames: expected [T, H, W, 3] or [T, H, W] uint8, "
                         f"got {frames.shape} {frames.dtype}")
    gray = to_gray(frames) if frames.ndim == 4 else frames
    out = np.zeros((max(len(gray) - 1, 0), 3, 3))
    failed = 0
    for t in range(len(gray) - 1):
        out[t], inliers = estimate_homography(gray[t], gray[t + 1], config)
        failed += inliers == 0
    if failed:
        logger.debug("camera motion: %d of %d frame pairs without a homography", failed,
                     len(out))
        # A warning, not a log line: this runs once per clip in every loader worker, and
        # Python shows a warning once per place per process instead of 12,000 times a run.
        warnings.warn("camera motion: some frame pairs had too few RANSAC inliers for a "
                      "homography (frames too small or too plain); the identity is used for "
                      "them, so their camera motion is not removed (shown once per process)",
                      CameraMotionWarning, stacklevel=2)
    return out


def cumulative_homographies(homographies: np.ndarray) -> np.ndarray:
    """``[T - 1, 3, 3]`` frame-to-frame homographies -> ``[T, 3, 3]`` maps from frame 0 to frame
    ``t`` (``M_0 = I``, ``M_{t+1} = H_t @ M_t``)."""
    m = [np.eye(3)]
    for h in homographies:
        nxt = h @ m[-1]
        m.append(nxt / nxt[2, 2])
    return np.stack(m)

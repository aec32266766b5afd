"""Dense-optical-flow point tracker (``"flow"``) and dense-trajectory helpers.

Flow between consecutive frames comes from OpenCV (DIS or Farneback) on grayscale frames,
followed by a 3 x 3 median filter on each flow component. A point is chained frame to frame by
looking the flow up bilinearly at its current sub-pixel position. Every step is checked against
the flow of the opposite direction (looked up at the advected position): the step is accepted
when ``|f(x) + b(x + f(x))| <= fb_threshold`` (with camera compensation, the round trip through
both homographies). A trajectory *ends* at the first failed check or when it leaves the frame;
from then on, in that time direction, it is invisible and holds its last position (for a point
that left the frame, the out-of-frame position it was advected to). Known limit of the check:
next to a moving occluder's leading edge the flow of both directions can be smeared to the
occluder's motion, so a point is pushed along consistently and not ended (on
``benchmarks/tracking.py`` a few percent of occluded entries stay visible).

Flow fields: ``flows[t]`` ``[H, W, 2]`` float32 ``(dx, dy)`` pixels, defined on the pixel grid
of frame ``t`` for forward flow (``t -> t+1``) and of frame ``t+1`` for backward flow
(``t+1 -> t``).

Camera-motion compensation (``FlowConfig.camera_compensation``, "improved dense trajectories"
style): per frame pair a homography ``H_t`` (frame ``t`` -> ``t+1``, see
:mod:`motionmae.motion.camera`) is estimated, frame ``t+1`` is warped by its inverse onto frame
``t`` and the flow is computed against the warped frame, so it is the *residual* motion not
explained by the camera. Points are still followed in the real frames (the step is
``x -> H_t(x + r_t(x))``), but the returned tracks are the positions mapped back into the
**query frame's coordinate system** through the estimated homographies: where the point would
be seen had the camera kept its query-frame pose. A static scene point therefore stays at its
query position however the camera moves, and the displacement ``tracks[t] - tracks[t_q]`` is the
point's own ("object") motion. Visibility still refers to the real frames (in frame, check
passed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from motionmae.motion.camera import CameraConfig, cumulative_homographies, estimate_camera_motion
from motionmae.motion.protocol import (
    apply_homography,
    in_frame,
    patch_grid_queries,
    sample_bilinear,
    to_gray,
    validate_inputs,
    validate_queries,
)
from motionmae.motion.registry import register_tracker

__all__ = [
    "FlowConfig",
    "FlowTracker",
    "chain_dense_grid",
    "chain_flow",
    "dense_flow",
    "track_flow",
]

logger = logging.getLogger(__name__)

_DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


@dataclass
class FlowConfig:
    """Settings of the dense-flow tracker (pixels).

    Attributes:
        method: ``"dis"`` (``cv2.DISOpticalFlow``) or ``"farneback"``
            (``cv2.calcOpticalFlowFarneback``).
        dis_preset: DIS preset, ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        dis_finest_scale: DIS finest pyramid scale (``setFinestScale``; 0 = full resolution).
            The ultrafast and fast presets stop at scale 2 (flow on a 56 x 56 grid for 224 px
            frames), which drifts by pixels over a few frames; ``None`` keeps the preset's.
        dis_patch_size, dis_patch_stride: override the preset's DIS patch size / stride.
        farneback_levels, farneback_winsize, farneback_iterations, farneback_poly_n,
            farneback_poly_sigma: ``calcOpticalFlowFarneback`` settings (pyramid scale 0.5).
        median: median-filter aperture applied to each flow component (3 or 5; 0 or 1 off).
        fb_threshold: maximum forward-backward round-trip error of a step, pixels.
        camera_compensation: estimate camera homographies and track residual ("object")
            motion; see the module docstring for what tracks mean then.
        camera: settings of the homography estimator.

    The defaults were chosen on ``benchmarks/tracking.py`` (docs/benchmarks.md, "Figures
    behind defaults"): DIS ``fast`` at finest scale 1 trades accuracy against speed among the
    presets and scales; it drifts a little on fine texture (grass), which
    ``dis_finest_scale=0`` reduces at several times the cost. Farneback (these settings;
    others tried were no better) is biased on textured content and stalls in flat areas.
    """

    method: str = "dis"
    dis_preset: str = "fast"
    dis_finest_scale: int | None = 1
    dis_patch_size: int | None = None
    dis_patch_stride: int | None = None
    farneback_levels: int = 3
    farneback_winsize: int = 15
    farneback_iterations: int = 3
    farneback_poly_n: int = 5
    farneback_poly_sigma: float = 1.2
    median: int = 3
    fb_threshold: float = 1.0
    camera_compensation: bool = False
    camera: CameraConfig = field(default_factory=CameraConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.method not in ("dis", "farneback"):
            raise ValueError(f"FlowConfig.method: must be 'dis' or 'farneback', "
                             f"got {self.method!r}")
        if self.dis_preset not in _DIS_PRESETS:
            raise ValueError(f"FlowConfig.dis_preset: must be one of {sorted(_DIS_PRESETS)}, "
                             f"got {self.dis_preset!r}")
        if self.dis_finest_scale is not None and self.dis_finest_scale < 0:
            raise ValueError(f"FlowConfig.dis_finest_scale: must be >= 0 or None, "
                             f"got {self.dis_finest_scale}")
        if self.median not in (0, 1, 3, 5):
            raise ValueError(f"FlowConfig.median: must be 0, 1, 3 or 5, got {self.median}")
        if not self.fb_threshold > 0:
            raise ValueError(f"FlowConfig.fb_threshold: must be > 0 pixels, "
                             f"got {self.fb_threshold}")
        self.camera.validate()


class _FlowEngine:
    """Computes median-filtered flow between two grayscale frames."""

    def __init__(self, cfg: FlowConfig):
        self.cfg = cfg
        self.dis = None
        if cfg.method == "dis":
            self.dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[cfg.dis_preset])
            if cfg.dis_finest_scale is not None:
                self.dis.setFinestScale(cfg.dis_finest_scale)
            if cfg.dis_patch_size is not None:
                self.dis.setPatchSize(cfg.dis_patch_size)
            if cfg.dis_patch_stride is not None:
                self.dis.setPatchStride(cfg.dis_patch_stride)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        c = self.cfg
        if self.dis is not None:
            flow = self.dis.calc(a, b, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, c.farneback_levels,
                                                c.farneback_winsize, c.farneback_iterations,
                                                c.farneback_poly_n, c.farneback_poly_sigma, 0)
        if c.median > 1:
            flow = np.stack([cv2.medianBlur(np.ascontiguousarray(flow[..., i]), c.median)
                             for i in range(2)], axis=-1)
        return flow.astype(np.float32, copy=False)


def _warp(gray: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``out(x) = gray(h @ x)``: resample ``gray`` onto the grid whose points ``h`` maps into
    it (border replicated)."""
    rows, cols = gray.shape
    return cv2.warpPerspective(gray, h, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def dense_flow(frames: np.ndarray, config: FlowConfig | None = None, backward: bool = False,
               homographies: np.ndarray | None = None) -> np.ndarray:
    """Dense optical flow between consecutive frames.

    Args:
        frames: ``[T, H, W, 3]`` ``uint8`` RGB or ``[T, H, W]`` ``uint8`` grayscale, ``T >= 2``.
        config: :class:`FlowConfig` (method, DIS/Farneback settings, median filter); its
            ``camera_compensation`` is ignored here, pass ``homographies`` instead.
        backward: ``False``: ``flows[t]`` is the flow from frame ``t`` to ``t+1`` on frame
            ``t``'s pixel grid; ``True``: from frame ``t+1`` to ``t`` on frame ``t+1``'s grid.
        homographies: optional ``[T-1, 3, 3]`` camera homographies (frame ``t`` -> ``t+1``). When
            given, the flows are residuals after warping the target frame by the camera motion:
            forward, frame ``t+1`` is sampled at ``H_t x`` and the true position of ``x`` in
            frame ``t+1`` is ``H_t (x + flow)``; backward, frame ``t`` is sampled at
            ``H_t^-1 y`` and the position in frame ``t`` is ``H_t^-1 (y + flow)``.

    Returns:
        ``[T-1, H, W, 2]`` float32 flows ``(dx, dy)`` in pixels.
    """
    cfg = config or FlowConfig()
    cfg.validate()
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or len(frames) < 2:
        raise ValueError(f"frames: expected [T, H, W, 3] or [T, H, W] uint8 with T >= 2, "
                         f"got {frames.shape} {frames.dtype}")
    gray = to_gray(frames) if frames.ndim == 4 else frames
    if homographies is not None and np.shape(homographies) != (len(gray) - 1, 3, 3):
        raise ValueError(f"homographies: expected shape {(len(gray) - 1, 3, 3)}, "
                         f"got {np.shape(homographies)}")
    engine = _FlowEngine(cfg)
    out = np.empty((len(gray) - 1, *gray.shape[1:], 2), np.float32)
    for t in range(len(gray) - 1):
        a, b = (gray[t + 1], gray[t]) if backward else (gray[t], gray[t + 1])
        if homographies is not None:
            h = np.linalg.inv(homographies[t]) if backward else homographies[t]
            b = _warp(b, h)
        out[t] = engine(a, b)
    return out


def _step(flow: np.ndarray, h: np.ndarray | None, pts: np.ndarray) -> np.ndarray:
    """Advect ``[n, 2]`` points by a flow field (and a homography applied after it)."""
    moved = pts + sample_bilinear(flow, pts)
    return moved if h is None else apply_homography(h, moved)


def chain_flow(forward_flows: np.ndarray, backward_flows: np.ndarray, queries: np.ndarray,
               fb_threshold: float = 1.0,
               homographies: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Chain flow fields into point trajectories, forwards and backwards from each query frame.

    Args:
        forward_flows: ``[T-1, H, W, 2]`` from :func:`dense_flow` (``backward=False``).
        backward_flows: ``[T-1, H, W, 2]`` from :func:`dense_flow` (``backward=True``).
        queries: ``[N, 3]`` rows ``(t, x, y)`` pixels.
        fb_threshold: maximum forward-backward round-trip error of one step, pixels.
        homographies: ``[T-1, 3, 3]`` camera homographies the flows were computed with
            (residual flows), or ``None`` for plain flows.

    Returns:
        ``(tracks [T, N, 2] float32, visible [T, N] bool)``. Without ``homographies``, tracks
        are pixel positions in each frame; with them, positions in the query frame's coordinate
        system with camera motion removed (see the module docstring). Ended trajectories are
        invisible and hold their last position.
    """
    fwd = np.asarray(forward_flows, np.float32)
    bwd = np.asarray(backward_flows, np.float32)
    if fwd.ndim != 4 or fwd.shape[-1] != 2 or fwd.shape != bwd.shape or len(fwd) < 1:
        raise ValueError(f"forward_flows, backward_flows: expected equal shapes [T-1, H, W, 2] "
                         f"with T >= 2, got {fwd.shape} and {bwd.shape}")
    if not fb_threshold > 0:
        raise ValueError(f"fb_threshold: must be > 0 pixels, got {fb_threshold}")
    t_len, h, w = fwd.shape[0] + 1, fwd.shape[1], fwd.shape[2]
    q = validate_queries(np.asarray(queries), t_len, h, w)
    hs = None
    if homographies is not None:
        hs = np.asarray(homographies, np.float64)
        if hs.shape != (t_len - 1, 3, 3):
            raise ValueError(f"homographies: expected shape {(t_len - 1, 3, 3)}, "
                             f"got {hs.shape}")
    n = len(q)
    qt = q[:, 0].astype(np.int64)
    tracks = np.zeros((t_len, n, 2), np.float32)
    visible = np.zeros((t_len, n), bool)
    tracks[qt, np.arange(n)] = q[:, 1:]
    visible[qt, np.arange(n)] = True
    his = None if hs is None else np.linalg.inv(hs)
    cum = None if hs is None else cumulative_homographies(hs)

    def pair_maps(forward: bool, pair: int):
        if forward:
            return (fwd[pair], None if hs is None else hs[pair],
                    bwd[pair], None if his is None else his[pair])
        return (bwd[pair], None if his is None else his[pair],
                fwd[pair], None if hs is None else hs[pair])

    for forward in (True, False):
        started = np.zeros(n, bool)
        alive = np.zeros(n, bool)
        cur = q[:, 1:].copy()  # positions in the current frame
        out = q[:, 1:].copy()  # what is reported (query-frame coords when compensating)
        order = range(t_len - 1) if forward else range(t_len - 1, 0, -1)
        for t in order:
            joining = qt == t
            started |= joining
            alive |= joining
            nxt = t + 1 if forward else t - 1
            idx = np.flatnonzero(alive)
            if len(idx):
                f, hf, b, hb = pair_maps(forward, t if forward else t - 1)
                p0 = cur[idx]
                p1 = _step(f, hf, p0)
                inside = in_frame(p1, h, w)
                err = np.linalg.norm(_step(b, hb, p1) - p0, axis=1)
                ok = inside & (err <= fb_threshold)
                moved = idx[ok | ~inside]  # an exit still records where the point went
                cur[moved] = p1[ok | ~inside]
                if cum is None:
                    out[moved] = cur[moved]
                else:
                    out[moved] = _to_query_frame(cur[moved], nxt, qt[moved], cum)
                alive[idx[~ok]] = False
            tracks[nxt, started] = out[started]
            visible[nxt, started] = alive[started]
    return tracks, visible


def _to_query_frame(points: np.ndarray, t: int, qt: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Map ``[n, 2]`` frame-``t`` pixels into each point's query-frame coordinates,
    ``M_{t_q} M_t^-1 x``, with ``cum [T, 3, 3]`` the frame-0 -> frame-``t`` homographies."""
    x = np.concatenate([points.astype(np.float64), np.ones((len(points), 1))], axis=1)
    z = x @ np.linalg.inv(cum[t]).T  # frame-0 coordinates
    o = np.einsum("nij,nj->ni", cum[qt], z)
    return (o[:, :2] / o[:, 2:]).astype(np.float32)


def chain_dense_grid(forward_flows: np.ndarray, backward_flows: np.ndarray, patch: int,
                     per_side: int, t: int = 0, fb_threshold: float = 1.0,
                     homographies: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense trajectories of ``K = per_side ** 2`` points per patch, seeded in frame ``t``.

    The points of :func:`~motionmae.motion.protocol.patch_grid_queries` (``P`` patches of
    ``patch`` x ``patch`` pixels, ViT token order) are chained through the flows with
    :func:`chain_flow`, forwards and backwards from frame ``t``.

    Args:
        forward_flows, backward_flows: ``[T-1, H, W, 2]`` from :func:`dense_flow`.
        patch: patch side, pixels. per_side: points per patch side.
        t: seed frame. fb_threshold: pixels. homographies: as in :func:`chain_flow`.

    Returns:
        ``(tracks [T, P, K, 2] float32 (x, y) pixels, visible [T, P, K] bool)``.
    """
    h, w = np.shape(forward_flows)[1:3]
    q = patch_grid_queries(h, w, patch, per_side, t)
    tracks, visible = chain_flow(forward_flows, backward_flows, q, fb_threshold, homographies)
    k = per_side * per_side
    return tracks.reshape(len(tracks), -1, k, 2), visible.reshape(len(visible), -1, k)


def track_flow(frames: np.ndarray, queries: np.ndarray,
               config: FlowConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Track query points by chaining dense optical flow (see the module docstring).

    Args:
        frames: ``[T, H, W, 3]`` ``uint8`` RGB.
        queries: ``[N, 3]`` rows ``(t, x, y)`` pixels (pixel centres at integers).
        config: :class:`FlowConfig`; defaults when ``None``.

    Returns:
        ``(tracks [T, N, 2] float32 (x, y) pixels, visible [T, N] bool)``; with
        ``camera_compensation`` the tracks are in query-frame coordinates with camera motion
        removed.
    """
    cfg = config or FlowConfig()
    cfg.validate()
    frames, q = validate_inputs(frames, queries)
    t_len = frames.shape[0]
    if t_len == 1 or len(q) == 0:
        n = len(q)
        tracks = np.zeros((t_len, n, 2), np.float32)
        visible = np.zeros((t_len, n), bool)
        tracks[q[:, 0].astype(np.int64), np.arange(n)] = q[:, 1:]
        visible[q[:, 0].astype(np.int64), np.arange(n)] = True
        return tracks, visible
    gray = to_gray(frames)
    hs = estimate_camera_motion(gray, cfg.camera) if cfg.camera_compensation else None
    fwd = dense_flow(gray, cfg, backward=False, homographies=hs)
    bwd = dense_flow(gray, cfg, backward=True, homographies=hs)
    return chain_flow(fwd, bwd, q, cfg.fb_threshold, hs)


@register_tracker("flow", FlowConfig)
class FlowTracker:
    """:class:`~motionmae.motion.protocol.PointTracker` using :func:`track_flow`.

    ``FlowTracker(config=None)``; ``track(frames [T,H,W,3] uint8, queries [N,3] (t, x, y))`` ->
    ``(tracks [T,N,2] float32 pixels, visible [T,N] bool)``.
    """

    name = "flow"

    def __init__(self, config: FlowConfig | None = None):
        self.config = config or FlowConfig()
        self.config.validate()

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """See :func:`track_flow`."""
        return track_flow(frames, queries, self.config)

    def __repr__(self) -> str:
        return f"FlowTracker({self.config})"

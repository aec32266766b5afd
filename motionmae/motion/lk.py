"""Pyramidal Lucas-Kanade point tracker (the default backend, ``"lk"``).

Points are tracked frame to frame with ``cv2.calcOpticalFlowPyrLK``, all live points of a frame
pair in one call (no Python loop over points), on a grayscale copy of the clip made once.

Each step is verified twice:

1. forward-backward: the point found in frame ``t+1`` is tracked back to frame ``t`` and must
   land within ``fb_threshold`` pixels of where it started (LK status must be 1 both ways, and
   the new position inside the frame);
2. appearance: the ``patch`` x ``patch`` neighbourhood at the new position must still look like
   the one at the query position (see :func:`~motionmae.motion.protocol.appearance_match`).
   This catches what (1) cannot: a textured occluder sliding over a point drags the LK window
   along with it, forwards and backwards alike.

A point failing either check is *lost*: LK stops tracking it, and (``lost="carry"``) its
position moves on with the median displacement of its ``neighbours`` nearest tracked points, so
it follows the scene behind an occluder or across a textureless area (``lost="hold"`` keeps the
last tracked position instead). While lost, a point is reported visible exactly when it is in
the frame and its appearance check passes at the carried position (the occluder has moved on,
or a flat area still looks flat), and with ``reacquire`` LK tries to find it again straight from
its query frame each step, after which it is tracked normally.

Queries may start at any frame. One forward sweep over frame pairs ``(t, t+1)`` tracks every
point whose query frame is ``<= t``, points joining at their query frame; one backward sweep
does the same in reverse. The cost is ``2 * (T - 1)`` pairs of LK calls whatever the query
frames (plus the re-acquisition calls, one pair per distinct query frame of the lost points).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import fields
from typing import TYPE_CHECKING

import cv2
import numpy as np

from motionmae.motion.lk_config import LKConfig
from motionmae.motion.protocol import (
    BatchedTracker,
    in_frame,
    match_patches,
    patch_stats,
    sample_patches,
    to_gray,
    validate_inputs,
)
from motionmae.motion.registry import register_tracker

if TYPE_CHECKING:
    import torch

__all__ = ["LKConfig", "LKTracker", "batched_lk", "track_lk"]

logger = logging.getLogger(__name__)


def _lk(gray: np.ndarray, a: int, b: int, pts: np.ndarray, guess: np.ndarray | None,
        cfg: LKConfig) -> tuple[np.ndarray, np.ndarray]:
    """LK of ``[n, 2]`` points from frame ``a`` to ``b`` starting at ``guess`` (``None``: no
    motion); returns ``(new [n, 2] float32, ok [n] bool)``."""
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, cfg.iterations, cfg.epsilon)
    p0 = np.ascontiguousarray(pts, np.float32).reshape(-1, 1, 2)
    if guess is None:
        nxt, flags = None, 0
    else:
        nxt = np.ascontiguousarray(guess, np.float32).reshape(-1, 1, 2)
        flags = cv2.OPTFLOW_USE_INITIAL_FLOW
    p1, st, _ = cv2.calcOpticalFlowPyrLK(gray[a], gray[b], p0, nxt,
                                         winSize=(cfg.window, cfg.window), maxLevel=cfg.levels,
                                         criteria=criteria, flags=flags,
                                         minEigThreshold=cfg.min_eigen)
    return p1.reshape(-1, 2), st.reshape(-1).astype(bool)


def _lk_checked(gray: np.ndarray, a: int, b: int, pts: np.ndarray, guess: np.ndarray | None,
                cfg: LKConfig, back_guess: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """LK from ``a`` to ``b`` plus the backward check; ``(new [n, 2], ok [n])``.

    The backward call starts from zero motion unless ``back_guess`` is given: starting it at
    ``pts`` would make the check weak (LK tends to stay at a correct initial guess)."""
    h, w = gray.shape[1:]
    p1, ok_f = _lk(gray, a, b, pts, guess, cfg)
    p0b, ok_b = _lk(gray, b, a, p1, back_guess, cfg)
    fb = np.linalg.norm(p0b - pts, axis=1)
    return p1, ok_f & ok_b & (fb <= cfg.fb_threshold) & in_frame(p1, h, w)


def _neighbour_motion(points: np.ndarray, anchors: np.ndarray, disp: np.ndarray,
                      k: int) -> np.ndarray:
    """Median displacement of the ``k`` anchors nearest to each point.

    ``points [L, 2]``, ``anchors [A, 2]`` and their displacements ``disp [A, 2]`` (pixels);
    returns ``[L, 2]`` float32 (zeros when there are no anchors).
    """
    if len(anchors) == 0 or len(points) == 0:
        return np.zeros((len(points), 2), np.float32)
    d2 = ((points[:, None, :] - anchors[None, :, :]) ** 2).sum(-1)  # [L, A]
    if k < len(anchors):
        near = np.argpartition(d2, k - 1, axis=1)[:, :k]
        return np.median(disp[near], axis=1).astype(np.float32)
    return np.broadcast_to(np.median(disp, axis=0), points.shape).astype(np.float32)


class _Appearance:
    """Query-frame templates and the appearance test of :class:`LKConfig`."""

    def __init__(self, gray: np.ndarray, q: np.ndarray, cfg: LKConfig):
        self.gray, self.cfg = gray, cfg
        self.templates = None
        if cfg.patch:
            qt = q[:, 0].astype(np.int64)
            templates = np.empty((len(q), cfg.patch ** 2), np.float32)
            for s in np.unique(qt):
                sel = qt == s
                templates[sel] = sample_patches(gray[s], q[sel, 1:], cfg.patch)
            # the templates' statistics once, not at every check
            self.templates = patch_stats(templates)

    def check(self, t: int, idx: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """``[n]`` bool: do points ``idx`` at ``pts [n, 2]`` in frame ``t`` look like their
        query patches (all ``True`` when the check is disabled)."""
        if self.templates is None or len(idx) == 0:
            return np.ones(len(idx), bool)
        c = self.cfg
        patches = patch_stats(sample_patches(self.gray[t], pts, c.patch))
        return match_patches(self.templates[idx], patches, c.ncc_threshold, c.flat_std,
                             c.flat_mean)


def _sweep(gray: np.ndarray, q: np.ndarray, cfg: LKConfig, look: _Appearance, forward: bool,
           tracks: np.ndarray, visible: np.ndarray) -> None:
    """Track every query away from its query frame in one time direction, filling ``tracks``
    ``[T, N, 2]`` and ``visible`` ``[T, N]`` in place for the frames on that side."""
    t_len, h, w = gray.shape
    qt = q[:, 0].astype(np.int64)
    qp = q[:, 1:].astype(np.float32)
    cur = qp.copy()  # [N, 2] current positions (tracked, or carried while lost)
    vel = np.zeros_like(cur)  # last displacement, for the motion prediction
    tracked = np.zeros(len(q), dtype=bool)  # followed by LK (not lost)
    started = np.zeros(len(q), dtype=bool)
    order = range(t_len) if forward else range(t_len - 1, -1, -1)
    step = 1 if forward else -1
    for t in order:
        joining = qt == t
        tracked |= joining
        started |= joining
        nxt = t + step
        if nxt < 0 or nxt >= t_len:
            break
        idx = np.flatnonzero(tracked)
        anchors = np.zeros((0, 2), np.float32)
        disp = np.zeros((0, 2), np.float32)
        if len(idx):
            p0 = cur[idx]
            p1, ok = _lk_checked(gray, t, nxt, p0, p0 + vel[idx] if cfg.predict_motion else None,
                                 cfg)
            ok[ok] = look.check(nxt, idx[ok], p1[ok])
            anchors, disp = p0[ok], p1[ok] - p0[ok]
            vel[idx[ok]] = disp
            cur[idx[ok]] = p1[ok]
            tracked[idx[~ok]] = False
        lost = np.flatnonzero(started & ~tracked)
        if len(lost) and cfg.lost == "carry":
            move = _neighbour_motion(cur[lost], anchors, disp, cfg.neighbours)
            cur[lost] += move
            vel[lost] = move
        if len(lost) and cfg.reacquire:
            _reacquire(gray, nxt, lost, qt, qp, cur, tracked, look, cfg)
            lost = lost[~tracked[lost]]
        vis = tracked.copy()
        if len(lost):
            inside = lost[in_frame(cur[lost], h, w)]
            vis[inside] = look.check(nxt, inside, cur[inside]) if look.templates is not None \
                else False
        tracks[nxt, started] = cur[started]
        visible[nxt, started] = vis[started]


def _reacquire(gray: np.ndarray, t: int, lost: np.ndarray, qt: np.ndarray, qp: np.ndarray,
               cur: np.ndarray, tracked: np.ndarray, look: _Appearance, cfg: LKConfig) -> None:
    """Try to find lost points again in frame ``t``: LK straight from each point's query frame
    (starting from its current, carried position), backward and appearance checks; updates
    ``cur`` and ``tracked`` in place for the points found."""
    h, w = gray.shape[1:]
    cand = lost[in_frame(cur[lost], h, w)]
    for s in np.unique(qt[cand]):
        grp = cand[qt[cand] == s]
        p1, ok = _lk_checked(gray, int(s), t, qp[grp], cur[grp], cfg, qp[grp])
        ok[ok] = look.check(t, grp[ok], p1[ok])
        cur[grp[ok]] = p1[ok]
        tracked[grp[ok]] = True


def track_lk(frames: np.ndarray, queries: np.ndarray,
             config: LKConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Track query points with pyramidal Lucas-Kanade, forward-backward and appearance checks.

    Args:
        frames: ``[T, H, W, 3]`` ``uint8`` RGB.
        queries: ``[N, 3]`` rows ``(t, x, y)``: query frame and pixel position (pixel centres
            at integers).
        config: :class:`LKConfig`; defaults when ``None``.

    Returns:
        ``(tracks [T, N, 2] float32 (x, y) pixels, visible [T, N] bool)``. Each point is
        tracked forwards and backwards from its query frame, where it is visible at the query
        position. See the module docstring for lost points and visibility.
    """
    cfg = config or LKConfig()
    cfg.validate()
    return _track_lk(frames, queries, cfg)


def _track_lk(frames: np.ndarray, queries: np.ndarray,
              cfg: LKConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`track_lk` with a validated ``cfg``."""
    frames, q = validate_inputs(frames, queries)
    t_len = frames.shape[0]
    n = len(q)
    tracks = np.zeros((t_len, n, 2), np.float32)
    visible = np.zeros((t_len, n), bool)
    if n == 0:
        return tracks, visible
    qt = q[:, 0].astype(np.int64)
    tracks[qt, np.arange(n)] = q[:, 1:]
    visible[qt, np.arange(n)] = True
    if t_len == 1:
        return tracks, visible
    gray = to_gray(frames)
    look = _Appearance(gray, q, cfg)
    if np.any(qt < t_len - 1):
        _sweep(gray, q, cfg, look, True, tracks, visible)
    if np.any(qt > 0):
        _sweep(gray, q, cfg, look, False, tracks, visible)
    return tracks, visible


def batched_lk(cfg: LKConfig) -> BatchedTracker | None:
    """The batched form of the ``lk`` and ``torch_lk`` trackers (``tracking.where: step``):
    :func:`~motionmae.motion.batched_tracker.track_lk_batched` with ``cfg``'s LK settings (a
    ``torch_lk`` section's ``device`` aside: it runs where the frames are), or ``None`` with
    ``reacquire``, which it does not do."""
    if cfg.reacquire:
        return None
    settings = LKConfig(**{f.name: getattr(cfg, f.name) for f in fields(LKConfig)})
    return functools.partial(_track_batched, config=settings)


def _track_batched(frames: torch.Tensor, queries: torch.Tensor,
                   config: LKConfig) -> tuple[torch.Tensor, torch.Tensor]:
    from motionmae.motion.batched_tracker import track_lk_batched  # torch, on first use

    return track_lk_batched(frames, queries, config)


@register_tracker("lk", LKConfig, batched=batched_lk)
class LKTracker:
    """:class:`~motionmae.motion.protocol.PointTracker` using :func:`track_lk`.

    ``LKTracker(config=None)``; ``track(frames [T,H,W,3] uint8, queries [N,3] (t, x, y))`` ->
    ``(tracks [T,N,2] float32 pixels, visible [T,N] bool)``.
    """

    name = "lk"

    def __init__(self, config: LKConfig | None = None):
        self.config = config or LKConfig()
        self.config.validate()

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """See :func:`track_lk`."""
        return _track_lk(frames, queries, self.config)  # validated when built

    def __repr__(self) -> str:
        return f"LKTracker({self.config})"

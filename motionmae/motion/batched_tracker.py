"""The ``lk`` tracker's algorithm for a batch of clips at once, in PyTorch, on any device.

:func:`track_lk_batched` follows :mod:`motionmae.motion.lk` step for step, with the same
:class:`~motionmae.motion.lk.LKConfig` (the ``lk`` tracker's settings mean the same here):
every point moves frame to frame by pyramidal LK (:mod:`motionmae.motion.batched_lk`, OpenCV's
algorithm), each step checked backwards (``fb_threshold``) and by appearance (``patch``,
``ncc_threshold``, ``flat_std``, ``flat_mean``: the query patch against the patch at the new
position); a point failing either is lost, then moves on with the median displacement of its
``neighbours`` nearest tracked points (``lost="carry"``) or stays (``"hold"``), and is
visible while lost exactly when it is in the frame and its patch matches again.
``predict_motion`` works too; ``reacquire`` is refused (finding lost points again from their
own query frames needs per-point frame pairs: use the ``lk`` tracker).

Queries may start at any frame: each point is tracked forwards and backwards from its own query
frame, both time directions in one batch (a backward sweep is a forward sweep of the reversed
clip). Whole clips and all their points move together; points not yet started (query frame
ahead) or stopped are computed and masked, so the work is ``T - 1`` LK pairs (a step and its
check) per clip and time direction whatever the queries. When ``queries`` are on the CPU they
are checked and a sweep no query needs (the backward one for queries at frame 0) is skipped:
reading host memory is free. Queries on an accelerator are used as given and both sweeps run,
which keeps the call free of host syncs.

No Python loop over points or clips (loops over frames, pyramid levels and iterations only),
no host sync, float32 inside whatever the autocast, deterministic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionmae.motion.batched_lk import Pyramid, constant_pair, gray_levels, lk_step, to_gray
from motionmae.motion.lk_config import LKConfig
from motionmae.motion.protocol import appearance_match, in_frame, validate_queries

__all__ = ["track_lk_batched"]


def _check_inputs(frames: torch.Tensor, queries: torch.Tensor) -> None:
    """Shapes and dtypes of a batched call (values too when ``queries`` are on the CPU);
    ``ValueError`` naming the argument."""
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"frames: expected a torch tensor [B, T, H, W, 3], "
                         f"got {type(frames).__name__}")
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected shape [B, T, H, W, 3] (ndim 5, RGB), "
                         f"got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8 and not frames.dtype.is_floating_point:
        raise ValueError(f"frames: expected dtype uint8 or a float dtype (grey levels "
                         f"0..255), got {frames.dtype}")
    b, t, h, w = frames.shape[:4]
    if t < 1 or h < 2 or w < 2:
        raise ValueError(f"frames: need T >= 1 and H, W >= 2, got shape {tuple(frames.shape)}")
    if not isinstance(queries, torch.Tensor):
        raise ValueError(f"queries: expected a torch tensor [B, N, 3], "
                         f"got {type(queries).__name__}")
    if queries.ndim != 3 or queries.shape[-1] != 3 or queries.shape[0] != b:
        raise ValueError(f"queries: expected shape [B, N, 3] with rows (t, x, y) and B = {b} "
                         f"as frames, got shape {tuple(queries.shape)}")
    if queries.dtype == torch.bool or queries.is_complex():
        raise ValueError(f"queries: expected a real (float or int) dtype, got {queries.dtype}")
    if queries.device.type == "cpu":
        rows = queries.detach().double().numpy()  # host memory, read as numpy: no tensor op
        try:
            validate_queries(rows.reshape(-1, 3), t, h, w)  # every clip at once
        except ValueError:
            for clip, clip_rows in enumerate(rows):  # only to name the clip in the error
                try:
                    validate_queries(clip_rows, t, h, w)
                except ValueError as error:
                    raise ValueError(f"clip {clip}: {error}") from None


def _sweeps(queries: torch.Tensor, num_frames: int) -> tuple[bool, bool]:
    """Which sweeps ``(forward, backward)`` some query needs; both unless ``queries`` are
    in host memory, where looking costs no sync."""
    if queries.device.type != "cpu":
        return True, True
    qt = queries.detach()[..., 0].numpy()  # host memory, read as numpy: no tensor op
    return bool((qt < num_frames - 1).any()), bool((qt > 0).any())


def _patches(gray: torch.Tensor, points: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` x ``size`` bilinear patches of ``[M, H, W]`` grey frames around ``[M, N, 2]``
    ``(x, y)`` pixels, border replicated (as the ``lk`` tracker's); ``[M, N, size * size]``."""
    h, w = gray.shape[-2:]
    r = torch.arange(size, device=gray.device, dtype=torch.float32) - (size - 1) / 2.0
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    pos = points[:, :, None, :] + torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)
    scale = constant_pair(2.0 / (w - 1), 2.0 / (h - 1), gray.device)
    return F.grid_sample(gray[:, None], pos * scale - 1.0, mode="bilinear",
                         padding_mode="border", align_corners=True)[:, 0]


def _neighbour_motion(points: torch.Tensor, anchors: torch.Tensor, disp: torch.Tensor,
                      is_anchor: torch.Tensor, k: int) -> torch.Tensor:
    """Median displacement of the ``k`` anchors nearest to each point (all anchors when
    there are fewer; zero when there are none), per clip row.

    ``points, anchors, disp``: ``[M, N, 2]``; ``is_anchor``: ``[M, N]`` bool. Returns
    ``[M, N, 2]`` (the median of an even count is the mean of the middle two, as numpy's).
    """
    m, n = is_anchor.shape
    k = min(k, n)
    d2 = ((points[:, :, None, :] - anchors[:, None, :, :]) ** 2).sum(-1)  # [M, N, N]
    d2 = d2.masked_fill(~is_anchor[:, None, :], float("inf"))
    near_d2, near = d2.topk(k, dim=-1, largest=False)  # [M, N, k]
    valid = torch.isfinite(near_d2)
    count = valid.sum(-1, keepdim=True)  # [M, N, 1]: min(k, anchors of the clip)
    values = torch.gather(disp[:, None].expand(m, n, n, 2), 2,
                          near[..., None].expand(m, n, k, 2))
    values = values.masked_fill(~valid[..., None], float("inf")).sort(dim=2).values
    low = ((count - 1).clamp(min=0) // 2)[..., None].expand(m, n, 1, 2)
    high = (count // 2).clamp(max=k - 1)[..., None].expand(m, n, 1, 2)
    median = 0.5 * (values.gather(2, low) + values.gather(2, high))[:, :, 0]
    return torch.where(count > 0, median, torch.zeros_like(median))


class _Sweep:
    """State of ``M`` lanes (one clip in one time direction each) moving one frame per
    :meth:`step`; positions and visibility of each reached frame are kept in ``frames``."""

    def __init__(self, query_t: torch.Tensor, query_xy: torch.Tensor,
                 templates: torch.Tensor | None, size: tuple[int, int], cfg: LKConfig):
        self.query_t, self.templates, self.size, self.cfg = query_t, templates, size, cfg
        self.cur = query_xy.clone()  # [M, N, 2] tracked, or carried while lost
        self.vel = torch.zeros_like(self.cur)  # last displacement, for predict_motion
        self.tracked = torch.zeros_like(query_t, dtype=torch.bool)
        self.frames: list[tuple[torch.Tensor, torch.Tensor]] = [
            (query_xy, torch.ones_like(self.tracked))]

    def _looks_right(self, gray: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        patches = _patches(gray, points, cfg.patch)
        return appearance_match(self.templates.flatten(0, 1), patches.flatten(0, 1),
                                cfg.ncc_threshold, cfg.flat_std,
                                cfg.flat_mean).view(self.tracked.shape)

    def step(self, k: int, first: Pyramid, second: Pyramid, gray: torch.Tensor) -> None:
        """Lane frame ``k`` -> ``k + 1``: ``first``/``second`` are those frames' pyramids,
        ``gray [M, H, W]`` frame ``k + 1``'s grey levels."""
        cfg, (h, w) = self.cfg, self.size
        started = self.query_t <= k
        self.tracked = self.tracked | (self.query_t == k)
        p0 = self.cur
        p1, ok = lk_step(first, second, p0, p0 + self.vel if cfg.predict_motion else p0, cfg)
        back, ok_back = lk_step(second, first, p1, p1, cfg)  # from zero motion: a real check
        ok = (ok & ok_back & self.tracked & in_frame(p1, h, w)
              & (torch.linalg.vector_norm(back - p0, dim=-1) <= cfg.fb_threshold))
        if self.templates is not None:
            ok = ok & self._looks_right(gray, p1)
        disp = p1 - p0
        cur = torch.where(ok[..., None], p1, p0)
        vel = torch.where(ok[..., None], disp, self.vel)
        lost = started & ~ok
        if cfg.lost == "carry":
            move = _neighbour_motion(cur, p0, disp, ok, cfg.neighbours)
            cur = torch.where(lost[..., None], cur + move, cur)
            vel = torch.where(lost[..., None], move, vel)
        visible = ok
        if self.templates is not None:
            visible = ok | (lost & in_frame(cur, h, w) & self._looks_right(gray, cur))
        self.cur, self.vel, self.tracked = cur, vel, ok
        self.frames.append((cur, visible))


def _query_templates(gray: torch.Tensor, query_t: torch.Tensor, query_xy: torch.Tensor,
                     size: int) -> torch.Tensor:
    """The ``lk`` tracker's appearance templates: ``[B, N, size * size]`` patches of each
    query's own frame (``gray [B, T, H, W]``) at its query position."""
    b, t = gray.shape[:2]
    n = query_xy.shape[1]
    every = _patches(gray.flatten(0, 1), query_xy.repeat_interleave(t, dim=0), size)
    every = every.view(b, t, n, -1)
    pick = query_t[:, None, :, None].expand(b, 1, n, every.shape[-1])
    return every.gather(1, pick)[:, 0]


def track_lk_batched(frames: torch.Tensor, queries: torch.Tensor,
                     config: LKConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Track query points through a batch of clips with the ``lk`` tracker's algorithm.

    Args:
        frames: ``[B, T, H, W, 3]`` RGB, ``uint8`` or float grey levels ``0..255``, on any
            device (the work runs there).
        queries: ``[B, N, 3]`` rows ``(t, x, y)`` per clip: integer query frame and pixel
            position (pixel centres at integers), on any device; on the CPU they are
            checked, and the sweeps no query needs are skipped (see the module docstring).
        config: :class:`~motionmae.motion.lk.LKConfig` (``reacquire`` must be off);
            defaults when ``None``.

    Returns:
        ``(tracks [B, T, N, 2] float32 (x, y) pixels, visible [B, T, N] bool)`` on the frames'
        device; every point at its query position and visible in its query frame.

    Raises:
        ValueError: a bad setting, shape or dtype (and bad query values on the CPU),
            naming it.
    """
    cfg = config or LKConfig()
    cfg.validate()
    if cfg.reacquire:
        raise ValueError("LKConfig.reacquire: not supported by the batched tracker (finding "
                         "lost points again needs each point's own query frame); use the lk "
                         "tracker, or reacquire=False")
    _check_inputs(frames, queries)
    forward, backward = _sweeps(queries, frames.shape[1])
    if frames.device.type == "cuda" and queries.device.type == "cpu":
        # from pinned memory the copy is queued; from pageable memory it waits for the GPU
        queries = queries.pin_memory()
    queries = queries.to(frames.device, torch.float32, non_blocking=True)
    with torch.no_grad(), torch.autocast(frames.device.type, enabled=False):
        return _track(frames, queries, cfg, forward, backward)


def _track(frames: torch.Tensor, queries: torch.Tensor, cfg: LKConfig, forward: bool,
           backward: bool) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, h, w = frames.shape[:4]
    n = queries.shape[1]
    dev = frames.device
    query_t = queries[..., 0].round().long()  # [B, N]
    query_xy = queries[..., 1:].contiguous()
    frame_t = torch.arange(t, device=dev)[None, :, None]  # [1, T, 1]
    tracks = query_xy[:, None].expand(b, t, n, 2).clone()
    visible = frame_t == query_t[:, None, :]
    directions = [d for d, needed in ((1, forward), (-1, backward)) if needed]
    if t == 1 or n == 0 or not directions:
        return tracks, visible.expand(b, t, n).clone()
    gray = to_gray(frames).view(b, t, h, w)
    pyramid = gray_levels(gray.flatten(0, 1), cfg.window, cfg.levels)  # row = clip * T + t
    templates = _query_templates(gray, query_t, query_xy, cfg.patch) if cfg.patch else None
    lanes = len(directions)
    # Lane time: forwards it is the clip's; backwards it runs from the last frame.
    lane_t = torch.cat([query_t if d == 1 else t - 1 - query_t for d in directions])
    sweep = _Sweep(lane_t, query_xy.repeat(lanes, 1, 1),
                   None if templates is None else templates.repeat(lanes, 1, 1), (h, w), cfg)
    # rows[k]: the pyramid row of every lane's frame k ([T, lanes * B], lane-major)
    steps = torch.arange(t, device=dev)
    lane_frames = torch.stack([steps if d == 1 else t - 1 - steps for d in directions])
    clip_start = torch.arange(b, device=dev)[None, :, None] * t
    rows = (lane_frames[:, None, :] + clip_start).reshape(lanes * b, t).T
    flat_gray = gray.flatten(0, 1)
    current = pyramid.select(rows[0])
    for k in range(t - 1):
        following = pyramid.select(rows[k + 1])  # its gradients serve this step and the next
        sweep.step(k, current, following, flat_gray.index_select(0, rows[k + 1]))
        current = following
    lane_tracks = torch.stack([p for p, _ in sweep.frames], dim=1).view(lanes, b, t, n, 2)
    lane_visible = torch.stack([v for _, v in sweep.frames], dim=1).view(lanes, b, t, n)
    for index, d in enumerate(directions):
        ahead = frame_t > query_t[:, None, :] if d == 1 else frame_t < query_t[:, None, :]
        path, seen = lane_tracks[index], lane_visible[index]
        if d == -1:
            path, seen = path.flip(1), seen.flip(1)
        tracks = torch.where(ahead[..., None], path, tracks)
        visible = torch.where(ahead, seen, visible)
    return tracks, visible

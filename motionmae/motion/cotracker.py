"""Adapter for CoTracker3 (Karaev et al., 2024), offline and online variants.

Nothing of CoTracker ships with motionmae (its code and weights are CC-BY-NC and cannot be
downloaded here). To use it, provide both:

1. the code base, importable as ``cotracker``:
   ``pip install git+https://github.com/facebookresearch/co-tracker`` or
   ``git clone https://github.com/facebookresearch/co-tracker && pip install -e co-tracker``,
   or a clone that is not installed, named by ``CoTrackerConfig(code=...)`` (put on
   ``sys.path`` in the process that builds the tracker);
2. a checkpoint file: ``scaled_offline.pth`` (offline variant) or ``scaled_online.pth``
   (online variant) from ``https://huggingface.co/facebook/cotracker3/resolve/main/<file>``,
   passed as ``CoTrackerConfig(checkpoint=...)``.

Training and ``motionmae extract-tracks`` take these from the config:
``tracking.tracker=cotracker``, ``tracking.cotracker.checkpoint``, ``tracking.cotracker.variant``
and ``tracking.cotracker.code``; ``motionmae tracks --tracker cotracker`` from ``--checkpoint``.

Mapping to CoTracker's predictors (``cotracker.predictor.CoTrackerPredictor`` /
``CoTrackerOnlinePredictor``): the video becomes a ``[1, T, 3, H, W]`` float tensor of 0..255
values and the queries a ``[1, N, 3]`` float tensor of ``(t, x, y)``; they use the same
pixel-centre convention as motionmae (pixel ``i`` at coordinate ``i``, their rescaling to model
resolution is ``align_corners=True``), so coordinates pass through unchanged. Their outputs
``pred_tracks [1, T, N, 2]`` and ``pred_visibility [1, T, N]`` (bool, or scores thresholded at
``visibility_threshold``) become ``float32`` / ``bool`` numpy arrays ``[T, N, 2]`` / ``[T, N]``.

Points are tracked in both time directions: the offline predictor's ``backward_tracking`` is
switched on when any query starts after frame 0; the online predictor only runs forwards, so
the time-reversed clip is tracked too and used for frames before each query frame.

Queries that are exactly the offline predictor's own grid (``tracking.grid=cotracker``,
TrackMAE's official queries) are asked for as ``grid_size``, as TrackMAE does: the predictor
then tracks them alone, without the 6x6 support points it adds to queries it is given.
"""

from __future__ import annotations

import importlib
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motionmae.motion.protocol import cotracker_grid_queries, validate_inputs
from motionmae.motion.registry import register_tracker

__all__ = ["SETUP_HELP", "CoTrackerConfig", "CoTrackerTracker"]

logger = logging.getLogger(__name__)

_CHECKPOINTS = {"offline": "scaled_offline.pth", "online": "scaled_online.pth"}
_DEFAULT_WINDOW = {"offline": 60, "online": 16}

_CHECKPOINT_HELP = (
    "CoTracker3's checkpoint is scaled_offline.pth (variant offline) or scaled_online.pth "
    "(online) from https://huggingface.co/facebook/cotracker3, given as --checkpoint (motionmae "
    "tracks), tracking.cotracker.checkpoint and tracking.cotracker.variant (a run's config) or "
    "CoTrackerConfig(checkpoint=...)."
)
_CODE_HELP = (
    "CoTracker3's code base must be importable as `cotracker`: `pip install "
    "git+https://github.com/facebookresearch/co-tracker`, or `git clone "
    "https://github.com/facebookresearch/co-tracker` and name the clone in "
    "tracking.cotracker.code (CoTrackerConfig(code=...))."
)
SETUP_HELP = f"{_CHECKPOINT_HELP} {_CODE_HELP}"
"""What CoTracker3 needs: its checkpoint file and its code base."""


@dataclass
class CoTrackerConfig:
    """Settings of the CoTracker3 adapter.

    Attributes:
        checkpoint: path of ``scaled_offline.pth`` / ``scaled_online.pth`` (required).
        variant: ``"offline"`` (whole clip at once) or ``"online"`` (sliding windows).
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        window_len: model window; ``None`` = what the checkpoints were trained with (60
            offline, 16 online).
        visibility_threshold: threshold for visibility *scores* when the predictor returns
            floats (the released predictors already return booleans).
        code: folder holding the CoTracker code base (the one with its ``cotracker``
            package, e.g. a git clone) when it is not installed; ``None``: import the
            installed package.
    """

    checkpoint: str | Path | None = None
    variant: str = "offline"
    device: str = "cpu"
    window_len: int | None = None
    visibility_threshold: float = 0.5
    code: str | Path | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.variant not in _CHECKPOINTS:
            raise ValueError(f"CoTrackerConfig.variant: must be 'offline' or 'online', "
                             f"got {self.variant!r}")
        if self.window_len is not None and self.window_len < 2:
            raise ValueError(f"CoTrackerConfig.window_len: must be >= 2, got {self.window_len}")
        if not 0.0 <= self.visibility_threshold <= 1.0:
            raise ValueError(f"CoTrackerConfig.visibility_threshold: must be in [0, 1], "
                             f"got {self.visibility_threshold}")


def _load_predictor(cfg: CoTrackerConfig) -> Any:
    if cfg.checkpoint is None:
        raise FileNotFoundError(f"CoTrackerConfig.checkpoint is not set: expected the path of "
                                f"{_CHECKPOINTS[cfg.variant]}. {_CHECKPOINT_HELP}")
    path = Path(cfg.checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CoTracker checkpoint not found: {path} (expected "
                                f"{_CHECKPOINTS[cfg.variant]} for variant={cfg.variant!r}). "
                                f"{_CHECKPOINT_HELP}")
    if path.name != _CHECKPOINTS[cfg.variant]:
        logger.warning("CoTracker checkpoint %s: variant %r normally uses %s", path.name,
                       cfg.variant, _CHECKPOINTS[cfg.variant])
    if cfg.code is not None:
        folder = Path(cfg.code).expanduser().resolve()
        if not (folder / "cotracker").is_dir():
            raise FileNotFoundError(f"CoTracker code base not found: {folder} has no cotracker "
                                    f"package folder. {_CODE_HELP}")
        # Its modules import each other as ``cotracker.*``, so the folder must be on the path.
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("cotracker.predictor")
    except ImportError as exc:
        raise ImportError(f"The CoTracker code base is not importable ({exc}). "
                          f"{_CODE_HELP}") from exc
    name = "CoTrackerPredictor" if cfg.variant == "offline" else "CoTrackerOnlinePredictor"
    cls = getattr(module, name, None)
    if cls is None:
        raise ImportError(f"cotracker.predictor has no {name}: a CoTracker3 version of the code "
                          f"base is needed. {_CODE_HELP}")
    window = cfg.window_len or _DEFAULT_WINDOW[cfg.variant]
    predictor = cls(checkpoint=str(path), window_len=window)
    if hasattr(predictor, "to"):
        predictor = predictor.to(cfg.device)
    if hasattr(predictor, "eval"):
        predictor.eval()
    return predictor


def _to_numpy(tracks: Any, visibility: Any, t_len: int, n: int,
              threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``[1, T, N, 2]`` / ``[1, T, N]`` tensors -> ``float32 [T, N, 2]`` / ``bool [T, N]``."""
    tr = tracks.detach().cpu().float().numpy()
    vis_t = visibility.detach().cpu()
    if vis_t.dtype.is_floating_point:  # scores
        vis = vis_t.float().numpy() > threshold
    else:
        vis = vis_t.numpy().astype(bool)
    if tr.shape != (1, t_len, n, 2) or vis.shape[:3] != (1, t_len, n):
        raise RuntimeError(f"CoTracker returned tracks {tr.shape} and visibility {vis.shape}, "
                           f"expected (1, {t_len}, {n}, 2) and (1, {t_len}, {n})")
    visible = vis.reshape(1, t_len, n)
    return tr[0].astype(np.float32), visible[0]


def _own_grid_size(queries: np.ndarray, height: int, width: int) -> int:
    """``g`` when ``queries [N, 3]`` are exactly the predictor's own ``grid_size=g`` grid at
    frame 0 (:func:`~motionmae.motion.protocol.cotracker_grid_queries`), else 0."""
    side = math.isqrt(len(queries))
    if side < 2 or side * side != len(queries):
        return 0
    grid = cotracker_grid_queries(height, width, side, side)
    return side if np.allclose(queries, grid, atol=1e-4) else 0


@register_tracker("cotracker", CoTrackerConfig, required={
    "checkpoint": "give the path of the local CoTracker3 checkpoint (scaled_offline.pth; "
                  "scaled_online.pth with variant online; from "
                  "https://huggingface.co/facebook/cotracker3)"})
class CoTrackerTracker:
    """:class:`~motionmae.motion.protocol.PointTracker` backed by CoTracker3.

    ``CoTrackerTracker(config)`` loads the predictor at once (raising ``FileNotFoundError`` /
    ``ImportError`` with setup instructions when the checkpoint or the code base is missing).
    ``track(frames [T,H,W,3] uint8, queries [N,3] (t, x, y))`` ->
    ``(tracks [T,N,2] float32 pixels, visible [T,N] bool)``.
    """

    name = "cotracker"

    def __init__(self, config: CoTrackerConfig | None = None):
        self.config = config or CoTrackerConfig()
        self.config.validate()
        self.predictor = _load_predictor(self.config)

    def _run(self, video: Any, queries: Any, backward: bool) -> tuple[Any, Any]:
        if self.config.variant == "offline":
            grid_size = _own_grid_size(queries[0].cpu().numpy(), video.shape[-2], video.shape[-1])
            if grid_size:
                # As TrackMAE calls it: the predictor lays its own grid and tracks it alone
                # (given queries, it would add its 6x6 support points to them).
                return self.predictor(video, grid_size=grid_size)
            return self.predictor(video, queries=queries, backward_tracking=backward)
        return self._run_online(video, queries)

    def _run_online(self, video: Any, queries: Any) -> tuple[Any, Any]:
        """Feed the clip in the online predictor's half-overlapping windows; its last output
        covers the whole clip."""
        step = int(self.predictor.step)
        t_len = video.shape[1]
        self.predictor(video_chunk=video[:, :2 * step], is_first_step=True, queries=queries)
        start = 0
        while True:
            tracks, visibility = self.predictor(video_chunk=video[:, start:start + 2 * step])
            if start + 2 * step >= t_len:
                return tracks, visibility
            start += step

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track ``queries [N, 3] (t, x, y)`` through ``frames [T, H, W, 3] uint8``; returns
        ``(tracks [T, N, 2] float32 (x, y) pixels, visible [T, N] bool)``."""
        import torch

        frames, q = validate_inputs(frames, queries)
        t_len, n = len(frames), len(q)
        tracks = np.zeros((t_len, n, 2), np.float32)
        visible = np.zeros((t_len, n), bool)
        qt = q[:, 0].astype(np.int64)
        if n:
            dev = self.config.device
            # A copy: the loader hands read-only frames, which torch.from_numpy warns about.
            video = torch.tensor(frames, device=dev).permute(0, 3, 1, 2)[None].float()
            qtensor = torch.from_numpy(q).to(dev)[None]
            thr = self.config.visibility_threshold
            need_back = bool(np.any(qt > 0))
            with torch.no_grad():
                tracks, visible = _to_numpy(*self._run(video, qtensor, need_back), t_len, n, thr)
                if need_back and self.config.variant == "online":
                    rq = qtensor.clone()
                    rq[..., 0] = t_len - 1 - rq[..., 0]
                    rt, rv = _to_numpy(*self._run(video.flip(1), rq, False), t_len, n, thr)
                    before = np.arange(t_len)[:, None] < qt[None, :]
                    tracks = np.where(before[..., None], rt[::-1], tracks)
                    visible = np.where(before, rv[::-1], visible)
        tracks[qt, np.arange(n)] = q[:, 1:]
        visible[qt, np.arange(n)] = True
        return np.ascontiguousarray(tracks, np.float32), np.ascontiguousarray(visible, bool)

    def __repr__(self) -> str:
        return f"CoTrackerTracker({self.config})"

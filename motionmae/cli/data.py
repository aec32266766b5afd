"""The dataset commands: ``prepare`` (re-encode once at working resolution) and ``check-data``
(find the videos a run would fail on)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from motionmae.errors import DATA, UsageError


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="re-encode a dataset once at working resolution "
                       "(parallel, resumable) and write its list")
    p.add_argument("--data", required=True,
                   help="list file or dataset spec FORMAT:PATH[,key=value...]")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder: videos/, the prepared list, manifest.json")
    p.add_argument("--short-side", type=int, default=320,
                   help="short side in px, never enlarged (0: keep the size)")
    p.add_argument("--fps", type=float, help="resample to this frame rate (default: keep "
                   "every frame)")
    p.add_argument("--crf", type=int, help="x264 quality, lower is better (default 23)")
    p.add_argument("--preset", help="x264 preset (default veryfast)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="parallel processes (default: one per CPU)")
    p.add_argument("--list-name", help="file name of the written list (default: the input "
                   "list's, or <annotation stem>.txt for a spec)")
    p.add_argument("--root", help="folder whose layout is kept under OUT/videos (default: the "
                   "videos' common folder)")
    p.add_argument("--list-only", action="store_true",
                   help="only write the list of the original videos (convert a dataset spec "
                   "to a plain list), no re-encoding")
    p.set_defaults(handler=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from motionmae.config import PrepareConfig
    from motionmae.data.prepare import failures_path, prepare_dataset, write_list

    if args.list_only:
        path = write_list(args.data, args.out, args.list_name)
        print(f"list written to {path}")
        return 0
    given = {"crf": args.crf, "preset": args.preset, "fps": args.fps}
    settings = PrepareConfig(short_side=args.short_side or None,
                             **{k: v for k, v in given.items() if v is not None})
    bars: list[tqdm] = []  # made at the first video: a refused run prints only its error
    failed = 0

    def on_progress(completed: int, total: int, video: object, status: str) -> None:
        nonlocal failed
        if not bars:
            bars.append(tqdm(total=total, desc="prepare", unit="video", dynamic_ncols=True))
        failed += status == "failed"
        bars[0].set_postfix(failed=failed, refresh=False)
        bars[0].update(completed - bars[0].n)

    try:
        stats = prepare_dataset(args.data, args.out, settings, workers=args.workers,
                                list_name=args.list_name, root=args.root,
                                on_progress=on_progress)
    finally:
        for bar in bars:
            bar.close()
    print(f"{stats.done} encoded, {stats.skipped} already prepared, {len(stats.failed)} failed "
          f"({stats.seconds:.1f}s); list: {stats.list_path}")
    for video, reason in stats.failed[:10]:
        print(f"  failed: {video}: {reason}", file=sys.stderr)
    if stats.failed:
        assert stats.list_path is not None
        print(f"  all failures: {failures_path(stats.list_path)}", file=sys.stderr)
    return DATA if stats.failed else 0


def add_check_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-data", help="check every video of a list (opens, decodes the "
                       "needed frames, long enough for a clip); write a report and a clean list")
    p.add_argument("data", metavar="LIST", help="list file or dataset spec")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder: report.tsv (one row per video) and clean.txt (a list "
                   "of the usable videos, with clean.classes.txt when labels have names)")
    p.add_argument("--config", metavar="RUN_CONFIG",
                   help="check against this run's clip settings: its config.yaml (or run "
                   "folder) or the YAML given to --config (data.frames, data.stride, "
                   "data.short_videos); the flags below override it")
    p.add_argument("--frames", type=int, help="frames per clip (default: the config's, else 16)")
    p.add_argument("--stride", type=int,
                   help="source frames between clip frames (default: the config's, else 4)")
    p.add_argument("--short-videos", choices=["pad", "stretch"],
                   help="how videos shorter than a clip will be sampled (data.short_videos; "
                   "default: the config's, else pad)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="parallel processes (default: one per CPU)")
    p.set_defaults(handler=cmd_check_data)


def cmd_check_data(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from motionmae.data import read_video_list
    from motionmae.data.check import check_videos, run_data_config, write_check
    from motionmae.data.config import DataConfig
    from motionmae.data.transforms import clip_span

    run = run_data_config(args.config) if args.config else DataConfig()
    frames = run.frames if args.frames is None else args.frames
    stride = run.stride if args.stride is None else args.stride
    short = args.short_videos or run.short_videos
    if frames < 1 or stride < 1:
        raise UsageError(f"--frames and --stride must be >= 1, got {frames} and {stride}")
    videos = read_video_list(args.data)
    print(f"checking {len(videos)} videos for clips of {frames} frames at stride {stride} "
          f"(span {clip_span(frames, stride)} source frames, short videos: {short})")
    bar = tqdm(total=len(videos), desc="check-data", unit="video", dynamic_ncols=True)
    bad = 0

    def on_progress(done: int, total: int, result: Any) -> None:
        nonlocal bad
        bad += result.status == "bad"
        bar.set_postfix(bad=bad, refresh=False)
        bar.update(done - bar.n)

    try:
        results = check_videos([e.path for e in videos.entries], frames, stride, short,
                               args.workers, on_progress)
    finally:
        bar.close()
    report, clean = write_check(results, videos, args.out)
    counts = {status: sum(r.status == status for r in results) for status in ("ok", "short",
                                                                              "bad")}
    print(f"{counts['ok']} ok, {counts['short']} shorter than a clip, {counts['bad']} bad; "
          f"report: {report}; clean list ({counts['ok'] + counts['short']} videos): {clean}")
    for result in [r for r in results if r.status == "bad"][:10]:
        print(f"  bad: {result.detail}", file=sys.stderr)
    return DATA if counts["bad"] else 0

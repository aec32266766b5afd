"""``motionmae pretrain`` and the caches it can train from: ``extract-tracks`` (point tracks)
and ``extract-teacher`` (a frozen teacher's features)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from motionmae.cli.common import (
    Stopped,
    add_training_options,
    load_training_config,
    parse_shard,
    run_training,
)
from motionmae.errors import DATA

if TYPE_CHECKING:
    from motionmae.cache.extraction import ExtractStats


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="masked video pretraining on a list of videos")
    p.add_argument("--data", required=True, help="list file of training videos (path [label]) "
                   "or dataset spec FORMAT:PATH[,key=value...] (see docs/datasets.md)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, config)")
    p.add_argument("--config", help="YAML config file, or a run folder for its config.yaml "
                   "(defaults <- file <- flags <- --set)")
    p.add_argument("--model", choices=["tiny", "small", "base", "large"],
                   help="ViT size (default tiny)")
    p.add_argument("--targets", help="comma-separated targets (default pixel,tracks; VideoMAE's "
                   "pixel MAE: --targets pixel --masking tube)")
    p.add_argument("--masking", help="masking kind (default motion): tube, random, cube, "
                   "motion, learned (see masking.learned.* for the learned sampler), or one a "
                   "plugin registers (MOTIONMAE_PLUGINS)")
    p.add_argument("--frames", type=int, help="frames per clip (default 16)")
    p.add_argument("--size", type=int, help="clip side in pixels (default 224)")
    add_training_options(p, "masking.ratio=0.75")
    p.set_defaults(handler=cmd_pretrain)


def pretrain_overrides(args: argparse.Namespace) -> list[str]:
    """Turn the convenience flags into config overrides (``--set`` wins over them)."""
    flags = {
        "data.train": args.data,
        "run.out": args.out,
        "model.size": args.model,
        "targets.names": args.targets,
        "masking.kind": args.masking,
        "data.frames": args.frames,
        "data.size": args.size,
        "run.steps": args.steps,
        "run.epochs": args.epochs,
        "run.batch_size": args.batch_size,
    }
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None]
    if args.targets is not None:
        overrides[overrides.index(f"targets.names={args.targets}")] = (
            f"targets.names=[{args.targets}]"
        )
    if args.epochs is not None:
        overrides.append("run.steps=null")
    return overrides + list(args.set)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from motionmae.config import PretrainConfig
    from motionmae.train.pretrain import pretrain

    cfg = load_training_config(PretrainConfig, args, pretrain_overrides(args))
    result = run_training("pretrain", pretrain, cfg, args,
                          steps_done=lambda result: result.state.step)
    if isinstance(result, Stopped):
        return result.exit_code  # a checkpoint was saved: continue with --resume
    return 0


def add_extract_tracks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract-tracks", help="fill the track cache for a list of videos")
    p.add_argument("--data", required=True, help="list file of videos")
    p.add_argument("--cache", required=True, help="cache folder (cache.path of training)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--shard", default="0/1", help="i/n: this process takes videos i, i+n, ...")
    p.add_argument("--config", help="the pretraining config the tracks are for, or its run "
                   "folder (clip frames, stride, size, tracker and cache.clips must match "
                   "training)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(handler=cmd_extract_tracks)


def cmd_extract_tracks(args: argparse.Namespace) -> int:
    from motionmae.config import PretrainConfig, load_config
    from motionmae.motion import TrackCache, extract_tracks
    from motionmae.motion.cache import CacheSettings

    index, count = parse_shard(args.shard)
    cfg = load_config(PretrainConfig, args.config,
                      [f"data.train={args.data}", f"cache.path={args.cache}", *args.set])
    cache = TrackCache(Path(args.cache), CacheSettings.for_run(cfg.tracking, cfg.data, cfg.cache))
    return _run_extraction(
        args.data, (index, count), "tracks", "tracked", lambda videos, on_progress:
        extract_tracks(videos, cache, workers=args.workers, shard=(index, count),
                       on_progress=on_progress))


def add_extract_teacher(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract-teacher", help="fill the cache with a frozen teacher's features "
                       "of the cached clips (train with --set cache.path=CACHE)")
    p.add_argument("--data", required=True, help="list file of videos")
    p.add_argument("--cache", required=True, help="cache folder (cache.path of training; the "
                   "track cache's)")
    p.add_argument("--teacher", help="teacher model folder (default: targets.teacher.path of "
                   "the config)")
    p.add_argument("--device", default="auto", help="where the teacher runs (auto, cpu, cuda)")
    p.add_argument("--batch-size", type=int, default=32, help="frames per teacher forward")
    p.add_argument("--shard", default="0/1", help="i/n: this process takes videos i, i+n, ...")
    p.add_argument("--config", help="the pretraining config the features are for, or its "
                   "run folder (clip frames, stride, size, cache.clips and targets.teacher "
                   "must match training)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(handler=cmd_extract_teacher)


def cmd_extract_teacher(args: argparse.Namespace) -> int:
    from motionmae.config import PretrainConfig, load_config
    from motionmae.environment import resolve_device
    from motionmae.targets.teacher_cache import TeacherCacheSettings, TeacherFeatureCache
    from motionmae.targets.teacher_extract import extract_teacher
    from motionmae.targets.teacher_models import load_teacher, read_teacher_spec

    index, count = parse_shard(args.shard)
    teacher = [f"targets.teacher.path={args.teacher}"] if args.teacher else []
    cfg = load_config(PretrainConfig, args.config, [f"data.train={args.data}",
                      f"cache.path={args.cache}", *teacher, *args.set])
    cfg.targets.teacher.validate("targets.teacher")  # also when names lacks the teacher
    spec = read_teacher_spec(cfg.targets.teacher.path)
    settings = TeacherCacheSettings.for_run(cfg.targets.teacher, cfg.token_grid().tubelet,
                                            cfg.data.size, spec)
    cache = TeacherFeatureCache(args.cache, settings)
    return _run_extraction(
        args.data, (index, count), "teacher", "computed", lambda videos, on_progress:
        extract_teacher(videos, cache, load_teacher(spec), cfg.cache.layout(cfg.data),
                        device=resolve_device(args.device), batch_size=args.batch_size,
                        shard=(index, count), on_progress=on_progress))


def _run_extraction(data: str, shard: tuple[int, int], label: str, done: str,
                    run: Callable[..., ExtractStats]) -> int:
    """``run(videos, on_progress)`` on the videos of list ``data`` with a progress bar of this
    shard's, then one summary line (``done``: what the computed videos were) and one line per
    failed video; exit status ``DATA`` when a video failed."""
    from tqdm import tqdm

    from motionmae.data import read_video_list

    videos = [entry.path for entry in read_video_list(data).entries]
    index, count = shard
    bar = tqdm(total=len(videos[index::count]), desc=f"{label} {index}/{count}", unit="video")

    def on_progress(completed: int, total: int, video: object, status: str) -> None:
        bar.total = total
        bar.update(completed - bar.n)

    try:
        stats = run(videos, on_progress)
    finally:
        bar.close()
    print(f"{stats.done} {done}, {stats.skipped_existing} already cached, "
          f"{len(stats.failed)} failed ({stats.seconds:.1f}s)")
    for video, reason in stats.failed:
        print(f"  failed: {video}: {reason}", file=sys.stderr)
    return DATA if stats.failed else 0

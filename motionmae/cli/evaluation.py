"""The commands that measure an encoder or a classifier: ``features`` (frozen features of a
list), ``probe`` (probes trained on them) and ``evaluate`` (multi-view testing)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from motionmae.cli.common import log, parse_shard, views_text
from motionmae.errors import DATA, UsageError

if TYPE_CHECKING:
    from motionmae.data.entries import VideoList


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--clips", type=int, default=1, help="temporal clips per video (averaged)")
    p.add_argument("--crops", type=int, default=1, help="spatial crops per clip (averaged)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")


def _features(args: argparse.Namespace, videos: str | VideoList, pool: bool = True):
    """Features of ``videos`` (a list file, a dataset spec, or a list read already)."""
    from motionmae.environment import resolve_device
    from motionmae.eval import eval_data_config, list_features
    from motionmae.eval.features import feature_origin
    from motionmae.interop import load_any_encoder

    device = resolve_device(args.device)
    encoder, description = load_any_encoder(args.checkpoint, device)
    data = eval_data_config(description, workers=args.workers, test_clips=args.clips,
                            test_crops=args.crops)
    features = list_features(encoder, videos, data, args.batch_size, device, args.precision,
                             pool=pool)
    return dataclasses.replace(features,
                               origin=feature_origin(encoder, data, str(args.checkpoint)))


def add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="frozen, mean-pooled encoder features of a list")
    p.add_argument("--checkpoint", required=True,
                   help="run folder, checkpoint folder/file or exported folder")
    p.add_argument("--data", required=True, help="list file of videos or dataset spec")
    p.add_argument("--out", required=True, help="output .npz (features [N,D], labels, paths, "
                   "class names); with --windows a folder (one .npz per video, resumable) or "
                   "one .npz")
    p.add_argument("--tokens", action="store_true",
                   help="keep every token (features [N,L,D], stored as float16) for the "
                   "attentive probe; the other probes pool them")
    p.add_argument("--windows", type=int, metavar="STRIDE",
                   help="slide the encoder over each whole video: one feature per window of "
                   "the checkpoint's clip (frames x stride source frames, centre crop), a "
                   "window starting every STRIDE source frames, with start and end times")
    p.add_argument("--shard", default="0/1",
                   help="with --windows, i/n: this process takes videos i, i+n, ...")
    _add_eval_options(p)
    p.set_defaults(handler=cmd_features)


def cmd_features(args: argparse.Namespace) -> int:
    from motionmae.eval import save_features

    if args.windows is not None:
        return _window_features(args)
    if args.shard != "0/1":
        raise UsageError("--shard applies to --windows only")
    features = _features(args, args.data, pool=not args.tokens)
    save_features(features, args.out)
    log.info("wrote %s features to %s", "x".join(map(str, features.features.shape)), args.out)
    return 0


def _window_features(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from motionmae.checkpoints.format import resolve_checkpoint
    from motionmae.data import read_video_list
    from motionmae.environment import resolve_device
    from motionmae.eval import eval_data_config
    from motionmae.eval.windows import extract_windows
    from motionmae.interop import detect_format, load_any_encoder

    if args.windows < 1:
        raise UsageError(f"--windows must be >= 1, got {args.windows}")
    if args.tokens or args.clips != 1 or args.crops != 1:
        raise UsageError("--windows takes one centre crop per window and pools it: no "
                         "--tokens, --clips or --crops")
    shard = parse_shard(args.shard)
    device = resolve_device(args.device)
    encoder, description = load_any_encoder(args.checkpoint, device)
    data = eval_data_config(description)
    # The checkpoint's identity in the outputs: a rerun with another one recomputes them.
    source = (resolve_checkpoint(args.checkpoint).path if detect_format(args.checkpoint)
              == "motionmae" else Path(args.checkpoint))
    videos = [entry.path for entry in read_video_list(args.data).entries]
    bar = tqdm(desc=f"windows {shard[0]}/{shard[1]}", unit="video", dynamic_ncols=True)

    def on_video(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        stats = extract_windows(encoder, videos, data, args.windows, args.out,
                                batch_size=args.batch_size, workers=args.workers,
                                device=device, precision=args.precision, shard=shard,
                                source=str(Path(source).resolve()), on_video=on_video)
    finally:
        bar.close()
    print(f"{stats.done} videos ({stats.windows} windows of {data.frames}x{data.stride} "
          f"frames every {args.windows}) written to {args.out}, {stats.skipped_existing} "
          f"already done, {len(stats.failed)} failed ({stats.seconds:.1f}s)")
    for video, reason in stats.failed:
        print(f"  failed: {video}: {reason}", file=sys.stderr)
    return DATA if stats.failed else 0


def add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="train probes on frozen features, report accuracy")
    p.add_argument("--checkpoint",
                   help="run folder, checkpoint folder/file or exported folder (with --train "
                   "and --val)")
    p.add_argument("--train",
                   help="list file (or dataset spec) of labelled training videos")
    p.add_argument("--val",
                   help="list file (or dataset spec) of labelled validation videos; its "
                   "classes are matched to --train's by name")
    p.add_argument("--features-train", help="cached training features (.npz from "
                   "`motionmae features`, --tokens for the attentive probe) instead of "
                   "--checkpoint/--train")
    p.add_argument("--features-val", help="cached validation features (.npz)")
    p.add_argument("--kind", default="linear",
                   help="comma-separated probes (linear, knn, attentive), all trained on one "
                   "features pass")
    p.add_argument("--out", help="write the result as JSON here (a list for several probes)")
    _add_eval_options(p)
    p.set_defaults(handler=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from motionmae.eval import PROBES, load_features, read_probe_lists, run_probe
    from motionmae.eval.probing import baselines, not_held_out

    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in PROBES]
    if not kinds or unknown:
        raise UsageError(f"--kind takes a comma-separated list of "
                         f"{', '.join(PROBES)}; got {args.kind!r}")
    cached = (args.features_train, args.features_val)
    listed = (args.checkpoint, args.train, args.val)
    if all(cached) and not any(listed):
        train, val = load_features(args.features_train), load_features(args.features_val)
    elif all(listed) and not any(cached):
        # Labels checked (and val's classes matched to train's) before any video is decoded.
        train_videos, val_videos = read_probe_lists(args.train, args.val)
        # One extraction for every probe: tokens if any probe needs them (the others pool).
        pool = "attentive" not in kinds
        train = _features(args, train_videos, pool)
        val = _features(args, val_videos, pool)
    else:
        raise UsageError("give either --checkpoint, --train and --val, or "
                         "--features-train and --features-val")
    results = []
    for kind in kinds:
        result = run_probe(kind, train, val)
        results.append(result)
        print(f"{result.kind} probe: top-1 {result.top1:.1%}  top-5 {result.top5:.1%}  "
              f"({baselines(result)}; {result.num_train} train / {result.num_val} val clips)"
              f"{not_held_out(result)}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        records = [vars(r) for r in results]
        Path(args.out).write_text(json.dumps(records[0] if len(records) == 1 else records,
                                             indent=2))
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="multi-view testing of a fine-tuned classifier; "
                       "writes metrics and per-video predictions")
    p.add_argument("--checkpoint", required=True,
                   help="fine-tuning run folder or checkpoint, or an official fine-tuned "
                   "VideoMAE .pth")
    p.add_argument("--data", required=True, help="list file of videos (labels optional; "
                   "matched to the checkpoint's classes by name)")
    p.add_argument("--out", required=True,
                   help="F.json (metrics, per-video probabilities) and F.csv (per video)")
    _add_eval_options(p)
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from motionmae.data import read_video_list
    from motionmae.environment import resolve_device
    from motionmae.eval import (
        align_labels,
        eval_data_config,
        evaluate_videos,
        load_classifier,
        save_evaluation,
    )

    device = resolve_device(args.device)
    model, description = load_classifier(args.checkpoint, device)
    classes = description.get("classes")
    data = eval_data_config(description, workers=args.workers, test_clips=args.clips,
                            test_crops=args.crops)
    videos = align_labels(read_video_list(args.data), classes, model.head.out_features,
                          args.data, str(args.checkpoint))
    evaluation = evaluate_videos(model, videos, data, classes, args.batch_size, device,
                                 args.precision)
    json_path, csv_path = save_evaluation(evaluation, args.out,
                                          {"checkpoint": str(args.checkpoint),
                                           "data": str(args.data)})
    metrics = evaluation.metrics
    if metrics is not None:
        print(f"top-1 {metrics.top1:.1%}  top-5 {metrics.top5:.1%}  mean class "
              f"{metrics.mean_class:.1%}  ({metrics.num_videos} videos, "
              f"{views_text(args.clips, args.crops)})")
    else:
        print(f"{len(evaluation.paths)} unlabelled videos: predictions only")
    print(f"wrote {json_path} and {csv_path}")
    return 0

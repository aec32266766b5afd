"""The ``motionmae`` command: parses, builds configs, calls the library, shows progress."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from motionmae.errors import DATA, UsageError

log = logging.getLogger("motionmae")


# --------------------------------------------------------------------------------------------
# Parsers


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="masked video pretraining on a list of videos")
    p.add_argument("--data", required=True, help="list file of training videos (path [label]) "
                   "or dataset spec FORMAT:PATH[,key=value...] (see docs/datasets.md)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, config)")
    p.add_argument("--config", help="YAML config file (defaults <- file <- flags <- --set)")
    p.add_argument("--model", choices=["tiny", "small", "base", "large"])
    p.add_argument("--targets", help="comma-separated targets, e.g. pixel")
    p.add_argument("--masking", help="masking kind: tube, random, cube, motion or learned "
                   "(see masking.learned.* for the learned sampler)")
    p.add_argument("--frames", type=int, help="frames per clip")
    p.add_argument("--size", type=int, help="clip side in pixels")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=int, help="passes over the data")
    p.add_argument("--batch-size", type=int, help="clips per step and process")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set masking.ratio=0.75 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.set_defaults(handler=cmd_pretrain)


def _add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="frozen, mean-pooled encoder features of a list")
    p.add_argument("--checkpoint", required=True,
                   help="run folder, checkpoint folder/file or exported folder")
    p.add_argument("--data", required=True, help="list file of videos or dataset spec")
    p.add_argument("--out", required=True, help="output .npz (features [N,D], labels, paths); "
                   "with --windows a folder (one .npz per video, resumable) or one .npz")
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


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="train probes on frozen features, report accuracy")
    p.add_argument("--checkpoint",
                   help="run folder, checkpoint folder/file or exported folder (with --train "
                   "and --val)")
    p.add_argument("--train",
                   help="list file (or dataset spec) of labelled training videos")
    p.add_argument("--val",
                   help="list file (or dataset spec) of labelled validation videos")
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


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a classifier on an encoder; evaluate on "
                       "--val")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--checkpoint", help="encoder to start from: run folder, checkpoint, "
                       "exported or Hugging Face folder, official VideoMAE .pth")
    start.add_argument("--scratch", action="store_true",
                       help="start from random weights (architecture: --model, --set model.*)")
    p.add_argument("--train", required=True, help="list file of labelled training videos")
    p.add_argument("--val", help="list file of labelled validation videos (evaluated at the "
                   "end with data.test_clips x data.test_crops views)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, eval/)")
    p.add_argument("--config", help="YAML config file (defaults <- file <- flags <- --set)")
    p.add_argument("--model", choices=["tiny", "small", "base", "large"],
                   help="architecture (with --scratch)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=int, help="passes over the data")
    p.add_argument("--batch-size", type=int, help="clips per step and process")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set finetune.mixup=0 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.set_defaults(handler=cmd_finetune)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="multi-view testing of a fine-tuned classifier; "
                       "writes metrics and per-video predictions")
    p.add_argument("--checkpoint", required=True,
                   help="fine-tuning run folder or checkpoint, or an official fine-tuned "
                   "VideoMAE .pth")
    p.add_argument("--data", required=True, help="list file of videos (labels optional)")
    p.add_argument("--out", required=True,
                   help="F.json (metrics, per-video probabilities) and F.csv (per video)")
    _add_eval_options(p)
    p.set_defaults(handler=cmd_evaluate)


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--clips", type=int, default=1, help="temporal clips per video (averaged)")
    p.add_argument("--crops", type=int, default=1, help="spatial crops per clip (averaged)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic motion data -> pretrain tiny model -> probe")
    p.add_argument("--data-dir", type=Path, help="where the synthetic videos are cached")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    p.add_argument("--steps", type=int, help="pretraining steps (default 600)")
    p.add_argument("--train-videos", type=int, help="synthetic training videos")
    p.add_argument("--val-videos", type=int, help="synthetic validation videos")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pretraining config key")
    p.set_defaults(handler=cmd_demo)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="plots + one-page HTML summary of a run folder")
    p.add_argument("run_dir", type=Path, help="run folder (metrics.jsonl, config.yaml, ...)")
    p.set_defaults(handler=cmd_report)


def _add_tracks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tracks", help="track points through a video; write tracks + visibility")
    p.add_argument("video", type=Path)
    p.add_argument("--out", required=True, type=Path,
                   help="output .npz: tracks [T,N,2] float32 (x,y px), visible [T,N] bool")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--grid", type=int, default=14, help="G x G queries on frame 0")
    where.add_argument("--queries", type=Path, help=".npy of [N,3] queries (t, x, y) in px")
    p.add_argument("--tracker", choices=["lk", "flow", "cotracker"], default="lk")
    p.add_argument("--checkpoint", help="CoTracker3 checkpoint file (--tracker cotracker)")
    p.add_argument("--size", type=int, help="decode at this short side (px); default: as coded")
    p.add_argument("--start", type=int, default=0, help="first frame")
    p.add_argument("--frames", type=int, help="number of frames (default: to the end)")
    p.add_argument("--stride", type=int, default=1, help="take every N-th frame")
    p.add_argument("--draw", type=Path, help="also write the tracks drawn over the video "
                   "(.mp4 or .gif; .png: the last frame with the recent trails)")
    p.set_defaults(handler=cmd_tracks)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint as a motionmae or Hugging Face folder")
    p.add_argument("--checkpoint", required=True,
                   help="run folder, checkpoint, exported/HF folder or official VideoMAE .pth")
    p.add_argument("--format", choices=["motionmae", "hf"], default="motionmae")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not hold a model)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.set_defaults(handler=cmd_export)


def _add_extract_tracks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract-tracks", help="fill the track cache for a list of videos")
    p.add_argument("--data", required=True, help="list file of videos")
    p.add_argument("--cache", required=True, help="track cache folder")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--shard", default="0/1", help="i/n: this process takes videos i, i+n, ...")
    p.add_argument("--config", help="the pretraining config the tracks are for (clip frames, "
                   "stride, size, tracker and cache_clips must match training)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(handler=cmd_extract_tracks)


def _add_extract_teacher(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract-teacher", help="fill the cache with a frozen teacher's features "
                       "of the cached clips (train with --set tracking.cache=CACHE)")
    p.add_argument("--data", required=True, help="list file of videos")
    p.add_argument("--cache", required=True, help="cache folder (the track cache's)")
    p.add_argument("--teacher", help="teacher model folder (default: targets.teacher.path of "
                   "the config)")
    p.add_argument("--device", default="auto", help="where the teacher runs (auto, cpu, cuda)")
    p.add_argument("--batch-size", type=int, default=32, help="frames per teacher forward")
    p.add_argument("--shard", default="0/1", help="i/n: this process takes videos i, i+n, ...")
    p.add_argument("--config", help="the pretraining config the features are for (clip "
                   "frames, stride, size, cache_clips and targets.teacher must match training)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(handler=cmd_extract_teacher)


def _add_visualize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("visualize", help="pictures of a pretrained model's masking and "
                       "reconstruction (pixels, tracks) on one clip of a video")
    p.add_argument("--checkpoint", required=True, help="run folder, checkpoint folder or file")
    p.add_argument("video", type=Path)
    p.add_argument("--out", required=True, type=Path, help="output folder (PNGs, MP4s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask")
    p.set_defaults(handler=cmd_visualize)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
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


def _add_check_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-data", help="check every video of a list (opens, decodes the "
                       "needed frames, long enough for a clip); write a report and a clean list")
    p.add_argument("data", metavar="LIST", help="list file or dataset spec")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder: report.tsv (one row per video) and clean.txt")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--stride", type=int, default=4, help="source frames between clip frames")
    p.add_argument("--short-videos", choices=["pad", "stretch"], default="pad",
                   help="how videos shorter than a clip will be sampled (data.short_videos)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="parallel processes (default: one per CPU)")
    p.set_defaults(handler=cmd_check_data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="motionmae",
        description="Self-supervised video representation learning by motion-aware masked "
        "video modeling.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of every error (also MOTIONMAE_DEBUG=1); "
                        "exit status: 0 ok, 1 internal error, 2 usage or config, 3 data (a "
                        "video, list, checkpoint or model folder), 4 environment (missing "
                        "package, output folder), 5 non-finite training, 143 preempted")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_pretrain, _add_finetune, _add_evaluate, _add_features,
                _add_probe, _add_report,
                _add_tracks, _add_export, _add_extract_tracks, _add_extract_teacher,
                _add_visualize, _add_prepare, _add_check_data):
        add(sub)
    return parser


# --------------------------------------------------------------------------------------------
# Commands


def _progress(total: int, desc: str) -> tuple[Callable[[dict], None], Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)

    def on_log(record: dict) -> None:
        bar.update(record["step"] - bar.n)
        postfix = {"loss": f"{record['loss']:.4f}", "lr": f"{record['lr']:.2e}",
                   "clips/s": f"{record['clips_per_s']:.1f}"}
        bar.set_postfix(postfix, refresh=False)

    return on_log, bar.close


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


def _run_training(name: str, run: Callable[..., Any], cfg: Any, resume: bool) -> Any:
    """Run ``run(cfg, ...)`` (pretrain or finetune) in this process's distributed context with
    a progress bar on rank 0; ``None`` when preempted (SIGTERM: a checkpoint was saved)."""
    from motionmae.train.distributed import distributed_session
    from motionmae.train.loop import TrainingInterrupted

    if cfg.run.steps is None and cfg.run.epochs is None:
        cfg.run.steps = 1000
        log.info("neither --steps nor --epochs given: training for %d steps", cfg.run.steps)
    with distributed_session() as dist:
        on_log, close = _progress(cfg.run.steps or 0, name) if dist.is_main else (None, None)
        try:
            return run(cfg, resume=resume, dist=dist, on_log=on_log)
        except TrainingInterrupted as stopped:  # every rank stopped at the same step
            log.warning("%s", stopped)
            return None
        finally:
            if close is not None:
                close()


def cmd_pretrain(args: argparse.Namespace) -> int:
    from motionmae.config import PretrainConfig, load_config
    from motionmae.train.pretrain import pretrain

    cfg = load_config(PretrainConfig, args.config, pretrain_overrides(args))
    result = _run_training("pretrain", pretrain, cfg, args.resume)
    if result is None:
        return 143  # 128 + SIGTERM: a scheduler sees the job was preempted
    log.info("done: %d steps, checkpoints in %s", result.state.step,
             Path(cfg.run.out) / "checkpoints")
    return 0


def _features(args: argparse.Namespace, list_path: str, pool: bool = True):
    from motionmae.evaluate import eval_data_config, list_features
    from motionmae.interop import load_any_encoder
    from motionmae.train.loop import resolve_device

    device = resolve_device(args.device)
    encoder, description = load_any_encoder(args.checkpoint, device)
    data = eval_data_config(description, workers=args.workers, test_clips=args.clips,
                            test_crops=args.crops)
    return list_features(encoder, list_path, data, args.batch_size, device, args.precision,
                         pool=pool)


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
    from motionmae.eval.windows import extract_windows
    from motionmae.evaluate import eval_data_config
    from motionmae.interop import detect_format, load_any_encoder
    from motionmae.train.loop import resolve_device

    if args.windows < 1:
        raise UsageError(f"--windows must be >= 1, got {args.windows}")
    if args.tokens or args.clips != 1 or args.crops != 1:
        raise UsageError("--windows takes one centre crop per window and pools it: no "
                         "--tokens, --clips or --crops")
    shard = _parse_shard(args.shard)
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


def cmd_probe(args: argparse.Namespace) -> int:
    from motionmae.eval import load_features
    from motionmae.evaluate import PROBES, run_probe

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
        # One extraction for every probe: tokens if any probe needs them (the others pool).
        pool = "attentive" not in kinds
        train = _features(args, args.train, pool)
        val = _features(args, args.val, pool)
    else:
        raise UsageError("give either --checkpoint, --train and --val, or "
                         "--features-train and --features-val")
    results = []
    for kind in kinds:
        result = run_probe(kind, train, val)
        results.append(result)
        print(f"{result.kind} probe: top-1 {result.top1:.1%}  top-5 {result.top5:.1%}  "
              f"(chance {result.chance:.1%}; {result.num_train} train / {result.num_val} val "
              "clips)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        records = [vars(r) for r in results]
        Path(args.out).write_text(json.dumps(records[0] if len(records) == 1 else records,
                                             indent=2))
    return 0


def finetune_overrides(args: argparse.Namespace) -> list[str]:
    """Turn the convenience flags into config overrides (``--set`` wins over them)."""
    flags = {
        "finetune.checkpoint": "null" if args.scratch else args.checkpoint,
        "data.train": args.train,
        "data.val": args.val,
        "run.out": args.out,
        "model.size": args.model,
        "run.steps": args.steps,
        "run.epochs": args.epochs,
        "run.batch_size": args.batch_size,
    }
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None]
    if args.epochs is not None:
        overrides.append("run.steps=null")
    return overrides + list(args.set)


def cmd_finetune(args: argparse.Namespace) -> int:
    from motionmae.config import FinetuneConfig, load_config
    from motionmae.train.finetune import data_defaults, finetune

    if args.model is not None and not args.scratch:
        raise UsageError("--model applies to --scratch only (a checkpoint "
                         "brings its own architecture)")
    # The checkpoint's clip geometry and normalisation, unless the file or flags say otherwise.
    base = {"data": data_defaults(args.checkpoint)} if args.checkpoint else {}
    cfg = load_config(FinetuneConfig, args.config, finetune_overrides(args), base=base)
    result = _run_training("finetune", finetune, cfg, args.resume)
    if result is None:
        return 143  # 128 + SIGTERM: a scheduler sees the job was preempted
    log.info("done: %d steps, checkpoints in %s", result.train.state.step,
             Path(cfg.run.out) / "checkpoints")
    if result.evaluation is not None and result.evaluation.metrics is not None:
        metrics = result.evaluation.metrics
        print(f"val: top-1 {metrics.top1:.1%}  top-5 {metrics.top5:.1%}  mean class "
              f"{metrics.mean_class:.1%} ({metrics.num_videos} videos, {cfg.data.test_clips} "
              f"clips x {cfg.data.test_crops} crops); predictions in "
              f"{Path(cfg.run.out) / 'eval'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from motionmae.data import read_video_list
    from motionmae.eval import align_labels, evaluate_videos, load_classifier, save_evaluation
    from motionmae.evaluate import eval_data_config
    from motionmae.train.loop import resolve_device

    device = resolve_device(args.device)
    model, description = load_classifier(args.checkpoint, device)
    classes = description.get("classes")
    data = eval_data_config(description, workers=args.workers, test_clips=args.clips,
                            test_crops=args.crops)
    videos = align_labels(read_video_list(args.data), classes, model.head.out_features,
                          args.data)
    evaluation = evaluate_videos(model, videos, data, classes, args.batch_size, device,
                                 args.precision)
    json_path, csv_path = save_evaluation(evaluation, args.out,
                                          {"checkpoint": str(args.checkpoint),
                                           "data": str(args.data)})
    metrics = evaluation.metrics
    if metrics is not None:
        print(f"top-1 {metrics.top1:.1%}  top-5 {metrics.top5:.1%}  mean class "
              f"{metrics.mean_class:.1%}  ({metrics.num_videos} videos, {args.clips} clips x "
              f"{args.crops} crops)")
    else:
        print(f"{len(evaluation.paths)} unlabelled videos: predictions only")
    print(f"wrote {json_path} and {csv_path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from motionmae.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=args.out, overrides=list(args.set))
    if args.data_dir is not None:
        cfg.data_dir = args.data_dir
    if args.steps is not None:
        cfg.steps = args.steps
    if args.train_videos is not None:
        cfg.num_train = args.train_videos
    if args.val_videos is not None:
        cfg.num_val = args.val_videos
    on_log, close = _progress(cfg.steps, "pretrain")
    try:
        result = run_demo(cfg, on_log=on_log, on_stage=lambda m: print(f"==> {m}", flush=True))
    finally:
        close()
    print()
    print(f"Motion classes ({len(result.classes)}): {', '.join(result.classes)}")
    print("The class of a clip is how its object moves; one frame cannot tell it.")
    print()
    print(f"{'encoder / probe':<34} {'top-1':>7} {'top-5':>7} {'chance':>7}")
    for name, probe in result.rows:
        print(f"{name:<34} {probe.top1:>7.1%} {probe.top5:>7.1%} {probe.chance:>7.1%}")
    print()
    print(f"Pretraining here is {cfg.steps} steps on {cfg.num_train} videos, a tiny fraction of "
          "published budgets (hundreds of epochs); it shows the pipeline end to end, not the "
          "accuracy a full run reaches.")
    print(f"Run folder: {result.run_dir} (checkpoints/, metrics.jsonl, config.yaml); "
          f"`motionmae report {result.run_dir}` plots it.")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from motionmae.viz import report_main

    page = report_main(args.run_dir)
    print(f"report written to {page}")
    return 0


def cmd_tracks(args: argparse.Namespace) -> int:
    import numpy as np

    from motionmae.data import probe_video, read_frames
    from motionmae.motion import grid_queries, track
    from motionmae.motion.protocol import validate_queries

    info = probe_video(args.video)
    stop = info.num_frames if args.frames is None else args.start + args.frames * args.stride
    indices = np.arange(args.start, min(stop, info.num_frames), args.stride)
    if len(indices) == 0:
        raise UsageError(f"--start {args.start} is past the last frame of {args.video} "
                         f"({info.num_frames} frames)")
    frames = read_frames(args.video, indices, args.size)
    height, width = frames.shape[1:3]
    if args.queries is not None:
        try:
            queries = validate_queries(np.load(args.queries, allow_pickle=False),
                                       len(frames), height, width)
        except ValueError as error:  # also a file that is not a .npy array
            raise UsageError(f"--queries {args.queries}: {error}") from error
    else:
        queries = grid_queries(height, width, args.grid)
    settings = {"checkpoint": args.checkpoint} if args.tracker == "cotracker" else {}
    tracks, visible = track(frames, queries, tracker=args.tracker, **settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, tracks=tracks.astype(np.float32), visible=visible,
                        queries=queries, frame_indices=indices)
    log.info("%d points x %d frames (%dx%d px) -> %s; %.1f%% visible", tracks.shape[1],
             tracks.shape[0], width, height, args.out, 100 * visible.mean())
    if args.draw is not None:
        from motionmae.viz import draw_tracks, write_png, write_video

        drawn = draw_tracks(frames, tracks, visible, tail=8)
        if args.draw.suffix.lower() == ".png":
            write_png(args.draw, drawn[-1])
        else:
            write_video(args.draw, drawn, fps=info.fps / args.stride if info.fps else 8.0)
        log.info("drawn tracks -> %s", args.draw)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from motionmae.interop import export

    folder = export(args.checkpoint, args.format, args.out, overwrite=args.overwrite)
    print(f"exported ({args.format}) to {folder}")
    return 0


def cmd_extract_tracks(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from motionmae.config import PretrainConfig, load_config
    from motionmae.data import read_video_list
    from motionmae.motion import TrackCache, extract_tracks
    from motionmae.train.pretrain import track_cache_settings

    index, count = _parse_shard(args.shard)
    cfg = load_config(PretrainConfig, args.config,
                      [f"data.train={args.data}", f"tracking.cache={args.cache}", *args.set])
    cache = TrackCache(Path(args.cache), track_cache_settings(cfg))
    videos = [entry.path for entry in read_video_list(args.data).entries]
    bar = tqdm(total=len(videos) // count + 1, desc=f"tracks {index}/{count}", unit="video")

    def on_progress(completed: int, total: int, video: object, status: str) -> None:
        bar.total = total
        bar.update(completed - bar.n)

    try:
        stats = extract_tracks(videos, cache, workers=args.workers, shard=(index, count),
                               on_progress=on_progress)
    finally:
        bar.close()
    print(f"{stats.done} tracked, {stats.skipped_existing} already cached, "
          f"{len(stats.failed)} failed ({stats.seconds:.1f}s)")
    for video, reason in stats.failed:
        print(f"  failed: {video}: {reason}", file=sys.stderr)
    return DATA if stats.failed else 0


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        raise UsageError(f"--shard must be i/n with 0 <= i < n, "
                         f"got {text!r}") from None
    return index, count


def cmd_extract_teacher(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from motionmae.config import PretrainConfig, load_config
    from motionmae.data import read_video_list
    from motionmae.targets.teacher_cache import TeacherCacheSettings, TeacherFeatureCache
    from motionmae.targets.teacher_extract import ClipLayout, extract_teacher
    from motionmae.targets.teacher_models import load_teacher, read_teacher_spec
    from motionmae.train.loop import resolve_device

    index, count = _parse_shard(args.shard)
    teacher = [f"targets.teacher.path={args.teacher}"] if args.teacher else []
    cfg = load_config(PretrainConfig, args.config, [f"data.train={args.data}",
                      f"tracking.cache={args.cache}", *teacher, *args.set])
    cfg.targets.teacher.validate("targets.teacher")  # also when names lacks the teacher
    spec = read_teacher_spec(cfg.targets.teacher.path)
    cache = TeacherFeatureCache(args.cache, TeacherCacheSettings.from_config(cfg, spec))
    videos = [entry.path for entry in read_video_list(args.data).entries]
    bar = tqdm(total=len(videos) // count + 1, desc=f"teacher {index}/{count}", unit="video")

    def on_progress(completed: int, total: int, video: object, status: str) -> None:
        bar.total = total
        bar.update(completed - bar.n)

    try:
        stats = extract_teacher(videos, cache, load_teacher(spec), ClipLayout.from_config(cfg),
                                device=resolve_device(args.device), batch_size=args.batch_size,
                                shard=(index, count), on_progress=on_progress)
    finally:
        bar.close()
    print(f"{stats.done} computed, {stats.skipped_existing} already cached, "
          f"{len(stats.failed)} failed ({stats.seconds:.1f}s)")
    for video, reason in stats.failed:
        print(f"  failed: {video}: {reason}", file=sys.stderr)
    return DATA if stats.failed else 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from motionmae.viz.reconstruct import visualize

    written = visualize(args.checkpoint, args.video, args.out, seed=args.seed)
    print(f"wrote {len(written)} files to {args.out}: "
          f"{', '.join(p.name for p in written)}")
    return 0


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
    bar = tqdm(total=0, desc="prepare", unit="video", dynamic_ncols=True)
    failed = 0

    def on_progress(completed: int, total: int, video: object, status: str) -> None:
        nonlocal failed
        failed += status == "failed"
        bar.total = total
        bar.set_postfix(failed=failed, refresh=False)
        bar.update(completed - bar.n)

    try:
        stats = prepare_dataset(args.data, args.out, settings, workers=args.workers,
                                list_name=args.list_name, root=args.root,
                                on_progress=on_progress)
    finally:
        bar.close()
    print(f"{stats.done} encoded, {stats.skipped} already prepared, {len(stats.failed)} failed "
          f"({stats.seconds:.1f}s); list: {stats.list_path}")
    for video, reason in stats.failed[:10]:
        print(f"  failed: {video}: {reason}", file=sys.stderr)
    if stats.failed:
        assert stats.list_path is not None
        print(f"  all failures: {failures_path(stats.list_path)}", file=sys.stderr)
    return DATA if stats.failed else 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from motionmae.data import read_video_list
    from motionmae.data.check import check_videos, write_check

    if args.frames < 1 or args.stride < 1:
        raise UsageError(f"--frames and --stride must be >= 1, got {args.frames} and "
                         f"{args.stride}")
    entries = read_video_list(args.data).entries
    bar = tqdm(total=len(entries), desc="check-data", unit="video", dynamic_ncols=True)
    bad = 0

    def on_progress(done: int, total: int, result: Any) -> None:
        nonlocal bad
        bad += result.status == "bad"
        bar.set_postfix(bad=bad, refresh=False)
        bar.update(done - bar.n)

    try:
        results = check_videos([e.path for e in entries], args.frames, args.stride,
                               args.short_videos, args.workers, on_progress)
    finally:
        bar.close()
    report, clean = write_check(results, entries, args.out)
    counts = {status: sum(r.status == status for r in results) for status in ("ok", "short",
                                                                              "bad")}
    print(f"{counts['ok']} ok, {counts['short']} shorter than a clip, {counts['bad']} bad; "
          f"report: {report}; clean list ({counts['ok'] + counts['short']} videos): {clean}")
    for result in [r for r in results if r.status == "bad"][:10]:
        print(f"  bad: {result.detail}", file=sys.stderr)
    return DATA if counts["bad"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status says how it ended (see :mod:`motionmae.errors`)."""
    args = build_parser().parse_args(argv)
    # OpenMP threads that spin while waiting are ~16x slower per training step on a CPU
    # shared with loader workers (tracking, decoding) or another job (docs/benchmarks.md);
    # a sleeping wait costs little when the cores are free. Read once, at the first torch
    # import, which happens after this line; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    debug = args.debug or os.environ.get("MOTIONMAE_DEBUG", "") not in ("", "0")
    try:
        return args.handler(args)
    except Exception as error:
        # The single place where errors a user can cause become one line and an exit status;
        # anything else (a bug) keeps its traceback.
        from motionmae.errors import classify

        known = classify(error)
        if known is None or debug:
            raise
        code, message = known
        print(f"motionmae {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())

"""The other commands: ``demo``, ``report``, ``tracks``, ``export`` and ``visualize``."""

from __future__ import annotations

import argparse
from pathlib import Path

from motionmae.cli.common import log, progress
from motionmae.errors import UsageError


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic motion data -> pretrain tiny model -> probe")
    p.add_argument("--data-dir", type=Path, help="where the synthetic videos are cached")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    p.add_argument("--steps", type=int, help="pretraining steps (default 600)")
    p.add_argument("--train-videos", type=int, help="synthetic training videos")
    p.add_argument("--val-videos", type=int, help="synthetic validation videos")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pretraining config key")
    p.set_defaults(handler=cmd_demo)


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
    on_log, close = progress(cfg.steps, "pretrain")
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


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="plots + one-page HTML summary of a run folder")
    p.add_argument("run_dir", type=Path, help="run folder (metrics.jsonl, config.yaml, ...)")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from motionmae.viz import report_main

    page = report_main(args.run_dir)
    print(f"report written to {page}")
    return 0


def add_tracks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tracks", help="track points through a video; write tracks + visibility")
    p.add_argument("video", type=Path)
    p.add_argument("--out", required=True, type=Path,
                   help="output .npz: tracks [T,N,2] float32 (x,y px), visible [T,N] bool")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--grid", type=int, default=14, help="G x G queries on frame 0")
    where.add_argument("--queries", type=Path, help=".npy of [N,3] queries (t, x, y) in px")
    p.add_argument("--tracker", default="lk",
                   help="a registered tracker: lk, flow, cotracker, torch_lk, or one a plugin "
                   "registers (MOTIONMAE_PLUGINS)")
    p.add_argument("--checkpoint", help="CoTracker3 checkpoint file (--tracker cotracker)")
    p.add_argument("--size", type=int, help="decode at this short side (px); default: as coded")
    p.add_argument("--start", type=int, default=0, help="first frame")
    p.add_argument("--frames", type=int, help="number of frames (default: to the end)")
    p.add_argument("--stride", type=int, default=1, help="take every N-th frame")
    p.add_argument("--draw", type=Path, help="also write the tracks drawn over the video "
                   "(.mp4 or .gif; .png: the last frame with the recent trails)")
    p.set_defaults(handler=cmd_tracks)


def cmd_tracks(args: argparse.Namespace) -> int:
    import numpy as np

    from motionmae.data import probe_video, read_frames
    from motionmae.motion import grid_queries, make_tracker, track
    from motionmae.motion.protocol import validate_queries
    from motionmae.viz.io import VIDEO_SUFFIXES

    if args.draw is not None:  # checked before tracking a whole video
        suffix = args.draw.suffix.lower()
        if suffix not in (*VIDEO_SUFFIXES, ".png"):
            raise UsageError(f"--draw {args.draw}: unsupported suffix {suffix!r}; use one of "
                             f"{', '.join((*VIDEO_SUFFIXES, '.png'))}")
    if args.tracker == "cotracker" and not args.checkpoint:
        raise UsageError("--tracker cotracker needs --checkpoint FILE: the local CoTracker3 "
                         "checkpoint (scaled_offline.pth, from "
                         "https://huggingface.co/facebook/cotracker3)")
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
    settings = {"checkpoint": args.checkpoint} if args.checkpoint else {}
    try:
        tracker = make_tracker(args.tracker, **settings)
    except ValueError as error:  # an unknown tracker or setting
        raise UsageError(f"--tracker {args.tracker}: {error}") from error
    tracks, visible = track(frames, queries, tracker=tracker)
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


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint as a motionmae or Hugging Face folder")
    p.add_argument("--checkpoint", required=True,
                   help="run folder, checkpoint, exported/HF folder or official VideoMAE .pth")
    p.add_argument("--format", choices=["motionmae", "hf"], default="motionmae")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not hold a model)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from motionmae.interop import export

    folder = export(args.checkpoint, args.format, args.out, overwrite=args.overwrite)
    print(f"exported ({args.format}) to {folder}")
    return 0


def add_visualize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("visualize", help="pictures of a pretrained model's masking and "
                       "reconstruction (pixels, tracks) on the centre clip of a video (the "
                       "checkpoint's frames and stride, centre crop; the frames are logged)")
    p.add_argument("--checkpoint", required=True, help="run folder, checkpoint folder or file")
    p.add_argument("video", type=Path)
    p.add_argument("--out", required=True, type=Path, help="output folder (PNGs, MP4s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask")
    p.set_defaults(handler=cmd_visualize)


def cmd_visualize(args: argparse.Namespace) -> int:
    from motionmae.viz.reconstruct import visualize

    written = visualize(args.checkpoint, args.video, args.out, seed=args.seed)
    print(f"wrote {len(written)} files to {args.out}: "
          f"{', '.join(p.name for p in written)}")
    return 0

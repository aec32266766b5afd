"""``motionmae finetune``: train a classifier on an encoder, then evaluate it on ``--val``."""

from __future__ import annotations

import argparse
from pathlib import Path

from motionmae.cli.common import (
    Stopped,
    add_training_options,
    load_training_config,
    run_training,
    views_text,
)
from motionmae.errors import UsageError


def add_finetune(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--config", help="YAML config file, or a run folder for its config.yaml "
                   "(defaults <- file <- flags <- --set)")
    p.add_argument("--model", choices=["tiny", "small", "base", "large"],
                   help="architecture (with --scratch)")
    add_training_options(p, "finetune.mixup=0")
    p.set_defaults(handler=cmd_finetune)


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
    from motionmae.config import FinetuneConfig
    from motionmae.train.finetune import data_defaults, evaluate_finetuned, finetune

    if args.model is not None and not args.scratch:
        raise UsageError("--model applies to --scratch only (a checkpoint "
                         "brings its own architecture)")

    def checkpoint_data() -> dict:
        # The checkpoint's clip geometry and normalisation, unless the file or flags say
        # otherwise (a resumed run has its own, saved).
        return {"data": data_defaults(args.checkpoint)} if args.checkpoint else {}

    cfg = load_training_config(FinetuneConfig, args, finetune_overrides(args), checkpoint_data)

    def train_then_evaluate(cfg, *, resume, dist, on_log):
        # In the job's distributed context, as training: rank 0 evaluates while the other
        # ranks wait for it at the end of the session.
        result = finetune(cfg, resume=resume, dist=dist, on_log=on_log)
        return result, evaluate_finetuned(cfg, result, dist)

    outcome = run_training("finetune", train_then_evaluate, cfg, args,
                           steps_done=lambda outcome: outcome[0].train.state.step)
    if isinstance(outcome, Stopped):
        return outcome.exit_code  # a checkpoint was saved: continue with --resume
    result, evaluation = outcome
    if evaluation is not None and evaluation.metrics is not None:
        metrics = evaluation.metrics
        print(f"val: top-1 {metrics.top1:.1%}  top-5 {metrics.top5:.1%}  mean class "
              f"{metrics.mean_class:.1%} ({metrics.num_videos} videos, "
              f"{views_text(cfg.data.test_clips, cfg.data.test_crops)}); predictions in "
              f"{Path(cfg.run.out) / 'eval'}")
        if result.val_from_train:
            print(f"NOT HELD OUT: {result.val_from_train} of {metrics.num_videos} val videos "
                  f"are in the training list {cfg.data.train}")
    return 0

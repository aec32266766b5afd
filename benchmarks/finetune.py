"""Does motion pretraining help downstream? Fine-tune pretrained vs from scratch at the same
budget, and probe the frozen encoder with a linear and an attentive probe.

On the demo's synthetic motion dataset (the class is how an object moves), starting from a
pretrained run (``--pretrained RUN``, e.g. ``runs/demo``; otherwise the demo's pretraining is
run first for ``--pretrain-steps``):

1. fine-tune the pretrained encoder and a randomly initialised one of the same architecture
   with the same recipe, steps, batch and seed; evaluate both on the validation videos;
2. extract the frozen pretrained (and random) encoder's tokens once per split and train the
   linear, kNN and attentive probes on them.

    .venv/bin/python benchmarks/finetune.py --pretrained runs/demo --steps 200 \\
        --out runs/finetune_bench

A fine-tuning run whose final checkpoint and evaluation exist under ``--out`` is reused, so
re-running prints the table without training again. ``--set key=value`` overrides the
fine-tuning config of both runs (e.g. ``--set finetune.mixup=0``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from motionmae.api import load_encoder
from motionmae.checkpoints.format import latest_checkpoint
from motionmae.config import FinetuneConfig, PretrainConfig, load_config, to_dict
from motionmae.data import make_synthetic_dataset
from motionmae.demo import DemoConfig, demo_pretrain_config
from motionmae.eval import eval_data_config, list_features, run_probe
from motionmae.models import VideoEncoder
from motionmae.train.finetune import data_defaults, evaluate_finetuned, finetune
from motionmae.train.pretrain import pretrain, token_grid


def finetune_config(args: argparse.Namespace, train_list: Path, val_list: Path, out: Path,
                    checkpoint: Path | None, model: dict[str, Any],
                    data: dict[str, Any]) -> FinetuneConfig:
    """The shared recipe (VideoMAE's defaults, ``flip`` off: left vs right is a class);
    only the initial encoder differs between the two runs."""
    base = {
        "model": model,
        "data": {**data, "train": str(train_list), "val": str(val_list), "flip": False,
                 "scales": [1.0, 0.875, 0.75], "workers": 1},
        "finetune": {"checkpoint": None if checkpoint is None else str(checkpoint)},
        "optim": {"lr": args.lr, "warmup_fraction": 0.1},
        "run": {"out": str(out), "steps": args.steps, "batch_size": args.batch_size,
                "seed": 0, "log_every": 10, "ckpt_every": args.steps},
    }
    return load_config(FinetuneConfig, overrides=list(args.set), base=base)


def run_finetune(cfg: FinetuneConfig) -> dict[str, float]:
    """Fine-tune (or reuse a finished run) and return its validation metrics and minutes."""
    out = Path(cfg.run.out)
    report = out / "eval" / "val.json"
    done = latest_checkpoint(out / "checkpoints")
    if done is not None and done.step == cfg.run.steps and report.is_file():
        print(f"reusing {out}", flush=True)
        saved = json.loads(report.read_text())
        minutes = saved.get("minutes", float("nan"))
        metrics = saved["metrics"]
    else:
        start = time.perf_counter()
        evaluation = evaluate_finetuned(cfg, finetune(cfg))
        minutes = (time.perf_counter() - start) / 60
        assert evaluation is not None and evaluation.metrics is not None
        metrics = json.loads(report.read_text())["metrics"]
        saved = json.loads(report.read_text()) | {"minutes": minutes}
        report.write_text(json.dumps(saved, indent=1))
    return {"top1": metrics["top1"], "top5": metrics["top5"],
            "mean_class": metrics["mean_class"], "minutes": minutes}


def probe_rows(name: str, encoder: torch.nn.Module, train_list: Path, val_list: Path,
               eval_data) -> list[dict[str, Any]]:
    """Linear, kNN and attentive probes trained on one token extraction per split."""
    start = time.perf_counter()
    train = list_features(encoder, train_list, eval_data, batch_size=16, pool=False)
    val = list_features(encoder, val_list, eval_data, batch_size=16, pool=False)
    extract = (time.perf_counter() - start) / 60
    rows = []
    for kind in ("linear", "knn", "attentive"):
        start = time.perf_counter()
        result = run_probe(kind, train, val)
        rows.append({"row": f"{kind} probe", "init": name, "top1": result.top1,
                     "top5": result.top5, "mean_class": None,
                     "minutes": (time.perf_counter() - start) / 60,
                     "extract_minutes": extract})
        print(f"{kind} probe on {name}: top-1 {result.top1:.1%}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", type=Path,
                        help="a pretraining run folder to start from (default: pretrain one)")
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning steps of each run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak fine-tuning lr")
    parser.add_argument("--out", type=Path, default=Path("runs/finetune_bench"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="fine-tuning config override for both runs")
    parser.add_argument("--skip-probes", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    demo = DemoConfig(steps=args.pretrain_steps, out=args.out / "pretrain")
    if args.data_dir is not None:
        demo.data_dir = args.data_dir
    data = make_synthetic_dataset(demo.data_dir, num_train=demo.num_train,
                                  num_val=demo.num_val, frames=demo.video_frames,
                                  size=demo.video_size, seed=demo.seed)
    pretrained = args.pretrained
    if pretrained is None:
        pretrain(demo_pretrain_config(demo, data.train_list))
        pretrained = demo.out
    pretrain_cfg = load_config(PretrainConfig, pretrained / "config.yaml")
    model = to_dict(pretrain_cfg.model)  # the scratch run gets the same architecture
    geometry = data_defaults(pretrained)

    rows: list[dict[str, Any]] = []
    for name, checkpoint in (("pretrained", pretrained), ("scratch", None)):
        cfg = finetune_config(args, data.train_list, data.val_list, args.out / name,
                              checkpoint, model, geometry)
        result = run_finetune(cfg)
        rows.append({"row": "fine-tune", "init": name, **result})
        print(f"fine-tune from {name}: top-1 {result['top1']:.1%} "
              f"({result['minutes']:.1f} min)", flush=True)

    if not args.skip_probes:
        description = latest_checkpoint(pretrained / "checkpoints").config()
        eval_data = eval_data_config(description, workers=1)
        rows += probe_rows("pretrained", load_encoder(pretrained), data.train_list,
                           data.val_list, eval_data)
        torch.manual_seed(0)
        random_init = VideoEncoder(pretrain_cfg.model.resolved(), token_grid(pretrain_cfg))
        rows += probe_rows("random init", random_init, data.train_list, data.val_list,
                           eval_data)

    steps = latest_checkpoint(pretrained / "checkpoints").step
    chance = 1 / len(data.classes)
    print(f"\npretrained: {pretrained} ({steps} steps, targets "
          f"{','.join(pretrain_cfg.targets.names)}); fine-tuning: {args.steps} steps x batch "
          f"{args.batch_size}; {demo.num_train} train / {demo.num_val} val videos, "
          f"{len(data.classes)} classes (chance {chance:.1%})\n")
    print("| row | init | top-1 | top-5 | minutes |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['row']} | {row['init']} | {row['top1']:.1%} | {row['top5']:.1%} | "
              f"{row['minutes']:.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"pretrained": str(pretrained), "pretrain_steps": steps, "steps": args.steps,
         "batch_size": args.batch_size, "lr": args.lr, "overrides": args.set,
         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""Short exploratory runs on the motion suite's data: one row, a few hundred steps, a few tasks.

What ``motion_suite.py`` measures over all tasks at the full budget, this asks quickly of one
setting: pretrain a row (``--set``-style overrides on the library's defaults, geometry from
``--budget``) for ``--steps`` on the pooled pretraining clips or on one task's
(``--pool TASK``), log every record to ``OUT/NAME.log.jsonl`` (``explained/<target>`` says
whether anything is learned before any probe runs), then linear-probe ``--tasks``. One JSON
line per run is appended to ``OUT/results.jsonl``.

``--oracle`` instead measures how much of the tracks target a model could explain by the
global motion alone: the fraction of the target's variance (around the batch mean, as
``explained`` is computed) that per-clip channel means remove, over 8 batches of 8 clips.

Commands (``nice``: the machine is shared)::

    nice .venv/bin/python benchmarks/motion_explore.py gain4 --steps 500 --pool camera \\
        --tasks camera targets.names=[tracks] masking.kind=tube targets.tracks.norm=batch \\
        model.difference_gain=4
    nice .venv/bin/python benchmarks/motion_explore.py oracle --oracle --pool camera \\
        targets.names=[tracks] targets.tracks.norm=batch
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Before torch's import: spinning OpenMP waits slow a step ~16x on shared cores (omp_wait.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from motion_suite import (
    BATCH,
    BUDGETS,
    SIZES,
    TASK_NAMES,
    default_data_dir,
    eval_data,
    make_tasks,
    one_thread,
    pretrain_config,
)

from motionmae.data import VideoDataset, read_video_list
from motionmae.eval import list_features, run_probe
from motionmae.targets import build_targets
from motionmae.train.pretrain import build_sample_hooks, token_grid

ORACLE_BATCHES = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="run name (folder OUT/NAME)")
    parser.add_argument("overrides", nargs="*", help="key=value settings, as --set takes them")
    parser.add_argument("--out", type=Path, default=Path("runs/explore"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--budget", choices=BUDGETS, default="16x112",
                        help="motion_suite budget (geometry)")
    parser.add_argument("--pool", default="pool",
                        help="pretraining clips: 'pool' (all tasks) or one task's name")
    parser.add_argument("--tasks", default=",".join(TASK_NAMES),
                        help="comma-separated tasks to linear-probe")
    parser.add_argument("--oracle", action="store_true",
                        help="measure the tracks target's per-clip share of variance instead")
    return parser.parse_intermixed_args(argv)


def _residual(mean: torch.Tensor, values: torch.Tensor, weight: torch.Tensor,
              total: float) -> float:
    """Weighted mean squared distance of ``values`` to ``mean`` (broadcast), per value."""
    return float(((values - mean).square() * weight).sum() / total)


def oracle(dataset: VideoDataset, cfg) -> dict[str, float]:
    """Mean over batches of: the batch-mean (trivial) variance of the tracks target, and the
    fraction of it that per-clip (and per-clip-per-time-slice) channel means explain."""
    grid = token_grid(cfg)
    target = build_targets(cfg.targets, grid, cfg.data)["tracks"]
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    trivial, by_clip, by_slice = [], [], []
    for b in range(ORACLE_BATCHES):
        samples = [dataset[int(i)] for i in order[b * BATCH:(b + 1) * BATCH]]
        batch = {k: torch.stack([s[k] for s in samples]) for k in ("tracks", "track_visible")}
        values, weight = target(batch)  # [B, L, D], [B, L]
        weight = torch.ones(values.shape[:2]) if weight is None else weight
        w = weight[..., None]
        total = float(w.sum()) * values.shape[-1]
        base = _residual((w * values).sum((0, 1)) / w.sum(), values, w, total)
        clip_mean = (w * values).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)
        sliced = values.view(BATCH, grid.t, -1, values.shape[-1])
        ws = w.view(BATCH, grid.t, -1, 1)
        slice_mean = (ws * sliced).sum(2, keepdim=True) / ws.sum(2, keepdim=True).clamp(min=1)
        trivial.append(base)
        by_clip.append(1 - _residual(clip_mean, values, w, total) / base)
        by_slice.append(1 - _residual(slice_mean, sliced, ws, total) / base)
    return {"trivial": float(np.mean(trivial)), "explained_by_clip_mean": float(np.mean(by_clip)),
            "explained_by_clip_slice_mean": float(np.mean(by_slice))}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from motionmae.api import load_encoder
    from motionmae.checkpoints.format import latest_checkpoint
    from motionmae.train.pretrain import pretrain

    files = make_tasks(default_data_dir(), SIZES["full"])
    pool = (default_data_dir() / "pretrain_pool.txt" if args.pool == "pool"
            else files[args.pool].pretrain)
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = args.out / args.name
    cfg = pretrain_config(args.budget, ["run.log_every=25", *args.overrides], pool, run_dir,
                          args.steps)
    if args.oracle:
        dataset = VideoDataset(read_video_list(pool), cfg.data, train=True, seed=0,
                               sample_hooks=build_sample_hooks(cfg, token_grid(cfg)))
        print(json.dumps({"name": args.name, **oracle(dataset, cfg)}), flush=True)
        return
    start = time.perf_counter()
    latest = latest_checkpoint(run_dir / "checkpoints")
    if latest is None or latest.step < args.steps:
        with (args.out / f"{args.name}.log.jsonl").open("a") as log_file:
            def on_log(record: dict) -> None:
                log_file.write(json.dumps({k: float(v) for k, v in record.items()}) + "\n")
                log_file.flush()

            pretrain(cfg, resume=latest is not None, on_log=on_log)
    minutes = (time.perf_counter() - start) / 60
    encoder, data = load_encoder(run_dir), eval_data(cfg)
    scores = {}
    for task in args.tasks.split(","):
        train = list_features(encoder, files[task].train, data, batch_size=16)
        test = list_features(encoder, files[task].test, data, batch_size=16)
        with one_thread():
            scores[task] = run_probe("linear", train, test).top1
    line = {"name": args.name, "budget": args.budget, "steps": args.steps, "pool": args.pool,
            "overrides": args.overrides, "pretrain_minutes": round(minutes, 1), **scores}
    with (args.out / "results.jsonl").open("a") as stream:
        stream.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""Does the M3Video trajectory target learn at a user's budget? ``targets.m3traj.norm`` compared.

Short pretraining runs of ``--targets hog,m3traj --masking tube`` at the demo's geometry (8
frames of 64 px, stride 2, 2 x 8 x 8 tubelets, 4 blocks, batch 8) on the demo's synthetic
dataset, 1,500 steps (the motion suite's budget; ``--steps 400`` is too few for any row, or
the ``hog`` target, to beat its batch mean), one run per row, one after another, each through
``motionmae pretrain`` with the library's defaults otherwise. Per row the
table gives ``explained/m3traj`` and ``explained/hog`` (``1 - loss / trivial``, logged in
``RUN/metrics.jsonl``: the share of the target's variance the model accounts for) averaged
over the last ``--tail`` logged steps (one step's batch of 8 clips is noisy), and the HOG
block's share of the m3traj target's variance as each norm makes it (measured on ``--clips``
training clips through the same loader hooks, in batches of 8: how much of what
``explained/m3traj`` divides by is appearance rather than motion) and, for each finished
run, ``explained`` of its m3traj prediction on the position block and on the HOG block alone
(``--eval-clips`` training clips, masks drawn as in training): which half was learned.

    nice .venv/bin/python benchmarks/m3traj_norms.py --out runs/m3traj_norms     # ~1 h
    nice .venv/bin/python benchmarks/m3traj_norms.py --out runs/m3traj_norms --table-only

A finished run folder is reused (its metrics read again), an unfinished one started over;
each run's output goes to ``OUT/ROW.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# Before torch's import: spinning OpenMP waits slow a step ~16x on shared cores (omp_wait.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from motionmae.checkpoints.format import resolve_checkpoint
from motionmae.cli import build_parser, pretrain_overrides
from motionmae.config import PretrainConfig, from_dict, load_config
from motionmae.data import VideoDataset, make_synthetic_dataset, read_video_list
from motionmae.data.dataset import collate_samples
from motionmae.targets import masked_mse, trivial_mse
from motionmae.targets.m3traj import M3TrajHook
from motionmae.targets.m3traj_norm import (
    normalize_batch,
    normalize_patch_std,
    normalize_path_length,
)
from motionmae.tokens import mask_to_indices
from motionmae.train.pretrain import PretrainTask, build_sample_hooks

# Row -> (targets.m3traj.norm, targets.m3traj.rms_floor px; only batch reads the floor).
ROWS: dict[str, tuple[str, float]] = {
    "patch_std": ("patch_std", 0.25),
    "batch": ("batch", 0.25),
    "batch, rms_floor 1": ("batch", 1.0),
    "path_length": ("path_length", 0.25),
}
GEOMETRY = ["model.patch_size=8", "model.depth=4", "data.stride=2"]
BATCH = 8


def pretrain_argv(data: Path, out: Path, row: str, steps: int) -> list[str]:
    """``motionmae pretrain`` arguments of one row (``none``: pixels and raw histograms)."""
    norm, floor = ROWS.get(row, (row, 0.25))
    argv = ["pretrain", "--data", str(data), "--out", str(out), "--targets", "hog,m3traj",
            "--masking", "tube", "--frames", "8", "--size", "64", "--steps", str(steps),
            "--batch-size", str(BATCH)]
    for item in (*GEOMETRY, f"targets.m3traj.norm={norm}", f"targets.m3traj.rms_floor={floor}",
                 "run.log_every=10",
                 f"run.ckpt_every={steps}"):
        argv += ["--set", item]
    return argv


def slug(row: str) -> str:
    return row.replace(", ", "_").replace(" ", "_")


def finished(run: Path, steps: int) -> bool:
    records = read_metrics(run)
    return bool(records) and records[-1].get("step", 0) >= steps


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in (json.loads(line) for line in path.read_text().splitlines() if line)
            if "explained/m3traj" in r]


def hog_shares(data: Path, clips: int, steps: int) -> dict[str, float]:
    """Per row: the HOG block's share of the m3traj target's weighted per-value variance over
    ``clips`` training clips (pixels and raw histograms from the loader hook, normalised
    afterwards as each norm does; ``batch`` per batch of :data:`BATCH`)."""
    argv = pretrain_argv(data, Path("unused"), "none", steps)  # no norm: pixels, raw HOG
    cfg = load_config(PretrainConfig, None, pretrain_overrides(build_parser().parse_args(argv)))
    grid = cfg.token_grid()
    m3 = cfg.targets.m3traj
    dataset = VideoDataset(read_video_list(cfg.data.train), cfg.data, train=True, seed=0,
                           sample_hooks=[M3TrajHook(grid, m3)])
    samples = [dataset[i] for i in range(clips)]
    layout = (m3.points_per_side**2, m3.length, -1)
    raw = torch.stack([s["m3traj"] for s in samples]).unflatten(-1, layout)  # [n, N, K, L, F]
    weight = torch.stack([s["m3traj_weight"] for s in samples])  # [n, N]
    shares = {}
    for row, (norm, floor) in ROWS.items():
        if norm == "patch_std":
            values = torch.from_numpy(normalize_patch_std(raw.numpy()))
        elif norm == "path_length":
            values = torch.from_numpy(normalize_path_length(raw.numpy(), m3.hog_bins))
        else:
            values = torch.cat([normalize_batch(raw[i:i + BATCH], weight[i:i + BATCH],
                                                m3.hog_bins, floor)
                                for i in range(0, clips, BATCH)])
        w = weight.reshape(-1, 1, 1, 1)
        flat = values.reshape(-1, *values.shape[2:])  # [tokens, K, L, F]
        total = w.sum()
        mean = (w * flat).sum(dim=0) / total
        variance = ((w * (flat - mean).square()).sum(dim=0) / total).sum(dim=(0, 1))  # [F]
        shares[row] = float(variance[2:].sum() / variance.sum())
    return shares


def block_explained(run: Path, clips: int) -> tuple[float, float]:
    """``explained`` of the finished run's m3traj prediction on its position block and on its
    HOG block: ``1 - sum(loss) / sum(trivial)`` over ``clips`` training clips in batches of
    :data:`BATCH` (masks drawn as in training, seeded), each block's values scored alone."""
    ckpt = resolve_checkpoint(run)
    cfg = from_dict(PretrainConfig, dict(ckpt.config()["config"]))
    task = PretrainTask(cfg)
    task.model.load_state_dict(ckpt.weights())
    task.model.eval()
    m3 = cfg.targets.m3traj
    dataset = VideoDataset(read_video_list(cfg.data.train), cfg.data, train=True, seed=1,
                           sample_hooks=build_sample_hooks(cfg, task.grid))
    generator = torch.Generator().manual_seed(0)
    sums = np.zeros((2, 2))  # (positions, hog) x (loss, trivial)
    for start in range(0, clips, BATCH):
        batch = collate_samples([dataset[i] for i in range(start, start + BATCH)])
        visible, hidden = mask_to_indices(task.masking(batch, generator),
                                          task.masking.num_visible)
        with torch.no_grad():
            pred = task.model(batch["clip"], visible, hidden)["m3traj"].float()
            values, weight = task.targets["m3traj"](batch)
        layout = (m3.points_per_side**2, m3.length, -1)
        for block, part in enumerate((slice(0, 2), slice(2, None))):
            p = pred.unflatten(-1, layout)[..., part].flatten(2)
            v = values.unflatten(-1, layout)[..., part].flatten(2)
            sums[block] += (float(masked_mse(p, v, hidden, weight)),
                            float(trivial_mse(v, hidden, weight)))
    return 1 - sums[0, 0] / sums[0, 1], 1 - sums[1, 0] / sums[1, 1]


def table(out: Path, steps: int, tail: int, shares: dict[str, float] | None,
          blocks: dict[str, tuple[float, float]]) -> str:
    lines = [f"hog,m3traj / tube, demo geometry, {steps} steps x {BATCH} clips; explained: "
             f"mean (+- standard error) of the last {tail} logged steps",
             "", "| targets.m3traj | explained/m3traj | explained/hog | loss/m3traj | "
             "trivial/m3traj | HOG share of m3traj variance | explained, positions / HOG |",
             "|---|---|---|---|---|---|---|"]
    for row in ROWS:
        records = read_metrics(out / slug(row))[-tail:]
        if not records:
            continue
        mean = {k: float(np.mean([r[k] for r in records]))
                for k in ("explained/m3traj", "explained/hog", "loss/m3traj", "trivial/m3traj")}
        error = {k: 100 * float(np.std([r[k] for r in records]) / np.sqrt(len(records)))
                 for k in ("explained/m3traj", "explained/hog")}
        share = f"{100 * shares[row]:.1f}%" if shares else "-"
        block = (f"{100 * blocks[row][0]:+.1f}% / {100 * blocks[row][1]:+.1f}%"
                 if row in blocks else "-")
        lines.append(f"| {row} | {100 * mean['explained/m3traj']:+.1f}% "
                     f"(+-{error['explained/m3traj']:.1f}) | {100 * mean['explained/hog']:+.1f}% "
                     f"(+-{error['explained/hog']:.1f}) | {mean['loss/m3traj']:.4f} | "
                     f"{mean['trivial/m3traj']:.4f} | {share} | {block} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/m3traj_norms"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--tail", type=int, default=25,
                        help="logged steps averaged (every 10th step is logged)")
    parser.add_argument("--clips", type=int, default=32, help="clips for the HOG shares")
    parser.add_argument("--eval-clips", type=int, default=160,
                        help="clips the finished runs' blocks are scored on")
    parser.add_argument("--only", nargs="*", default=list(ROWS), choices=list(ROWS),
                        help="rows to train (default: all)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()

    dataset = make_synthetic_dataset(args.data_dir or args.out / "data", num_train=args.videos,
                                     num_val=0, frames=16, size=64)
    if not args.table_only:
        for row in args.only:
            run = args.out / slug(row)
            if finished(run, args.steps):
                print(f"{row}: reusing {run}", flush=True)
                continue
            start = time.perf_counter()
            argv = [sys.executable, "-m", "motionmae",
                    *pretrain_argv(dataset.train_list, run, row, args.steps), "--overwrite"]
            args.out.mkdir(parents=True, exist_ok=True)
            with open(args.out / f"{slug(row)}.log", "w") as log:
                subprocess.run(argv, check=True, stdout=log, stderr=subprocess.STDOUT)
            print(f"{row}: {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    shares = hog_shares(dataset.train_list, args.clips, args.steps)
    blocks = {row: block_explained(args.out / slug(row), args.eval_clips) for row in ROWS
              if finished(args.out / slug(row), args.steps)}
    print(table(args.out, args.steps, args.tail, shares, blocks))


if __name__ == "__main__":
    main()

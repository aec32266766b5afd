"""How well finished runs fit their pretext targets on clips they trained on and on clips
they never saw: a memorisation check for the motion suite's learning curve.

For each run folder (``motion_suite.py`` writes them under ``OUT/BUDGET/ROW``), the latest
checkpoint's model scores its own targets (explained fraction per target, as the training
log defines it: ``1 - loss / trivial``) on the first ``--clips`` clips of each real-footage
task's ``pretrain`` split (seen in pretraining, through the pooled list) and of its ``test``
split (never seen), with the run's masking and one fixed seed. A gap that grows with the steps
while the probes stay level says the run memorises its pool.

    nice .venv/bin/python benchmarks/pretext_fit.py runs/suite648/16x112/two-decoders--depth-2 \\
        runs/suite648/16x112/default--6000-steps
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from motion_suite import default_data_dir

from motionmae.checkpoints.format import resolve_checkpoint
from motionmae.config import PretrainConfig, load_config
from motionmae.data import VideoDataset, read_video_list
from motionmae.data.dataset import collate_samples
from motionmae.data.entries import VideoList
from motionmae.data.lists import VideoEntry
from motionmae.train.pretrain import PretrainTask, build_sample_hooks

TASKS = ("camera", "relative", "arrow", "speed")  # the demo task has no unlabelled test list
BATCH = 8


def clips(root: Path, split: str, per_task: int) -> VideoList:
    """The first ``per_task`` clips of ``split`` of every real-footage task, unlabelled."""
    lists = [read_video_list(root / task / f"{split}.txt") for task in TASKS]
    return VideoList([VideoEntry(entry.path) for videos in lists
                      for entry in videos.entries[:per_task]])


def pretext_fit(run: Path, root: Path, per_task: int) -> dict[str, dict[str, float]]:
    """``{split: {explained/TARGET: mean over batches}}`` of ``run``'s latest checkpoint."""
    cfg = load_config(PretrainConfig, str(run / "config.yaml"))
    torch.manual_seed(0)
    task = PretrainTask(cfg)
    task.model.load_state_dict(resolve_checkpoint(run).weights())
    task.model.eval()
    out = {}
    for split in ("pretrain", "test"):
        videos = clips(root, split, per_task)
        dataset = VideoDataset(videos, cfg.data, train=True, seed=1,
                               sample_hooks=build_sample_hooks(cfg, task.grid))
        generator = torch.Generator().manual_seed(0)
        values: dict[str, list[float]] = {}
        with torch.no_grad():
            for start in range(0, len(videos) - BATCH + 1, BATCH):
                batch = collate_samples([dataset[i] for i in range(start, start + BATCH)])
                _, parts = task.loss(task.model, batch, generator)
                for key, value in parts.items():
                    if key.startswith("explained/"):
                        values.setdefault(key, []).append(float(value))
        out[split] = {key: statistics.mean(v) for key, v in values.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--clips", type=int, default=24, help="clips per task and split")
    args = parser.parse_args()
    print("| run | steps | target | seen (pretrain) | unseen (test) | gap |")
    print("|---|---:|---|---:|---:|---:|")
    for run in args.runs:
        fit = pretext_fit(run, args.data_dir, args.clips)
        steps = resolve_checkpoint(run).step
        for key in fit["pretrain"]:
            seen, unseen = fit["pretrain"][key], fit["test"][key]
            print(f"| {run.name} | {steps} | {key} | {seen:+.3f} | {unseen:+.3f} | "
                  f"{seen - unseen:+.3f} |")


if __name__ == "__main__":
    main()

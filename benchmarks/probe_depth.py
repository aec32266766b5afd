"""Which encoder block reads the motion suite best: the linear and kNN probes of finished
suite runs on the features after the first ``k`` blocks (the final norm applied, mean-pooled
tokens), task by task.

MAE's last block serves the decoder; the blocks before it are often better for a linear
readout. This measures it on the suite's tasks for run folders that ``motion_suite.py``
wrote (``OUT/BUDGET/ROW``), without pretraining again::

    nice .venv/bin/python benchmarks/probe_depth.py runs/suite648/16x112/two-decoders--depth-2 \\
        --blocks 6 9 12 --out runs/probe_depth.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from motion_suite import SIZES, default_data_dir, eval_data, make_tasks, one_thread

from motionmae.api import load_encoder
from motionmae.config import PretrainConfig, load_config
from motionmae.eval import list_features, run_probe

PROBES = ("linear", "knn")


def truncated(encoder: torch.nn.Module, blocks: int) -> torch.nn.Module:
    """``encoder`` with only its first ``blocks`` blocks (the final norm kept)."""
    if not 1 <= blocks <= len(encoder.blocks):
        raise SystemExit(f"--blocks: {blocks} is not in 1..{len(encoder.blocks)}")
    encoder.blocks = encoder.blocks[:blocks]
    return encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="suite run folders")
    parser.add_argument("--blocks", nargs="+", type=int, required=True,
                        help="how many blocks to keep (the model's depth: all of them)")
    parser.add_argument("--out", type=Path, required=True, help="results, one JSON per line")
    args = parser.parse_args()
    files = make_tasks(default_data_dir(), SIZES["full"])
    for run in args.runs:
        cfg = load_config(PretrainConfig, run / "config.yaml")
        data = eval_data(cfg)
        for blocks in args.blocks:
            encoder = truncated(load_encoder(run), blocks)
            for task, task_files in files.items():
                train = list_features(encoder, task_files.train, data, batch_size=16)
                test = list_features(encoder, task_files.test, data, batch_size=16)
                for kind in PROBES:
                    with one_thread():
                        result = run_probe(kind, train, test)
                    line = {"run": str(run), "blocks": blocks, "task": task, "probe": kind,
                            "top1": result.top1, "num_test": result.num_val,
                            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
                    with args.out.open("a") as stream:
                        stream.write(json.dumps(line) + "\n")
                    print(f"{run.name:<28} blocks {blocks:2d}  {task:<9} {kind:<7} "
                          f"{result.top1:6.1%}", flush=True)


if __name__ == "__main__":
    main()

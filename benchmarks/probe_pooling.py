"""Is the mean over tokens what hides the motion? The linear probe of finished suite runs on
their last-layer tokens pooled two ways, task by task: the mean over all tokens (the suite's
readout, ``D`` values) and the mean over each cell of a ``2 x 2 x 2`` grid (time halves x
image quadrants, ``8 D`` values, the layout flow histograms keep).

A rotation or a zoom moves the tokens of opposite quadrants in opposite directions, so a
token-wise motion code can average out over the whole clip and survive in the cells. If the
cells read a longer run better where the mean does not, the features did learn more and the
readout hid it. Run folders are those ``motion_suite.py`` wrote (``OUT/BUDGET/ROW``);
``random`` is the untrained encoder of the first run's config::

    nice .venv/bin/python benchmarks/probe_pooling.py random \\
        runs/suite648/16x112/two-decoders--depth-2 runs/suite648/16x112/default--6000-steps \\
        --out runs/probe_pooling.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from motion_suite import SIZES, default_data_dir, eval_data, make_tasks, one_thread

from motionmae.api import load_encoder
from motionmae.config import PretrainConfig, load_config
from motionmae.eval import FeatureSet, list_features, run_probe
from motionmae.models import VideoEncoder
from motionmae.tokens import TokenGrid

RANDOM = "random"


def grid_cells(tokens: np.ndarray, grid: TokenGrid, cells: tuple[int, int, int]) -> np.ndarray:
    """``tokens [N, t*h*w, D]`` in ``(t, h, w)`` order -> ``[N, ct*ch*cw*D]``: the mean over
    each cell of a ``cells = (ct, ch, cw)`` split of the token grid (uneven splits give the
    first cells the extra row, as ``np.array_split``)."""
    n, _, dim = tokens.shape
    volume = tokens.reshape(n, grid.t, grid.h, grid.w, dim)
    pooled = []
    for along_t in np.array_split(volume, cells[0], axis=1):
        for along_h in np.array_split(along_t, cells[1], axis=2):
            for cell in np.array_split(along_h, cells[2], axis=3):
                pooled.append(cell.mean(axis=(1, 2, 3)))
    return np.concatenate(pooled, axis=1)


def readouts(tokens: FeatureSet, grid: TokenGrid) -> dict[str, FeatureSet]:
    """The two readouts of one split's tokens."""
    return {
        "mean": dataclasses.replace(tokens, features=tokens.features.mean(axis=1)),
        "cells 2x2x2": dataclasses.replace(tokens, features=grid_cells(tokens.features, grid,
                                                                        (2, 2, 2))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help=f"suite run folders, or {RANDOM!r}")
    parser.add_argument("--out", type=Path, required=True, help="results, one JSON per line")
    args = parser.parse_args()
    folders = [Path(run) for run in args.runs if run != RANDOM]
    if not folders:
        raise SystemExit("give at least one run folder (random init takes its config)")
    files = make_tasks(default_data_dir(), SIZES["full"])
    base = load_config(PretrainConfig, folders[0] / "config.yaml")
    for run in args.runs:
        cfg = base if run == RANDOM else load_config(PretrainConfig, Path(run) / "config.yaml")
        grid, data = cfg.token_grid(), eval_data(cfg)
        if run == RANDOM:
            torch.manual_seed(0)  # the suite's random-init row
            encoder = VideoEncoder(cfg.model.resolved(), grid)
        else:
            encoder = load_encoder(run)
        for task, task_files in files.items():
            splits = [readouts(list_features(encoder, videos, data, batch_size=16, pool=False),
                               grid) for videos in (task_files.train, task_files.test)]
            for name in splits[0]:
                with one_thread():
                    result = run_probe("linear", splits[0][name], splits[1][name])
                line = {"run": str(run), "readout": name, "task": task, "probe": "linear",
                        "top1": result.top1, "num_test": result.num_val,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
                with args.out.open("a") as stream:
                    stream.write(json.dumps(line) + "\n")
                print(f"{Path(run).name:<28} {name:<12} {task:<9} {result.top1:6.1%}",
                      flush=True)


if __name__ == "__main__":
    main()

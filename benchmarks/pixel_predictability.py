"""How much of the pixel target a hidden tubelet's neighbours explain, with no model at all.

Pixel MAE learned nothing at the suite's budget (docs/benchmarks.md, "Every mode at the suite's
budget"). This asks whether there was anything easy to learn: on batches of the suite's
pretraining clips (16x112, stride 1, the training crops), the norm-pix target of each tubelet
(VideoMAE's: per patch and channel, mean 0 and unit unbiased variance) is predicted by copying
a neighbour, and the explained fraction ``1 - mse(copy) / mse(0)`` is printed:

- the tubelet at the same place in the previous time slice (the next one for the first);
- the mean of the tubelets at the same place in all other time slices;
- the tubelet to its left in the same time slice (the right one in the first column).

Random masking (ST-MAE's) leaves some of the same-place tubelets visible; tube masking
(VideoMAE's) hides all of them, leaving only the spatial neighbours.

    nice .venv/bin/python benchmarks/pixel_predictability.py --batches 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from motion_suite import BUDGETS, SIZES, default_data_dir, make_tasks, pretrain_config

from motionmae.data import VideoDataset, build_loader, read_video_list
from motionmae.targets.pixel import normalize_patches
from motionmae.tokens import TokenGrid, patchify


def explained(prediction: torch.Tensor, target: torch.Tensor) -> float:
    return float(1 - (prediction - target).pow(2).mean() / target.pow(2).mean())


def copy_predictions(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """``tokens [B, t, h, w, D]`` -> each copy predictor's prediction, the same shape."""
    previous = torch.cat([tokens[:, 1:2], tokens[:, :-1]], dim=1)
    others = (tokens.sum(1, keepdim=True) - tokens) / (tokens.shape[1] - 1)
    left = torch.cat([tokens[:, :, :, 1:2], tokens[:, :, :, :-1]], dim=3)
    return {"same place, previous time slice": previous,
            "same place, mean of the other time slices": others,
            "left neighbour, same time slice": left}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=BUDGETS, default="16x112")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    make_tasks(default_data_dir(), SIZES["full"])  # the suite's clips, rendered once
    pool = default_data_dir() / "pretrain_pool.txt"
    cfg = pretrain_config(args.budget, ["targets.names=[pixel]", "data.workers=0"], pool,
                          Path("unused"), 1)
    dataset = VideoDataset(read_video_list(str(pool)), cfg.data, train=True, seed=0)
    loader = build_loader(dataset, batch_size=args.batch_size, workers=0, shuffle=True, seed=0,
                          drop_last=True)
    mean = torch.tensor(cfg.data.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(cfg.data.std).view(1, 3, 1, 1, 1)
    sums: dict[str, float] = {}
    for index, batch in zip(range(args.batches), loader, strict=False):
        clip = batch["clip"]
        grid = TokenGrid(frames=clip.shape[2], height=clip.shape[3], width=clip.shape[4],
                         patch=cfg.model.patch_size, tubelet=cfg.model.tubelet_size)
        target = normalize_patches(patchify(clip * std + mean, grid), 3)
        tokens = target.reshape(target.shape[0], grid.t, grid.h, grid.w, -1)
        for name, prediction in copy_predictions(tokens).items():
            sums[name] = sums.get(name, 0.0) + explained(prediction, tokens)
        batches = index + 1
    print(f"{args.budget}: norm-pix target explained by copying a neighbour "
          f"({batches} batches of {args.batch_size} clips)")
    for name, total in sums.items():
        print(f"  {name:<45} {total / batches:+.3f}")


if __name__ == "__main__":
    main()

"""Which targets and masks learn motion? Same budget, different targets, then a linear probe.

On the demo's synthetic motion dataset (the class is how an object moves), pretrain tiny
models for the same number of steps with targets pixel / tracks / pixel+tracks / hog+m3traj
and masking tube vs motion, then linear-, kNN- and attentive-probe each frozen encoder (one
token extraction per split; linear and kNN read the mean token). A random-init encoder is the
floor. ``--reuse`` probes finished run folders again without pretraining.

    .venv/bin/python benchmarks/representation.py --steps 1000 --out runs/representation

The published finding to check (TrackMAE, M3Video): trajectory targets beat pixel targets on
motion-sensitive data, and the combination beats both.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from motionmae.api import load_encoder
from motionmae.data import make_synthetic_dataset
from motionmae.demo import DemoConfig, demo_pretrain_config
from motionmae.eval import list_features, run_probe
from motionmae.models import VideoEncoder
from motionmae.train.pretrain import pretrain, token_grid

VARIANTS: dict[str, list[str]] = {
    "pixel / tube": ["targets.names=[pixel]"],
    "tracks / tube": ["targets.names=[tracks]"],
    "pixel+tracks / tube": ["targets.names=[pixel,tracks]"],
    "pixel+tracks / motion": ["targets.names=[pixel,tracks]", "masking.kind=motion"],
    "hog+m3traj / tube": ["targets.names=[hog,m3traj]", "masking.ratio=0.7"],
    # Ablations of the M3Video pair: its trajectory target alone, then without its HOG half.
    "m3traj / tube": ["targets.names=[m3traj]", "masking.ratio=0.7"],
    "m3traj deltas / tube": ["targets.names=[m3traj]", "targets.m3traj.hog=false",
                             "masking.ratio=0.7"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = DemoConfig()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("runs/representation"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--train-videos", type=int, default=defaults.num_train)
    parser.add_argument("--val-videos", type=int, default=defaults.num_val)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--reuse", action="store_true",
                        help="probe a variant's finished run folder instead of pretraining again")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    demo = DemoConfig(steps=args.steps, num_train=args.train_videos, num_val=args.val_videos)
    if args.data_dir is not None:
        demo.data_dir = args.data_dir
    data = make_synthetic_dataset(demo.data_dir, num_train=demo.num_train,
                                  num_val=demo.num_val, frames=demo.video_frames,
                                  size=demo.video_size, seed=demo.seed)
    eval_data = demo.eval_data()

    def probe(encoder: torch.nn.Module) -> tuple[float, float, float]:
        train = list_features(encoder, data.train_list, eval_data, batch_size=32, pool=False)
        val = list_features(encoder, data.val_list, eval_data, batch_size=32, pool=False)
        return tuple(run_probe(kind, train, val).top1 for kind in ("linear", "knn", "attentive"))

    rows = []
    base_cfg = demo_pretrain_config(demo, data.train_list)
    torch.manual_seed(0)
    rows.append(("random init", *probe(VideoEncoder(base_cfg.model.resolved(),
                                                    token_grid(base_cfg))), 0.0))
    print(f"{'random init':<24} linear {rows[0][1]:6.1%}  knn {rows[0][2]:6.1%}  "
          f"attentive {rows[0][3]:6.1%}", flush=True)
    for name, overrides in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        demo.out = args.out / name.replace(" ", "").replace("/", "_").replace("+", "-")
        demo.overrides = overrides
        cfg = demo_pretrain_config(demo, data.train_list)
        minutes = 0.0
        if not (args.reuse and (demo.out / "checkpoints").is_dir()):
            start = time.perf_counter()
            pretrain(cfg)
            minutes = (time.perf_counter() - start) / 60
        linear, knn, attentive = probe(load_encoder(demo.out))
        rows.append((name, linear, knn, attentive, minutes))
        print(f"{name:<24} linear {linear:6.1%}  knn {knn:6.1%}  attentive {attentive:6.1%}  "
              f"({minutes:.1f} min)", flush=True)

    chance = 1 / len(data.classes)
    print(f"\n{args.steps} steps of batch {demo.batch_size} each, tiny ViT depth {demo.depth}, "
          f"{demo.frames}x{demo.video_size}px, patch {demo.patch_size}, "
          f"{demo.num_train} train / {demo.num_val} val videos, chance {chance:.1%}\n")
    print(f"| {'targets / masking':<24} | linear | kNN    | attentive | pretrain min |")
    print(f"|{'-' * 26}|--------|--------|-----------|--------------|")
    for name, linear, knn, attentive, minutes in rows:
        print(f"| {name:<24} | {linear:6.1%} | {knn:6.1%} | {attentive:9.1%} | {minutes:12.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        [{"variant": r[0], "linear": r[1], "knn": r[2], "attentive": r[3], "minutes": r[4]}
         for r in rows],
        indent=2))


if __name__ == "__main__":
    main()

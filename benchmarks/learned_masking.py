"""Learned masking (TATS sampler) at ratio 0.95 against tube masking at 0.9: cost and probes.

Two measurements, each printed as a ratio against tube masking at 0.9 measured by the same
invocation:

1. **Training step cost** of the demo's model (tiny ViT, 16x112, pixel + tracks targets,
   batch ``--batch``): one step = mask (the sampler's forward, draw and PPO update included for
   learned masking) + autoencoder forward + backward + AdamW step, on one fixed batch with
   synthetic point tracks. clips/s: runners alternate in this process, median over
   ``--rounds`` runs of ``--timed-steps`` steps after 2 warm-up steps each. Peak memory: a
   fresh subprocess per variant, RSS high-water mark above a baseline after a miniature
   warm-up (the method of ``benchmarks/throughput.py``, whose helpers are used).
2. **Representation**: pretrain each variant on the demo's synthetic motion dataset for
   ``--steps`` steps (the demo's configuration otherwise), then linear and kNN probes on the
   frozen, mean-pooled features of the held-out videos.

    .venv/bin/python benchmarks/learned_masking.py --steps 200 --out runs/learned_masking

3. **PPO rollout reuse** (``--ppo-reuse``, on its own): TATS keeps each rollout for
   ``ppo_epochs`` loss calls, so it is reused after the policy has moved. For each
   ``--ppo-epochs`` value, pretrain in the current demo's geometry (8 frames of 64 px, 8x8
   patches) a smaller autoencoder (2 blocks, pixel target; it only supplies the reward; the
   sampler sees LK tracks) with TATS at ratio 0.9 for ``--reuse-steps`` steps of
   ``--reuse-batch`` clips, and report from ``metrics.jsonl`` the fraction of reused
   clips whose importance ratio is outside ``1 +- clip`` per reuse epoch
   (``sampler/clip_fraction_reuse{k}``), averaged over the second half of the run and at its
   peak (the largest 10-step mean), with the sampler's entropy and reward.

    nice .venv/bin/python benchmarks/learned_masking.py --ppo-reuse --reuse-steps 200 \
        --ppo-epochs 8 4 --out runs/ppo_reuse
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from throughput import current_rss, reset_high_water_mark, rss_high_water_mark

from motionmae.api import load_encoder
from motionmae.checkpoints.format import latest_checkpoint
from motionmae.config import PretrainConfig
from motionmae.data import make_synthetic_dataset
from motionmae.demo import DemoConfig, default_cache_dir, demo_pretrain_config
from motionmae.eval import list_features, run_probe
from motionmae.train.optim import build_optimizer
from motionmae.train.pretrain import PretrainTask, pretrain

VARIANTS: dict[str, list[str]] = {
    "tube 0.90": ["masking.kind=tube", "masking.ratio=0.9"],
    "learned (tats) 0.95": ["masking.kind=learned", "masking.ratio=0.95"],
    "learned (adamae) 0.95": ["masking.kind=learned", "masking.ratio=0.95",
                              "masking.learned.policy=adamae"],
    "tube 0.90, decoder 0.5": ["masking.kind=tube", "masking.ratio=0.9",
                               "masking.decoder_ratio=0.5"],
    "learned (tats) 0.95, decoder 0.5": ["masking.kind=learned", "masking.ratio=0.95",
                                         "masking.decoder_ratio=0.5"],
}
REFERENCE = "tube 0.90"
DEFAULT_VARIANTS = ["tube 0.90", "learned (tats) 0.95"]


def measured_demo(**changes: Any) -> DemoConfig:
    """The setting the documented figures were measured in (the demo of synthetic data v3:
    12-block tiny ViT, 16 frames of 112 px, 16x16 patches), kept fixed here so they stay
    reproducible when the demo's defaults move."""
    values: dict[str, Any] = {
        "data_dir": default_cache_dir().with_name("demo-112"), "num_train": 480,
        "num_val": 240, "video_frames": 32, "video_size": 112, "frames": 16, "stride": 2,
        "patch_size": 16, "depth": 12, "mask_ratio": 0.9, "targets": ("pixel", "tracks"),
        "batch_size": 16, "lr": 5e-4}
    values.update(changes)
    return DemoConfig(**values)


def step_config(variant: str, batch: int, frames: int = 16, size: int = 112) -> PretrainConfig:
    """The measured pretraining configuration (model, targets, optimizer) at a given clip
    size and batch, with the variant's masking."""
    demo = measured_demo(batch_size=batch, video_size=size, frames=frames,
                         overrides=list(VARIANTS[variant]))
    return demo_pretrain_config(demo, Path("unused-list.txt"))


class StepRunner:
    """A pretraining task, its optimizer and one fixed batch; ``step()`` is a training step."""

    def __init__(self, cfg: PretrainConfig) -> None:
        torch.manual_seed(0)
        self.task = PretrainTask(cfg)
        grid = self.task.grid
        b = cfg.run.batch_size
        g = torch.Generator().manual_seed(0)
        ys, xs = torch.meshgrid(torch.arange(grid.h) * grid.patch + grid.patch / 2 - 0.5,
                                torch.arange(grid.w) * grid.patch + grid.patch / 2 - 0.5,
                                indexing="ij")
        start = torch.stack([xs, ys], dim=-1).reshape(1, 1, -1, 2)
        walk = torch.randn(b, grid.frames, grid.spatial, 2, generator=g).cumsum(dim=1)
        self.batch = {
            "clip": torch.randn(b, 3, grid.frames, grid.height, grid.width, generator=g),
            "tracks": start + walk,
            "track_visible": torch.ones(b, grid.frames, grid.spatial, dtype=torch.bool),
        }
        peak = cfg.optim.peak_lr(b)
        self.optimizer = build_optimizer(self.task.parameter_groups(cfg.optim.weight_decay),
                                         cfg.optim, peak)
        self.steps = 0

    def step(self) -> None:
        generator = torch.Generator().manual_seed(self.steps)
        loss, _ = self.task.loss(self.task.model, self.batch, generator)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1


def throughput(variants: list[str], batch: int, rounds: int, steps: int) -> dict[str, float]:
    """Median clips/s per variant, runners alternating in this process."""
    runners = {name: StepRunner(step_config(name, batch)) for name in variants}
    for runner in runners.values():
        for _ in range(2):
            runner.step()
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name in variants if r % 2 == 0 else list(reversed(variants)):
            start = time.perf_counter()
            for _ in range(steps):
                runners[name].step()
            runs[name].append(steps * batch / (time.perf_counter() - start))
    logging.info("clips/s runs: %s", {n: [round(v, 2) for v in vs] for n, vs in runs.items()})
    return {name: statistics.median(values) for name, values in runs.items()}


def memory_worker(variant: str, batch: int) -> float:
    """Peak RSS growth (MB) of building the variant's task and running 2 steps (in a fresh
    process; a miniature run first loads lazy imports and kernels)."""
    StepRunner(step_config(variant, 1, frames=4, size=32)).step()
    gc.collect()
    baseline = current_rss()
    reset_high_water_mark()
    runner = StepRunner(step_config(variant, batch))
    for _ in range(2):
        runner.step()
    return (rss_high_water_mark() - baseline) / 2**20


def peak_memory(variant: str, batch: int) -> float:
    command = [sys.executable, __file__, "--memory-worker", variant, "--batch", str(batch),
               "--threads", str(torch.get_num_threads())]
    # A low mmap threshold returns freed tensors to the OS: the high-water mark follows
    # live memory rather than heap slack.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return float(done.stdout.strip().splitlines()[-1])


def probes(variants: list[str], steps: int, out: Path, demo: DemoConfig, reuse: bool
           ) -> dict[str, tuple[float, float, float]]:
    """``{variant: (linear top-1, kNN top-1, pretraining minutes)}`` after ``steps`` steps;
    with ``reuse``, a variant whose run folder already finished ``steps`` is not retrained."""
    data = make_synthetic_dataset(demo.data_dir, num_train=demo.num_train, num_val=demo.num_val,
                                  frames=demo.video_frames, size=demo.video_size, seed=demo.seed)
    eval_data = demo.eval_data()
    results = {}
    for name in variants:
        demo.out = out / name.replace(" ", "_").replace("(", "").replace(")", "")
        demo.overrides = VARIANTS[name]
        demo.steps = steps
        minutes_file = demo.out / "pretrain_minutes.txt"
        finished = latest_checkpoint(demo.out / "checkpoints")
        if reuse and finished is not None and finished.step == steps and minutes_file.exists():
            minutes = float(minutes_file.read_text())
        else:
            start = time.perf_counter()
            pretrain(demo_pretrain_config(demo, data.train_list))
            minutes = (time.perf_counter() - start) / 60
            minutes_file.write_text(f"{minutes}\n")
        encoder = load_encoder(demo.out)
        train = list_features(encoder, data.train_list, eval_data, batch_size=16)
        val = list_features(encoder, data.val_list, eval_data, batch_size=16)
        results[name] = (run_probe("linear", train, val).top1,
                         run_probe("knn", train, val).top1, minutes)
        print(f"{name:<22} linear {results[name][0]:6.1%}  knn {results[name][1]:6.1%}  "
              f"({minutes:.1f} min)", flush=True)
    return results


def ppo_reuse(epochs: list[int], steps: int, batch: int, out: Path) -> dict[int, dict[str, Any]]:
    """Clip fractions per reuse epoch for each ``ppo_epochs`` value (module docstring, 3)."""
    demo = DemoConfig(data_dir=default_cache_dir().with_name("demo-ppo-reuse"), num_train=480,
                      num_val=16, steps=steps, batch_size=batch, depth=2, targets=("pixel",))
    data = make_synthetic_dataset(demo.data_dir, num_train=demo.num_train, num_val=demo.num_val,
                                  frames=demo.video_frames, size=demo.video_size, seed=demo.seed)
    results = {}
    for value in epochs:
        demo.out = out / f"ppo_epochs_{value}"
        demo.overrides = ["masking.kind=learned", "masking.ratio=0.9",
                          f"masking.learned.ppo_epochs={value}", "masking.learned.use_tracks=true",
                          f"run.ckpt_every={steps}"]
        start = time.perf_counter()
        pretrain(demo_pretrain_config(demo, data.train_list))
        minutes = (time.perf_counter() - start) / 60
        records = [json.loads(line) for line in
                   (demo.out / "metrics.jsonl").read_text().splitlines()]
        late = [r for r in records if r["step"] > steps // 2]
        results[value] = {
            "clip_fraction": [statistics.mean(r[f"sampler/clip_fraction_reuse{k}"] for r in late)
                              for k in range(1, value)],
            "clip_fraction_peak": [max(r[f"sampler/clip_fraction_reuse{k}"] for r in records)
                                   for k in range(1, value)],
            "entropy": (records[0]["sampler/entropy"], records[-1]["sampler/entropy"]),
            "reward": (records[0]["sampler/reward"], records[-1]["sampler/reward"]),
            "minutes": minutes,
        }
        print(f"ppo_epochs {value}: {results[value]}", flush=True)
    return results


def print_ppo_reuse(results: dict[int, dict[str, Any]], steps: int, batch: int) -> None:
    reuses = max(len(r["clip_fraction"]) for r in results.values())
    print(f"\nTATS at ratio 0.9, clip 0.2, {steps} steps of batch {batch}; clip fraction = "
          "share of reused clips with |ratio - 1| > 0.2, mean over the second half "
          "(peak 10-step mean)\n")
    print("| ppo_epochs | " + " | ".join(f"reuse {k}" for k in range(1, reuses + 1))
          + " | entropy first -> last | reward first -> last | minutes |")
    print("|---" * (reuses + 4) + "|")
    for value, r in results.items():
        cells = ([f"{c:.3f} ({p:.3f})" for c, p in zip(r["clip_fraction"],
                                                       r["clip_fraction_peak"], strict=True)]
                 + [""] * (reuses - len(r["clip_fraction"])))
        print(f"| {value} | " + " | ".join(cells)
              + f" | {r['entropy'][0]:.3f} -> {r['entropy'][1]:.3f}"
              f" | {r['reward'][0]:.4f} -> {r['reward'][1]:.4f} | {r['minutes']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS,
                        choices=list(VARIANTS), help=f"reference: {REFERENCE!r}, always run")
    parser.add_argument("--batch", type=int, default=16, help="clips per step (demo: 16)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timed-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200, help="pretraining steps per variant")
    parser.add_argument("--out", type=Path, default=Path("runs/learned_masking"))
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-probe", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="probe finished runs under --out instead of pretraining again")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--ppo-reuse", action="store_true",
                        help="only measure PPO's clip fraction per reuse epoch (docstring, 3)")
    parser.add_argument("--ppo-epochs", type=int, nargs="*", default=[8, 4])
    parser.add_argument("--reuse-steps", type=int, default=200)
    parser.add_argument("--reuse-batch", type=int, default=8)
    parser.add_argument("--memory-worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.ppo_reuse:
        results = ppo_reuse(args.ppo_epochs, args.reuse_steps, args.reuse_batch, args.out)
        print_ppo_reuse(results, args.reuse_steps, args.reuse_batch)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ppo_reuse.json").write_text(json.dumps(results, indent=2))
        return
    if args.memory_worker:
        print(memory_worker(args.memory_worker, args.batch))
        return
    logging.getLogger().setLevel(logging.INFO)
    variants = [REFERENCE, *[v for v in args.variants if v != REFERENCE]]

    speed = throughput(variants, args.batch, args.rounds, args.timed_steps)
    memory = {name: float("nan") for name in variants}
    if not args.no_memory:
        memory = {name: peak_memory(name, args.batch) for name in variants}
    quality = {name: (float("nan"),) * 3 for name in variants}
    if not args.no_probe:
        logging.getLogger().setLevel(logging.WARNING)
        quality = probes(variants, args.steps, args.out, measured_demo(), args.reuse)

    chance = 1 / 9
    print(f"\ntiny ViT 16x112, pixel + tracks targets, batch {args.batch}, {args.threads} "
          f"threads; probes after {args.steps} pretraining steps on the demo's motion dataset "
          f"(chance {chance:.1%})\n")
    print("| masking | clips/s | vs tube | peak MB | vs tube | linear | kNN | pretrain min |")
    print("|---|---|---|---|---|---|---|---|")
    ref = REFERENCE
    for name in variants:
        linear, knn, minutes = quality[name]
        print(f"| {name} | {speed[name]:.2f} | {speed[name] / speed[ref]:.2f} | "
              f"{memory[name]:.0f} | {memory[name] / memory[ref]:.2f} | {linear:.1%} | "
              f"{knn:.1%} | {minutes:.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {name: {"clips_per_s": speed[name], "peak_mb": memory[name], "linear": quality[name][0],
                "knn": quality[name][1], "pretrain_minutes": quality[name][2]}
         for name in variants}, indent=2))


if __name__ == "__main__":
    main()

"""The embedded default: synthetic motion videos -> pretrain a tiny model -> probe it.

The synthetic classes differ only in how an object moves (translate in four directions,
rotate either way, grow, shrink, stay still), never in how one frame looks, so a probe can
only succeed if the frozen features encode motion. The same probe on a randomly initialised
encoder of the same shape is the baseline that pretraining has to beat.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from motionmae.config import PretrainConfig
from motionmae.config_loading import load_config
from motionmae.data import make_synthetic_dataset
from motionmae.data.config import DataConfig
from motionmae.eval import ProbeResult, eval_data_config, list_features, run_probe
from motionmae.models import VideoEncoder
from motionmae.train.pretrain import pretrain, token_grid

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "motionmae" / "demo"


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults finish in ~10 minutes on a 2-core CPU.

    The geometry is chosen so that minutes of CPU pretraining learn motion: 8 frames
    of 64 px with 8x8 patches (each token sees a few pixels of displacement, where 16x16
    patches at this budget learned nothing, see docs/benchmarks.md), a 4-block tiny ViT and
    a few thousand clips.
    """

    data_dir: Path = field(default_factory=default_cache_dir)
    out: Path = Path("runs/demo")
    num_train: int = 3000
    num_val: int = 480
    video_frames: int = 16
    video_size: int = 64
    frames: int = 8
    stride: int = 2
    patch_size: int = 8
    depth: int = 4
    mask_ratio: float = 0.8
    targets: tuple[str, ...] = ("pixel", "tracks")
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    overrides: list[str] = field(default_factory=list)

    def eval_data(self, workers: int = 2) -> DataConfig:
        """Evaluation clips of the pretraining geometry (centre crop, all tokens visible)."""
        return eval_data_config({"grid": {"frames": self.frames, "height": self.video_size},
                                 "config": {"data": {"stride": self.stride}}},
                                workers=workers)


@dataclass
class DemoResult:
    rows: list[tuple[str, ProbeResult]]
    classes: list[str]
    run_dir: Path


def demo_pretrain_config(cfg: DemoConfig, train_list: Path) -> PretrainConfig:
    """Tiny ViT (``cfg.depth`` blocks, ``cfg.patch_size`` patches) on ``cfg.frames`` frames,
    tube masking at ``cfg.mask_ratio``, ``cfg.targets`` (default pixels + point tracks)."""
    base = {
        "model": {"size": "tiny", "depth": cfg.depth, "patch_size": cfg.patch_size,
                  "decoder_depth": 2},
        "data": {
            "train": str(train_list),
            "frames": cfg.frames,
            "stride": cfg.stride,
            "size": cfg.video_size,
            "flip": False,  # left vs right motion is a class here
            "scales": [1.0, 0.875, 0.75],
            # One worker keeps up with these small clips and leaves the other core to the
            # model: two workers beside two torch threads oversubscribe 2 cores.
            "workers": 1,
        },
        "masking": {"kind": "tube", "ratio": cfg.mask_ratio},
        # "scale" keeps each patch's mean motion, which is exactly what tells these classes
        # apart ("patch" z-scoring would remove it).
        "targets": {"names": list(cfg.targets), "tracks": {"norm": "scale", "scale": 4.0}},
        "optim": {"lr": cfg.lr, "warmup_fraction": 0.1, "clip_grad": 1.0},
        "run": {
            "out": str(cfg.out),
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "log_every": 10,
            "ckpt_every": 200,
        },
    }
    return load_config(PretrainConfig, overrides=cfg.overrides, base=base)


def run_demo(
    cfg: DemoConfig,
    on_log: Callable[[dict[str, float]], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> DemoResult:
    """Generate (or reuse) the synthetic data, pretrain, then probe pretrained vs random."""
    stage = on_stage or (lambda message: log.info("%s", message))
    stage(f"synthetic motion dataset in {cfg.data_dir} "
          f"({cfg.num_train} train / {cfg.num_val} val videos)")
    dataset = make_synthetic_dataset(
        cfg.data_dir, num_train=cfg.num_train, num_val=cfg.num_val,
        frames=cfg.video_frames, size=cfg.video_size, seed=cfg.seed,
    )
    pretrain_cfg = demo_pretrain_config(cfg, dataset.train_list)
    stage(f"pretraining a tiny masked video autoencoder for {cfg.steps} steps -> {cfg.out}")
    pretrain(pretrain_cfg, on_log=on_log)

    from motionmae.api import load_encoder

    pretrained = load_encoder(cfg.out)
    torch.manual_seed(cfg.seed)
    random_init = VideoEncoder(pretrain_cfg.model.resolved(), token_grid(pretrain_cfg))
    data = cfg.eval_data()
    rows = []
    for name, encoder in (("random init", random_init), ("motionmae pretrained", pretrained)):
        stage(f"frozen features of {name} encoder")
        train = list_features(encoder, dataset.train_list, data, batch_size=16)
        val = list_features(encoder, dataset.val_list, data, batch_size=16)
        for kind in ("linear", "knn"):
            rows.append((f"{name} / {kind}", run_probe(kind, train, val)))
    return DemoResult(rows=rows, classes=dataset.classes, run_dir=cfg.out)

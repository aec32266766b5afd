"""Supervised fine-tuning: a :class:`VideoClassifier` on the encoder, trained by the shared
loop (same precision, accumulation, checkpoints, resume and ``torchrun`` support as
pretraining).

The recipe is VideoMAE's: mean pooling + LayerNorm + a linear head initialised small,
layer-wise lr decay, stochastic depth, RandAugment and random erasing on each training clip
(in the loader workers, on uint8 frames), mixup/cutmix with label smoothing on each batch
(here, in the task), soft-target cross entropy, warmup + cosine. :func:`finetune` trains;
:func:`evaluate_finetuned` then evaluates the final model on ``data.val`` with multi-view
testing (``RUN/eval/val.json`` + ``.csv``), as ``motionmae finetune`` does.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motionmae.checkpoints.format import latest_checkpoint, resolve_checkpoint
from motionmae.config import ConfigError, FinetuneConfig, FinetuneSettings, to_dict
from motionmae.data import VideoDataset, VideoList, read_video_list
from motionmae.data.dataset import ClipTransform
from motionmae.data.entries import warn_shared_videos
from motionmae.data.erasing import RandomErasing
from motionmae.data.mixing import MixSettings, mix_batch
from motionmae.data.randaugment import RandAugment
from motionmae.environment import resolve_device
from motionmae.eval.classifier import describe_classifier
from motionmae.eval.predictions import Evaluation, evaluate_videos, save_evaluation
from motionmae.interop import detect_format, load_any_encoder
from motionmae.interop.common import encoder_config
from motionmae.models import DropPath, VideoClassifier, VideoEncoder
from motionmae.models.tables import sinusoid_position_embedding
from motionmae.tokens import TokenGrid
from motionmae.train.distributed import DistInfo
from motionmae.train.loop import TrainResult, batch_stream, train
from motionmae.train.optim import parameter_groups

log = logging.getLogger(__name__)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k targets[k] * log_softmax(logits)[k]``.

    ``logits [B, K]`` (computed in float32 whatever their dtype), ``targets [B, K]`` rows
    summing to 1 (mixed, label-smoothed); equals ``F.cross_entropy`` for one-hot targets.
    """
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def set_drop_path(encoder: VideoEncoder, rate: float) -> None:
    """Stochastic depth rising linearly from 0 (first block) to ``rate`` (last block), as
    :class:`VideoEncoder` builds it, on an encoder that already exists (e.g. loaded)."""
    depth = len(encoder.blocks)
    for i, block in enumerate(encoder.blocks):
        p = rate * i / max(depth - 1, 1)
        block.drop_path = DropPath(p) if p > 0 else nn.Identity()


def clip_transforms(settings: FinetuneSettings) -> list[ClipTransform]:
    """The per-clip training augmentations the settings switch on (RandAugment, erasing)."""
    transforms: list[ClipTransform] = []
    if settings.randaugment.num_ops > 0:
        transforms.append(RandAugment(settings.randaugment))
    if settings.erasing.prob > 0:
        transforms.append(RandomErasing(settings.erasing))
    return transforms


def data_defaults(path: str | Path) -> dict[str, Any]:
    """The ``data`` settings checkpoint ``path`` implies for fine-tuning it: its clip geometry
    (frames, size) and, where recorded, stride and normalisation. Reads only ``config.json``
    of a motionmae checkpoint; other formats are loaded to be described."""
    if detect_format(path) == "motionmae":
        description = resolve_checkpoint(path).config()
    else:
        description = load_any_encoder(path)[1]
    saved = {**description.get("data", {}), **description.get("config", {}).get("data", {})}
    grid = description["grid"]
    return {"frames": grid["frames"], "size": grid["height"],
            **{k: saved[k] for k in ("stride", "mean", "std") if k in saved}}


def load_init_encoder(cfg: FinetuneConfig) -> tuple[VideoEncoder, dict[str, Any]]:
    """The encoder fine-tuning starts from, with the description of where it came from:
    ``finetune.checkpoint`` (any format ``load_encoder`` reads; official ``.pth`` files are
    built for ``data.frames``/``data.size``) or a fresh ``model`` (from scratch)."""
    if cfg.finetune.checkpoint is None:
        model_cfg = cfg.model.resolved()
        grid = TokenGrid(cfg.data.frames, cfg.data.size, cfg.data.size,
                         model_cfg.tubelet_size, model_cfg.patch_size)
        return VideoEncoder(model_cfg, grid), {"kind": "scratch"}
    path = cfg.finetune.checkpoint
    options = {"frames": cfg.data.frames, "size": cfg.data.size} \
        if detect_format(path) == "videomae" else {}
    encoder, description = load_any_encoder(path, **options)
    grid = encoder.grid
    if (grid.frames, grid.height, grid.width) != (cfg.data.frames, cfg.data.size, cfg.data.size):
        key = "data.frames" if grid.frames != cfg.data.frames else "data.size"
        raise ConfigError(f"{key}: clips of {cfg.data.frames} frames at {cfg.data.size} px do "
                          f"not match the checkpoint's ({grid.frames} frames of "
                          f"{grid.height}x{grid.width} px); fine-tune at its geometry")
    fixed = sinusoid_position_embedding(grid, encoder.embed_dim, encoder.positions).unsqueeze(0)
    if not torch.allclose(encoder.pos_embed.cpu(), fixed, atol=1e-5):
        # The table is a non-persistent buffer: a learned one would not be saved.
        raise ConfigError(f"finetune.checkpoint: {path} has a learned position table; "
                          "fine-tuning supports fixed sin-cos positions only")
    for key in ("mean", "std"):
        saved = description.get("data", {}).get(key)
        if saved is not None and not np.allclose(saved, getattr(cfg.data, key)):
            log.warning("data.%s %s differs from the checkpoint's %s", key,
                        list(getattr(cfg.data, key)), saved)
    return encoder, description


class FinetuneTask:
    """Mix the batch, classify, soft-target cross entropy; optimizer groups with layer-wise
    lr decay over the classifier's depth."""

    def __init__(self, model: VideoClassifier, cfg: FinetuneConfig,
                 description: dict[str, Any]) -> None:
        self.model = model
        self.cfg = cfg
        self.description = description
        settings = cfg.finetune
        self.mixing = MixSettings(num_classes=model.head.out_features, mixup=settings.mixup,
                                  cutmix=settings.cutmix, prob=settings.mix_prob,
                                  switch_prob=settings.switch_prob,
                                  smoothing=settings.smoothing)

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (), generator=generator)))
        mixed = mix_batch(batch["clip"], batch["label"], self.mixing, rng)
        logits = model(mixed.clip)
        loss = soft_target_cross_entropy(logits, mixed.targets)
        with torch.no_grad():
            # Against each clip's dominant class (its own label unless cutmix pasted more).
            hits = (logits.argmax(dim=-1) == mixed.targets.argmax(dim=-1)).float().mean()
        return loss, {"train_top1": hits}

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        return parameter_groups(self.model, weight_decay, layer_of=self.model.layer_of,
                                num_layers=self.model.num_layers,
                                layer_decay=self.cfg.finetune.layer_decay)

    def describe(self) -> dict[str, Any]:
        return self.description


def build_task(cfg: FinetuneConfig, num_classes: int,
               classes: list[str] | None) -> FinetuneTask:
    """The classifier (initial encoder, drop path, small head) and its task; seeds the head
    (and a from-scratch encoder) from ``run.seed``."""
    torch.manual_seed(cfg.run.seed)
    encoder, init = load_init_encoder(cfg)
    set_drop_path(encoder, cfg.finetune.drop_path)
    model = VideoClassifier(encoder, num_classes, head_init_scale=cfg.finetune.head_init_scale,
                            dropout=cfg.finetune.head_dropout)
    model_cfg = dataclasses.replace(encoder_config(encoder), drop_path=cfg.finetune.drop_path)
    description = describe_classifier(
        model, to_dict(model_cfg),
        {"mean": list(cfg.data.mean), "std": list(cfg.data.std), "stride": cfg.data.stride},
        classes,
        init={"checkpoint": cfg.finetune.checkpoint, "kind": init.get("kind")},
        config=to_dict(cfg),
    )
    return FinetuneTask(model.train(), cfg, description)


@dataclass
class FinetuneResult:
    """The training result, with what :func:`evaluate_finetuned` needs: the final model, the
    training list's class names and ``data.val`` (read and aligned to them before training;
    ``None`` when not set)."""

    train: TrainResult
    model: VideoClassifier
    classes: list[str] | None
    val_videos: VideoList | None
    val_from_train: int = 0  # videos of ``val_videos`` that are also training videos


def finetune(
    cfg: FinetuneConfig,
    *,
    resume: bool = False,
    dist: DistInfo | None = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune as configured (no evaluation: see :func:`evaluate_finetuned`). ``data.val``
    is read before training, so that a bad list fails early. ``cfg`` is resolved here
    (:meth:`FinetuneConfig.resolve`: the run's length, the peak lr) and saved so as
    ``RUN/config.yaml``."""
    if cfg.data.train is None:
        raise ConfigError("data.train: a list file of labelled training videos is required")
    dist = dist or DistInfo()
    train_videos = read_video_list(cfg.data.train).require_labels(cfg.data.train,
                                                                  "fine-tuning")
    cfg = cfg.resolve(len(train_videos), dist.world_size)  # before building anything
    classes = train_videos.classes
    found = train_videos.num_classes or 1
    num_classes = cfg.finetune.num_classes or found
    if num_classes < found:
        raise ConfigError(f"finetune.num_classes: {num_classes} is fewer than the "
                          f"{found} classes of {cfg.data.train}")
    val_videos, val_from_train = None, 0
    if cfg.data.val is not None:  # read now: a bad list should fail before training
        # In the training list's classes, matched by name; a class it lacks is refused.
        val_videos = read_video_list(cfg.data.val).require_labels(
            cfg.data.val, "fine-tuning").relabelled(classes, range(num_classes), cfg.data.val,
                                                    cfg.data.train)
        val_from_train = warn_shared_videos(
            [e.path for e in train_videos.entries], [e.path for e in val_videos.entries],
            cfg.data.train, cfg.data.val)
    task = build_task(cfg, num_classes, classes)
    dataset = VideoDataset(train_videos, cfg.data, train=True, seed=cfg.run.seed,
                           clip_transforms=clip_transforms(cfg.finetune))
    log.info("fine-tuning %s (%.1fM parameters) on %d videos, %d classes, from %s, for %d "
             "steps", task.description["model"]["size"],
             sum(p.numel() for p in task.model.parameters()) / 1e6, len(dataset), num_classes,
             cfg.finetune.checkpoint or "scratch", cfg.run.steps)
    with batch_stream(dataset, cfg, dist) as stream:  # its workers stop before evaluation
        result = train(task, stream, cfg, resume=resume, dist=dist, on_log=on_log)
    return FinetuneResult(result, task.model, classes, val_videos, val_from_train)


def evaluate_finetuned(cfg: FinetuneConfig, result: FinetuneResult,
                       dist: DistInfo | None = None) -> Evaluation | None:
    """Evaluate :func:`finetune`'s final model on ``data.val`` with ``data.test_clips x
    data.test_crops`` views; write ``RUN/eval/val.json`` + ``.csv``. On rank 0 only: ``None``
    on the other ranks, and when ``data.val`` is not set."""
    dist = dist or DistInfo()
    if result.val_videos is None or not dist.is_main:
        return None
    out_dir = Path(cfg.run.out)
    views = cfg.data.test_clips * cfg.data.test_crops
    evaluation = evaluate_videos(
        result.model, result.val_videos, cfg.data, result.classes,
        batch_size=max(1, cfg.run.batch_size // views),
        device=resolve_device(cfg.run.device), precision=cfg.run.precision)
    checkpoint = latest_checkpoint(out_dir / "checkpoints")
    save_evaluation(evaluation, out_dir / "eval" / "val.json",
                    {"checkpoint": str(checkpoint.path) if checkpoint else None,
                     "step": result.train.state.step, "data": cfg.data.val,
                     "val_from_train": result.val_from_train})
    if evaluation.metrics is not None:
        log.debug("val (%d clips x %d crops): top-1 %.1f%%, top-5 %.1f%%",
                 cfg.data.test_clips, cfg.data.test_crops,
                 100 * evaluation.metrics.top1, 100 * evaluation.metrics.top5)
    return evaluation

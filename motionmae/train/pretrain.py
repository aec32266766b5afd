"""Masked video pretraining: the task the training loop optimises, and the entry point."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionmae.config import PretrainConfig
from motionmae.config_loading import check, to_dict
from motionmae.data import VideoDataset, read_video_list
from motionmae.eval.probing import TrainingProbe
from motionmae.masking import MASKINGS, DecoderMask, TrainableSampler, build_mask_generator
from motionmae.models import MaskedVideoModel
from motionmae.motion.cache import CacheSettings, TrackCache
from motionmae.motion.cache_check import check_cache_coverage
from motionmae.motion.hooks import TracksHook
from motionmae.motion.step_tracks import StepTracks
from motionmae.targets import (
    TARGETS,
    TargetContext,
    build_targets,
    explained_fraction,
    masked_mse,
    per_token_error,
    trivial_mse,
)
from motionmae.targets.track_horizons import tubelet_windows
from motionmae.tokens import TokenGrid, mask_to_indices
from motionmae.train.distributed import DistInfo
from motionmae.train.loop import TrainResult, batch_stream, train
from motionmae.train.optim import parameter_groups

log = logging.getLogger(__name__)


def token_grid(cfg: PretrainConfig) -> TokenGrid:
    """The token grid of the clips this config trains on (:meth:`PretrainConfig.token_grid`)."""
    return cfg.token_grid()


def run_track_cache(cfg: PretrainConfig) -> TrackCache | None:
    """The track cache the run's loader reads: ``cache.path`` under the run's settings, when
    the loader workers make the run's tracks; else ``None``."""
    if cfg.cache.path is None or not cfg.needs_tracks or cfg.tracks_in_step:
        return None
    return TrackCache(Path(cfg.cache.path),
                      CacheSettings.for_run(cfg.tracking, cfg.data, cfg.cache))


def build_sample_hooks(cfg: PretrainConfig, grid: TokenGrid) -> list:
    """The loader-worker hooks the run needs: point tracks of the query grid when a
    target or the masking kind reads them (unless the step makes them:
    ``tracking.where=step``), then each target's own hooks (M3Video trajectories, cached
    teacher features, ...), in ``targets.names`` order."""
    hooks: list = []
    if cfg.needs_tracks and not cfg.tracks_in_step:
        hooks.append(TracksHook(patch=grid.patch, tracker=cfg.tracking.tracker,
                                cache=run_track_cache(cfg),
                                tracker_settings=cfg.tracking.tracker_settings(),
                                decode_size=cfg.data.size, grid=cfg.tracking.grid,
                                frame_step=cfg.tracking.frame_step,
                                windows=(tubelet_windows(grid.frames, grid.tubelet)
                                         if cfg.targets.tracks_per_tubelet else None),
                                sub_points=cfg.targets.tracked_points_per_side))
    ctx = TargetContext(grid, cfg.data, tuple(cfg.targets.names), cfg.cache.path)
    for name in cfg.targets.names:
        spec = TARGETS.get(name)
        if spec.hooks is not None:
            hooks.extend(spec.hooks(getattr(cfg.targets, name), ctx))
    return hooks


class PretrainTask:
    """Hide tokens, encode the visible ones, reconstruct every target on the hidden ones.

    ``loss = sum_k weight_k * masked_mse_k`` over the configured targets, on the hidden
    tokens the decoders reconstruct (all of them, or the running-cell subset with
    ``masking.decoder_ratio``); a target of ``targets.visible`` adds ``visible_weight *
    weight_k`` times its masked MSE on the visible tokens (logged as ``loss_visible/k``).
    With a trainable masking kind (``learned``) the mask comes from its
    :class:`~motionmae.masking.TrainableSampler` (``model.sampler``, its own parameter group at
    its section's ``lr``) and its loss, driven by the detached per-token errors ``sum_k
    weight_k * token_weight_k * error_k``, is added at its section's ``loss_weight``.

    Logged parts per target ``k``: ``loss/k``, ``trivial/k`` (the loss of predicting the
    batch mean per channel) and ``explained/k = 1 - loss/trivial``
    (:func:`~motionmae.tokens.trivial_mse`).

    ``world_size``: data-parallel processes (the sampler's learning rate is set relative to
    the run's peak rate, which depends on the global batch).
    """

    def __init__(self, cfg: PretrainConfig, world_size: int = 1) -> None:
        self.cfg = cfg
        self.grid = token_grid(cfg)
        self.targets = build_targets(cfg.targets, self.grid, cfg.data, cfg.cache.path)
        self.masking = build_mask_generator(cfg.masking, self.grid)
        # A trainable kind's sampler (the learned one) lives in the model as ``sampler``.
        self.sampler: TrainableSampler | None = (
            self.masking.sampler if MASKINGS.get(cfg.masking.kind).trainable else None)
        if self.sampler is not None:
            global_batch = cfg.run.global_batch(cfg.optim.accum_steps, world_size)
            self.sampler_lr_scale = self.sampler.cfg.lr / cfg.optim.peak_lr(global_batch)
        self.decoder_mask = (DecoderMask(self.grid, cfg.masking.decoder_ratio)
                             if cfg.masking.decoder_ratio > 0 else None)
        self.model = MaskedVideoModel(
            cfg.model, self.grid, {name: t.dim for name, t in self.targets.items()},
            sampler=self.sampler,
        )
        # tracking.where=step: the micro-batch's tracks, made before the mask that reads them
        self.step_tracks = (StepTracks.for_run(cfg.tracking, self.grid.patch, cfg.data.mean,
                                               cfg.data.std) if cfg.tracks_in_step else None)

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.step_tracks is not None:
            batch = {**batch, **self.step_tracks(batch["clip"])}
        draw = self.sampler(batch, generator) if self.sampler is not None else None
        mask = draw.mask if draw is not None else self.masking(batch, generator)
        visible_idx, masked_idx = mask_to_indices(mask, self.masking.num_visible)
        if self.decoder_mask is not None:
            # From here on "masked" = the hidden tokens that are decoded and scored.
            masked_idx = self.decoder_mask(masked_idx, generator)
        visible_targets = self.cfg.targets.visible
        predictions = model(batch["clip"], visible_idx, masked_idx, visible_targets)
        total = torch.zeros((), device=batch["clip"].device)
        token_error = torch.zeros(masked_idx.shape, device=batch["clip"].device)
        parts = {}
        for name, target in self.targets.items():
            with torch.no_grad(), torch.autocast(batch["clip"].device.type, enabled=False):
                values, token_weight = target(batch)
            pred = predictions[name].float()
            if name in visible_targets:
                seen, pred = pred.split([visible_idx.shape[1], masked_idx.shape[1]], dim=1)
                seen_loss = masked_mse(seen, values.float(), visible_idx, token_weight)
                parts[f"loss_visible/{name}"] = seen_loss.detach()
                total = total + target.weight * self.cfg.targets.visible_weight * seen_loss
            loss = masked_mse(pred, values.float(), masked_idx, token_weight)
            parts[f"loss/{name}"] = loss.detach()
            with torch.no_grad():
                trivial = trivial_mse(values, masked_idx, token_weight)
                parts[f"trivial/{name}"] = trivial
                parts[f"explained/{name}"] = explained_fraction(loss.detach(), trivial)
            total = total + target.weight * loss
            if draw is not None:
                with torch.no_grad():
                    error = per_token_error(pred, values.float(), masked_idx)
                    if token_weight is not None:
                        error = error * torch.gather(token_weight.float(), 1, masked_idx)
                    token_error = token_error + target.weight * error
        if draw is not None:
            sampler_loss, sampler_parts = self.sampler.loss(draw, token_error, masked_idx)
            total = total + self.sampler.cfg.loss_weight * sampler_loss
            parts.update(sampler_parts)
        return total, parts

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        if self.sampler is None:
            return parameter_groups(self.model, weight_decay)
        autoencoder = nn.ModuleDict({name: child for name, child in self.model.named_children()
                                     if name != "sampler"})
        groups = parameter_groups(autoencoder, weight_decay)
        for group in parameter_groups(self.sampler, weight_decay):
            group["lr_scale"] = self.sampler_lr_scale
            groups.append(group)
        return groups

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "pretrain",
            "model": to_dict(self.model.cfg),
            "grid": {
                "frames": self.grid.frames,
                "height": self.grid.height,
                "width": self.grid.width,
                "tubelet": self.grid.tubelet,
                "patch": self.grid.patch,
            },
            "data": {"mean": list(self.cfg.data.mean), "std": list(self.cfg.data.std),
                     "stride": self.cfg.data.stride},
            "config": to_dict(self.cfg),
        }


def pretrain(
    cfg: PretrainConfig,
    *,
    resume: bool = False,
    dist: DistInfo | None = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Run masked video pretraining as configured; returns the final state and history.

    ``cfg`` is resolved here (:meth:`PretrainConfig.resolve`: the masking ratio, the run's
    length, the peak lr) and saved so as ``RUN/config.yaml``.
    """
    dist = dist or DistInfo()
    check(cfg.data.train is not None, "data.train", "a list file of training videos is required")
    videos = read_video_list(cfg.data.train)
    given = cfg
    cfg = cfg.resolve(len(videos), dist.world_size)  # before building anything
    track_cache = run_track_cache(cfg)
    if track_cache is not None:  # refuses a cache made for other settings: it never hits
        check_cache_coverage(track_cache, [entry.path for entry in videos.entries])
    torch.manual_seed(cfg.run.seed)  # model initialisation
    task = PretrainTask(cfg, world_size=dist.world_size)
    clip_sampler = None
    if (cfg.needs_tracks or cfg.targets.cacheable) and cfg.cache.path is not None:
        # Training clips start where tracks (teacher features) are cached (crop and flip stay
        # fully random).
        clip_sampler = cfg.cache.layout(cfg.data).sample
    dataset = VideoDataset(videos, cfg.data, train=True, seed=cfg.run.seed,
                           sample_hooks=build_sample_hooks(cfg, task.grid),
                           clip_sampler=clip_sampler)
    log.info(
        "pretraining %s (%.1fM parameters) on %d videos for %d steps, targets %s, masking %s "
        "%.2f, %s",
        cfg.model.size,
        sum(p.numel() for p in task.model.parameters()) / 1e6,
        len(dataset),
        cfg.run.steps,
        ",".join(task.targets),
        cfg.masking.kind,
        cfg.masking.ratio,
        given.optim.lr_rule(cfg.run.global_batch(cfg.optim.accum_steps, dist.world_size)),
    )
    with batch_stream(dataset, cfg, dist) as stream:  # its workers stop with the run
        return train(task, stream, cfg, resume=resume, dist=dist, on_log=on_log,
                     probe=_training_probe(cfg, task))


def _training_probe(cfg: PretrainConfig, task: PretrainTask) -> Callable | None:
    """``probe(device)`` of the task's encoder on ``run.probe_train``/``run.probe_val``, or
    None without ``run.probe_every``."""
    if cfg.run.probe_every is None:
        return None
    probe = TrainingProbe.for_pretraining(
        task.describe(), cfg.run.probe_train, cfg.run.probe_val, workers=cfg.data.workers,
        batch_size=cfg.run.batch_size, precision=cfg.run.precision)
    return functools.partial(probe, task.model.encoder)

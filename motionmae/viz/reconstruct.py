"""What a pretrained model reconstructs on one clip: mask, pixels, point tracks, motion.

:func:`visualize` rebuilds the :class:`~motionmae.train.pretrain.PretrainTask` of a checkpoint
from its saved config, takes the centre evaluation clip of a video, computes the sample hooks
the config needs (point tracks, ...), draws a mask with the configured generator (seeded), runs
the model and writes labelled pictures:

- ``mask.png``: the input frames and the masked input.
- ``reconstruction.png`` (pixel target): input, masked input, the prediction and, with
  ``norm_pix``, a separately labelled row that borrows the ground truth's patch statistics.
  A ``norm_pix`` model predicts each hidden patch's *shape* (per-channel z-scores), not its
  brightness or contrast: the "prediction (normalised)" row shows those z-scores themselves
  mapped to ``[0, 255]`` (:func:`normalised_prediction_frames`; it never sees hidden pixels).
- ``tracks.png`` / ``tracks.mp4`` (tracks target): true vs predicted trajectories of the
  hidden positions' patch-centre points, predicted ones integrated from the true start points.
- ``motion_bins.png`` (motion-aware masking): per-position mean displacement over the clip.
- ``sampler.png`` (learned masking): each token's probability of staying visible under the
  trained sampler (Monte Carlo over 256 draws), beside the drawn mask.
- ``panel.mp4``: the rows above, frame by frame.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

ZSCORE_RANGE = 3.0
"""Normalised predictions are shown with ``-ZSCORE_RANGE .. +ZSCORE_RANGE`` mapped to 0..255."""


# --------------------------------------------------------------------------------------------
# Pure helpers (tested on their own)


def zscores_to_pixels(pred: torch.Tensor, channels: int) -> torch.Tensor:
    """Per-patch-normalised predictions ``[M, P*C]`` -> ``[M, P*C]`` values in ``[0, 1]``.

    Each (token, channel) group is re-standardised with the prediction's *own* mean and
    standard deviation (a model's output is only approximately zero-mean, unit-variance),
    then ``z = -ZSCORE_RANGE .. +ZSCORE_RANGE`` maps linearly to ``0 .. 1``. No ground-truth
    statistics are involved, so this shows only what the model predicts: the patch's shape.
    """
    grouped = pred.float().unflatten(-1, (-1, channels))  # [M, P, C]
    std, mean = torch.std_mean(grouped, dim=-2, keepdim=True)
    z = (grouped - mean) / (std + 1e-6)
    return ((z / ZSCORE_RANGE + 1.0) / 2.0).clamp(0.0, 1.0).flatten(-2)


def _token_frames(tokens: torch.Tensor, grid: Any) -> np.ndarray:
    """Pixel tokens ``[L, P*C]`` in ``[0, 1]`` -> ``[T, H, W, 3]`` uint8."""
    from motionmae.tokens import unpatchify

    clip = unpatchify(tokens[None].float(), grid)[0]  # [C, T, H, W]
    return (clip.permute(1, 2, 3, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _fill_hidden(frames: np.ndarray, hidden_values: torch.Tensor, masked_idx: torch.Tensor,
                 grid: Any) -> np.ndarray:
    """``frames`` (visible tokens kept) with the hidden tokens' pixels replaced by
    ``hidden_values [M, P*C]`` in ``[0, 1]``; returns ``[T, H, W, 3]`` uint8."""
    from motionmae.tokens import patchify

    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float()
    tokens = patchify(clip / 255.0, grid)[0]  # [L, P*C]
    tokens[masked_idx] = hidden_values.float()
    return _token_frames(tokens, grid)


def normalised_prediction_frames(
    frames: np.ndarray, pred: torch.Tensor, masked_idx: torch.Tensor, grid: Any
) -> np.ndarray:
    """The "prediction (normalised)" panel: visible tokens from ``frames``, hidden tokens
    showing the ``norm_pix`` prediction's own z-scores (:func:`zscores_to_pixels`).

    The hidden tokens' pixels of ``frames`` are overwritten, never read: the panel does not
    depend on the ground truth of what was hidden.

    Args:
        frames: ``[T, H, W, 3]`` uint8 input clip.
        pred: ``[M, P*C]`` predictions of the hidden tokens, in ``masked_idx`` order.
        masked_idx: ``[M]`` int64 hidden token indices.
        grid: the token grid.
    """
    return _fill_hidden(frames, zscores_to_pixels(pred, grid.channels), masked_idx, grid)


def tubelet_displacements(
    pred: torch.Tensor, target: Any, gt_values: torch.Tensor | None = None
) -> torch.Tensor:
    """Predicted tracks-target values ``[M, dim]`` -> one displacement ``[M, 2]`` pixels per
    token (the mean over its ``U^2`` sub-points).

    ``norm`` none/scale: the prediction alone. ``patch_mean``: the prediction's own mean
    channels (its last two values) times ``scale``. ``patch``: the prediction only holds the
    shape of the token's motion field; it is mapped to pixels with the *ground truth's*
    per-token mean and standard deviation. ``batch``: the prediction times the ground
    truth's RMS (the divisor the target used, up to the other clips of its batch).
    ``gt_values`` (the un-normalised ``[M, U^2, 2]`` pixel displacements of the same tokens)
    must be given for ``patch`` and ``batch``.
    """
    pred = pred.float()
    if target.norm == "patch_mean":
        return pred[:, -2:] * target.scale
    values = pred[:, : target.points * 2].reshape(pred.shape[0], target.points, 2)
    if target.norm in ("patch", "batch") and gt_values is None:
        raise ValueError(f"norm={target.norm} predictions need the ground truth's statistics")
    if target.norm == "scale":
        values = values * target.scale
    elif target.norm == "batch":
        values = values * target.batch_rms(gt_values.float()[None])
    elif target.norm == "patch":
        var, mean = torch.var_mean(gt_values.float(), dim=1, correction=1, keepdim=True)
        values = values * (var + 1e-6).sqrt() + mean
    return values.mean(dim=1)


def integrate_tracks(
    start: torch.Tensor, displacements: torch.Tensor, frames: int, tubelet: int
) -> torch.Tensor:
    """Trajectories from start points and one displacement per tubelet window.

    Args:
        start: ``[N, 2]`` positions at clip frame 0.
        displacements: ``[t, N, 2]`` displacement over each tubelet's window
            (:func:`motionmae.targets.track_horizons.tubelet_windows`).

    Returns:
        ``[frames, N, 2]``: each window's displacement is spread linearly over the frames it
        adds beyond those already placed (later windows may overlap earlier ones).
    """
    from motionmae.targets.track_horizons import tubelet_windows

    starts, ends = tubelet_windows(frames, tubelet)
    out = torch.full((frames, *start.shape), float("nan"))
    out[0] = start
    filled = 0
    for t, (s, e) in enumerate(zip(starts, ends, strict=True)):
        for f in range(filled + 1, e + 1):
            out[f] = out[s] + displacements[t] * (f - s) / max(e - s, 1)
        filled = max(filled, e)
    return out


# --------------------------------------------------------------------------------------------
# The clip


def load_clip(cfg: Any, video: Path, hooks: list) -> dict[str, torch.Tensor]:
    """The centre evaluation clip of ``video`` (centre crop, the config's frames/size/stride)
    as a batch of one, with the hooks' entries."""
    from motionmae.data import (
        HookInput,
        VideoEntry,
        apply_geometry,
        eval_clips_indices,
        eval_geometries,
        normalize,
        probe_video,
        read_frames,
    )

    data = cfg.data
    info = probe_video(video)
    indices = eval_clips_indices(info.num_frames, data.frames, data.stride, 1)[0]
    short = len(set(indices.tolist())) < len(indices)
    log.info("%s: the centre clip, source frames %d to %d every %d (of %d), centre crop at %d "
             "px%s", video, indices[0], indices[-1], data.stride, info.num_frames, data.size,
             "; shorter than a clip: its last frame repeated" if short else "")
    dense_needed = any(getattr(h, "needs_dense_frames", False) for h in hooks)
    wanted = np.arange(indices[0], indices[-1] + 1) if dense_needed else indices
    decoded = read_frames(video, wanted, data.size)
    geometry = eval_geometries(decoded.shape[1], decoded.shape[2], data.size, 1)[0]
    frames = apply_geometry(decoded[np.searchsorted(wanted, indices)], geometry).numpy()
    dense = apply_geometry(decoded, geometry).numpy() if dense_needed else None
    sample: dict[str, torch.Tensor] = {}
    hook_input = HookInput(frames=frames, entry=VideoEntry(Path(video)),
                           frame_indices=indices.copy(), geometry=geometry, dense_frames=dense)
    for hook in hooks:
        sample.update(hook(hook_input))
    sample["clip"] = normalize(frames, data.mean, data.std)
    batch = {k: torch.as_tensor(v)[None] for k, v in sample.items()}
    batch["frames"] = torch.from_numpy(np.ascontiguousarray(frames))
    return batch


# --------------------------------------------------------------------------------------------
# Entry point


def _require_pretraining(path: Path, saved: dict[str, Any]) -> None:
    """Raise :class:`~motionmae.checkpoints.format.CheckpointError` (a data error) unless
    ``saved`` (a checkpoint's ``config.json``) describes a pretraining checkpoint: the
    pictures need its decoders and its saved config."""
    from motionmae.checkpoints.format import CheckpointError

    kind = saved.get("kind")
    need = "visualize needs a pretraining run folder or checkpoint (with its decoders)"
    if kind == "finetune":
        raise CheckpointError(f"{path}: a fine-tuning checkpoint (a classifier); {need}")
    if "config" not in saved or kind not in (None, "pretrain"):
        raise CheckpointError(f"{path}: an exported encoder (no decoders, no pretraining "
                              f"config); {need}")


def visualize(checkpoint: str | Path, video: str | Path, out_dir: str | Path,
              seed: int = 0) -> list[Path]:
    """Write the pictures described in the module docstring to ``out_dir``; returns their
    paths."""

    from motionmae.checkpoints.format import resolve_checkpoint
    from motionmae.config import PretrainConfig
    from motionmae.config_loading import from_dict
    from motionmae.masking.motion import motion_per_position
    from motionmae.models.config import saved_model_dict
    from motionmae.targets.pixel import denormalize_prediction, patch_statistics
    from motionmae.tokens import mask_to_indices
    from motionmae.train.pretrain import PretrainTask, build_sample_hooks
    from motionmae.viz.draw import draw_track_pairs
    from motionmae.viz.io import write_png, write_video
    from motionmae.viz.overlays import overlay_mask, overlay_token_values
    from motionmae.viz.panels import make_grid, make_grid_video

    ckpt = resolve_checkpoint(checkpoint)
    saved = ckpt.config()
    _require_pretraining(ckpt.path, saved)
    config = dict(saved["config"])
    config["model"] = saved_model_dict(config.get("model", {}))
    cfg = from_dict(PretrainConfig, config)
    # One clip: track it online rather than requiring the training run's track cache, with
    # the clip's hook here (a run that tracked in the step saved tracking.where=step).
    cfg.cache.path = None
    cfg.tracking.where = "workers"
    task = PretrainTask(cfg)
    task.model.load_state_dict(ckpt.weights())
    task.model.eval()
    grid = task.grid
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    batch = load_clip(cfg, Path(video), build_sample_hooks(cfg, grid))
    frames = batch.pop("frames").numpy()  # [T, S, S, 3] uint8
    generator = torch.Generator().manual_seed(seed)
    mask = task.masking(batch, generator)
    visible_idx, masked_idx = mask_to_indices(mask, task.masking.num_visible)
    with torch.no_grad():
        predictions = task.model(batch["clip"], visible_idx, masked_idx)
    hidden = masked_idx[0]
    mask_np = mask[0].numpy()
    masked_frames = overlay_mask(frames, mask_np, grid)
    frame_list = list(frames)
    written: list[Path] = []
    video_rows: list[list[np.ndarray]] = [[frames], [masked_frames]]
    video_labels = ["input", f"masked input ({cfg.masking.kind}, {cfg.masking.ratio:.0%})"]

    written.append(write_png(out / "mask.png", make_grid(
        [frame_list, list(masked_frames)], video_labels)))

    if "pixel" in task.targets:
        target = task.targets["pixel"]
        pred = predictions["pixel"][0]
        rows = [frame_list, list(masked_frames)]
        labels = list(video_labels)
        if target.norm_pix:
            shape = normalised_prediction_frames(frames, pred, hidden, grid)
            rows.append(list(shape))
            labels.append("prediction (normalised): own z-scores of hidden patches")
            video_rows.append([shape])
            video_labels.append(labels[-1])
            # Separately labelled: borrows the hidden patches' ground-truth mean and std.
            gt_tokens = target.pixels(batch["clip"])[0]
            mean, std = patch_statistics(gt_tokens[hidden][None], grid.channels)
            pixels = denormalize_prediction(pred[None], mean, std, grid.channels)[0]
            with_gt = _fill_hidden(frames, pixels.clamp(0, 1), hidden, grid)
            rows.append(list(with_gt))
            labels.append("prediction with GT patch statistics (uses ground truth)")
        else:
            recon = _fill_hidden(frames, pred.float().clamp(0, 1), hidden, grid)
            rows.append(list(recon))
            labels.append("prediction (pixels)")
            video_rows.append([recon])
            video_labels.append(labels[-1])
        written.append(write_png(out / "reconstruction.png", make_grid(rows, labels)))

    if "tracks" in task.targets and task.targets["tracks"].requery:
        # Its tokens' points start again at every tubelet: no frame-0 track to draw them on.
        log.warning("targets.tracks.queries=every_tubelet: the tracks panel draws tracks "
                    "seeded in frame 0 and is left out")
    elif "tracks" in task.targets:
        target = task.targets["tracks"]
        tracks = batch["tracks"][0].float()  # [T, N, 2]
        visible = batch.get("track_visible")
        visible = visible[0].numpy() if visible is not None else None
        gt_px = None
        if target.norm == "patch":
            # Only for the labelled GT-statistics view: the hidden tokens' true pixel values.
            gt_px = target.pixels(tracks[None])[0][hidden]
        elif target.norm == "batch":
            # The divisor the target used on this one-clip batch: every token's displacements.
            gt_px = target.pixels(tracks[None])[0]
        pred_disp = tubelet_displacements(predictions["tracks"][0], target, gt_px)
        true_raw = _raw_displacements(target, tracks)  # [L, 2]
        disp = true_raw.clone()
        disp[hidden] = pred_disp
        positions = mask_np.reshape(grid.t, grid.spatial).any(axis=0)  # hidden anywhere
        keep = np.flatnonzero(positions)
        disp = disp.view(grid.t, grid.spatial, 2)[:, keep]
        pred_tracks = integrate_tracks(tracks[0, keep], disp, grid.frames, grid.tubelet)
        true_tracks = tracks[:, keep]
        drawn = draw_track_pairs(frames, true_tracks.numpy(), pred_tracks.numpy(),
                                 None if visible is None else visible[:, keep])
        # Short labels: they must fit over T frames of a small clip (the legend strip under
        # each frame tells truth from prediction).
        label = "hidden-patch tracks: truth vs prediction"
        if target.norm == "patch":
            label = "hidden tracks: predicted shape only + GT mean/std (uses GT)"
        elif target.norm == "batch":
            label = "hidden-patch tracks: truth vs prediction x GT scale (uses GT)"
        written.append(write_png(out / "tracks.png", make_grid([list(drawn)], [label])))
        written.append(write_video(out / "tracks.mp4", drawn, fps=4.0))
        video_rows.append([drawn])
        video_labels.append(label)

    if cfg.masking.kind == "motion":
        motion = motion_per_position(batch["tracks"], batch.get("track_visible"))[0]  # [N]
        values = motion.repeat(grid.t).numpy()
        heat = overlay_token_values(frames, values, grid)
        written.append(write_png(out / "motion_bins.png", make_grid(
            [list(heat), list(masked_frames)],
            [f"mean displacement per position (px/frame, {values.min():.2f}.."
             f"{values.max():.2f})", "motion-aware mask"])))
        video_rows.append([heat])
        video_labels.append("mean displacement per position")

    # A trainable sampler may say how likely each token is to stay visible (the built-in
    # learned sampler does; a plugin's need not).
    visible_probability = getattr(task.sampler, "visible_probability", None)
    if visible_probability is not None:
        visible = visible_probability(batch, 256, torch.Generator().manual_seed(seed))[0].numpy()
        heat = overlay_token_values(frames, visible, grid, vmin=0.0)
        name = getattr(task.sampler.cfg, "policy", cfg.masking.kind)
        label = f"P(visible) per token, learned {name} sampler (0..{visible.max():.2f})"
        written.append(write_png(out / "sampler.png", make_grid(
            [list(heat), list(masked_frames)], [label, "drawn mask"])))
        video_rows.append([heat])
        video_labels.append("P(visible), learned sampler")

    written.append(write_video(out / "panel.mp4", make_grid_video(video_rows, video_labels),
                               fps=4.0))
    for path in written:
        log.debug("wrote %s", path)
    return written


def _raw_displacements(target: Any, tracks: torch.Tensor) -> torch.Tensor:
    """True per-token displacement ``[L, 2]`` pixels of the patch-centre points."""
    from motionmae.targets.tracks import token_displacements

    delta = token_displacements(tracks[None], target.grid)[0]  # [t, h, w, 2]
    return delta.reshape(-1, 2)

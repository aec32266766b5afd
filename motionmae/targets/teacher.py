"""The frozen-teacher target: patch features of an image model (CLIP, SigLIP, DINOv2).

Definition, per token ``(t, h, w)`` of a clip ``[B, C, T, H, W]`` (normalised with the data
config's ``mean``/``std``), as in the feature-distillation video MAEs (MVD, UMT, MILAN):

1. **Frame.** The teacher sees one frame per tubelet: clip frame ``t * tubelet + frame``
   (``targets.teacher.frame``, default the first), the same view (crop, flip) as the student.
2. **Pixels.** The frame is un-normalised to ``[0, 1]`` with the data ``mean``/``std``,
   resized to the teacher's input side (``targets.teacher.size``, default the teacher's own;
   its processor's resampling, antialiased when shrinking, clamped to ``[0, 1]``), then
   normalised with the teacher's **own** ``image_mean``/``image_std`` (a CLIP never sees
   ImageNet-normalised pixels). The whole frame is resized, never centre-cropped as the
   processors do, so that teacher patches and student tokens cover the same image.
3. **Features.** The teacher's patch tokens after its final layer norm, CLS and register tokens
   dropped (:class:`~motionmae.targets.teacher_models.FrozenTeacher`): ``[g_h, g_w, D]`` per
   frame, under bf16 autocast where ``precision`` says so.
4. **Grid.** The teacher grid is resampled to the student's ``h x w`` token grid by separable
   weights over each token's footprint (:func:`footprint_weights`): ``bilinear`` samples the
   teacher grid at the token's centre (``F.interpolate(mode="bilinear",
   align_corners=False)``), ``area`` averages the teacher cells under the token, weighted by
   overlap (exact area resampling; equals ``adaptive_avg_pool2d`` for integer ratios). The
   cached path (:mod:`motionmae.targets.teacher_cache`) uses the same weights through the
   sample's crop.
5. **Normalisation** (``norm``): ``layer`` (each token over its ``D`` values, no affine,
   eps 1e-6), ``zscore`` (TrackMAE's CLIP target: each channel over the clip's ``L`` tokens,
   each clip on its own, ``(x - mean) / (std + 1e-6)`` with the unbiased ``std``) or
   ``none``.

Values ``[B, L, D]`` float32, no token weights. When the batch carries cached features
(``teacher_features`` ``[B, L, D]`` and the host-side list ``teacher_cached``, from
:class:`~motionmae.targets.teacher_cache.TeacherFeaturesHook`), only the clips that were not
cached run through the teacher; the teacher's weights are loaded on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from motionmae.config_loading import ConfigError, check
from motionmae.targets.pixel import NORM_EPS
from motionmae.targets.teacher_models import (
    FrozenTeacher,
    TeacherSpec,
    load_teacher,
    read_teacher_spec,
)
from motionmae.tokens import TokenGrid

TEACHER_NORMS = ("layer", "zscore", "none")
TEACHER_RESIZES = ("bilinear", "area")
TEACHER_PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TeacherTargetConfig:
    """Patch features of a frozen image model (CLIP, SigLIP, DINOv2; see
    :mod:`motionmae.targets.teacher`) on one frame per tubelet.

    ``path``: a local folder written by ``save_pretrained`` (the model kind comes from its
    ``config.json``). ``frame``: which frame of each tubelet the teacher sees (0 = first).
    ``size``: the teacher's input side, pixels (null: its own, from the folder). ``grid_resize``:
    how its patch grid becomes the student's token grid. ``norm``: ``layer`` (per token),
    ``zscore`` (TrackMAE's: per channel over each clip's tokens, unbiased, ``std + 1e-6``) or
    ``none``. ``precision``: ``auto`` runs
    the teacher under bf16 autocast on CUDA devices that support it and in fp32 elsewhere.
    """

    path: str | None = None
    weight: float = 1.0
    norm: str = "layer"
    frame: int = 0
    size: int | None = None
    grid_resize: str = "bilinear"
    precision: str = "auto"

    def validate(self, key: str) -> None:
        check(self.path is not None, f"{key}.path",
               "the teacher target needs a local Hugging Face model folder (written by "
               "save_pretrained) of a CLIP, SigLIP or DINOv2 vision model")
        check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")
        check(self.norm in TEACHER_NORMS, f"{key}.norm",
               f"must be one of {list(TEACHER_NORMS)}, got {self.norm!r}")
        check(self.frame >= 0, f"{key}.frame", f"must be >= 0, got {self.frame}")
        check(self.size is None or self.size >= 1, f"{key}.size", "must be >= 1 or null")
        check(self.grid_resize in TEACHER_RESIZES, f"{key}.grid_resize",
               f"must be one of {list(TEACHER_RESIZES)}, got {self.grid_resize!r}")
        check(self.precision in TEACHER_PRECISIONS, f"{key}.precision",
               f"must be one of {list(TEACHER_PRECISIONS)}, got {self.precision!r}")

    def check_frame(self, tubelet: int, key: str = "targets.teacher") -> None:
        """``frame`` must be a frame of a ``tubelet``-frame tubelet (the one home of this rule:
        training's run check and the teacher cache's settings both ask it)."""
        check(self.frame < tubelet, f"{key}.frame",
              f"must be < model.tubelet_size {tubelet}, got {self.frame}")


def check_teacher_run(cfg: TeacherTargetConfig, run: Any) -> None:
    """The teacher target's rule across sections (its spec's run check)."""
    cfg.check_frame(run.model.resolved().tubelet_size)


__all__ = [
    "TeacherStats",
    "TeacherTarget",
    "channel_affine",
    "check_teacher_run",
    "footprint_weights",
    "normalize_features",
    "resample_grid",
    "run_teacher",
    "teacher_input_side",
    "teacher_pixels",
    "tubelet_frames",
    "use_bf16",
]

logger = logging.getLogger(__name__)


def tubelet_frames(clip: torch.Tensor, tubelet: int, frame: int) -> torch.Tensor:
    """Frame ``frame`` of every tubelet: ``[B, C, T, H, W]`` -> ``[B * T / tubelet, C, H, W]``
    (clip-major: row ``b * t + i`` is clip ``b``'s frame ``i * tubelet + frame``)."""
    frames = clip[:, :, frame::tubelet]
    return frames.transpose(1, 2).flatten(0, 1)


def channel_affine(images: torch.Tensor, scale: Sequence[float],
                   shift: Sequence[float]) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``images[:, c] * scale[c] + shift[c]`` per channel. The constants
    travel as kernel arguments: no host-to-device copy, which would wait for the device."""
    return torch.stack([images[:, c] * a + b for c, (a, b) in enumerate(zip(scale, shift,
                                                                            strict=True))], 1)


def teacher_pixels(pixels: torch.Tensor, spec: TeacherSpec,
                   size: tuple[int, int]) -> torch.Tensor:
    """What the teacher's image processor would make of ``[0, 1]`` images, without its crop.

    Args:
        pixels: ``[N, 3, H, W]`` float in ``[0, 1]``.
        spec: the teacher (resampling, ``scale``, ``mean``, ``std``).
        size: ``(height, width)`` of the teacher input, pixels.

    Returns:
        ``[N, 3, height, width]``: resized (``spec.resample``, antialiased when shrinking,
        clamped to ``[0, 1]`` like the processor's uint8 images), then ``(x * scale - mean) /
        std`` per channel.
    """
    if tuple(pixels.shape[-2:]) != tuple(size):
        shrink = pixels.shape[-2] > size[0] or pixels.shape[-1] > size[1]
        smooth = spec.resample != "nearest"
        pixels = F.interpolate(pixels, size=size, mode=spec.resample,
                               align_corners=False if smooth else None,
                               antialias=smooth and shrink).clamp_(0.0, 1.0)
    return channel_affine(pixels, [spec.scale / s for s in spec.std],
                          [-m / s for m, s in zip(spec.mean, spec.std, strict=True)])


def teacher_input_side(cfg: TeacherTargetConfig, spec: TeacherSpec) -> int:
    """The teacher's input side, pixels: ``cfg.size`` or the folder's; a multiple of its
    patch size (else :class:`ConfigError` naming ``targets.teacher.size``)."""
    size = cfg.size or spec.input_size
    if size % spec.patch_size:
        raise ConfigError(f"targets.teacher.size: {size} px is not a multiple of the teacher's "
                          f"patch size {spec.patch_size}")
    return size


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether the teacher runs under bf16 autocast: ``bf16`` always, ``auto`` on CUDA
    devices with bf16 support (CPU bf16 matmuls are slower than fp32 on CPUs without bf16
    units), ``fp32`` never."""
    if precision == "bf16":
        return True
    return (precision == "auto" and device.type == "cuda" and torch.cuda.is_available()
            and torch.cuda.is_bf16_supported())


def run_teacher(teacher: FrozenTeacher, pixels: torch.Tensor, size: tuple[int, int],
                bf16: bool) -> torch.Tensor:
    """``[0, 1]`` images ``[N, 3, H, W]`` -> patch features ``[N, g_h, g_w, D]`` float32
    (:func:`teacher_pixels`, then the teacher under bf16 autocast if ``bf16``); no grad."""
    with torch.no_grad():
        inputs = teacher_pixels(pixels.float(), teacher.spec, size)
        with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=bf16):
            features = teacher(inputs)
    return features.float()


def footprint_weights(lo: np.ndarray, hi: np.ndarray, cells: int, mode: str) -> np.ndarray:
    """Weights that resample a 1-D grid of ``cells`` cells onto ``n`` footprints.

    Cell ``j`` covers ``[j, j + 1]`` (area coordinates, in cells); footprint ``i`` covers
    ``[lo[i], hi[i]]``. ``bilinear``: linear interpolation between cell centres at the
    footprint's centre, clamped to the outermost centres (``F.interpolate(mode="bilinear",
    align_corners=False)``). ``area``: each cell weighs its overlap with the footprint (the
    part inside the grid; a footprint wholly outside takes its nearest cell).

    Args:
        lo, hi: ``[n]`` footprint bounds, cells (``lo < hi``).
        cells: grid length (>= 1).
        mode: ``bilinear`` or ``area``.

    Returns:
        ``[n, cells]`` float64, rows summing to 1.
    """
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    out = np.zeros((len(lo), cells), np.float64)
    rows = np.arange(len(lo))
    if mode == "bilinear":
        centre = np.clip((lo + hi) / 2 - 0.5, 0.0, cells - 1)
        left = np.minimum(np.floor(centre).astype(np.int64), max(cells - 2, 0))
        frac = centre - left
        out[rows, left] = 1.0 - frac
        out[rows, np.minimum(left + 1, cells - 1)] += frac
        return out
    if mode != "area":
        raise ValueError(f"mode must be 'bilinear' or 'area', got {mode!r}")
    edges = np.arange(cells + 1, dtype=np.float64)
    overlap = (np.minimum(hi[:, None], edges[None, 1:])
               - np.maximum(lo[:, None], edges[None, :-1])).clip(min=0.0)
    total = overlap.sum(axis=1, keepdims=True)
    nearest = np.clip(np.floor((lo + hi) / 2), 0, cells - 1).astype(np.int64)
    out[rows, nearest] = 1.0
    return np.where(total > 1e-12, overlap / np.maximum(total, 1e-12), out)


def resample_grid(features: torch.Tensor, rows: torch.Tensor,
                  cols: torch.Tensor) -> torch.Tensor:
    """``[..., g_h, g_w, D]`` -> ``[..., h, w, D]`` with row weights ``[h, g_h]`` and column
    weights ``[w, g_w]`` (:func:`footprint_weights`)."""
    return torch.einsum("ih,jw,...hwd->...ijd", rows, cols, features)


def normalize_features(values: torch.Tensor, mode: str) -> torch.Tensor:
    """``[B, L, D]`` -> ``[B, L, D]``: ``layer`` (per token over ``D``), ``zscore`` (per
    channel over the ``L`` tokens of each clip) or ``none`` (see the module doc)."""
    if mode == "layer":
        return F.layer_norm(values, values.shape[-1:], eps=NORM_EPS)
    if mode == "zscore":
        # TrackMAE's exact form (unbiased, eps after the square root), unlike norm_pix's.
        var, mean = torch.var_mean(values, dim=1, correction=1, keepdim=True)
        return (values - mean) / (var.sqrt() + NORM_EPS)
    if mode == "none":
        return values
    raise ValueError(f"norm must be 'layer', 'zscore' or 'none', got {mode!r}")


@dataclass
class TeacherStats:
    """Where a :class:`TeacherTarget`'s features came from, in clips (this process)."""

    cached: int = 0
    online: int = 0


class TeacherTarget:
    """Frozen-teacher patch features on the student's token grid (module doc), ``dim = D``.

    Args:
        cfg: the ``targets.teacher`` section.
        grid: the student's token grid.
        mean, std: the clip's input normalisation (``data.mean``/``data.std``).
        spec: the teacher folder's description (default: read from ``cfg.path``).

    The teacher's weights load on first use, onto the clip's device, so a fully cached run
    never holds them.
    """

    name = "teacher"

    def __init__(self, cfg: TeacherTargetConfig, grid: TokenGrid, mean: Sequence[float],
                 std: Sequence[float], spec: TeacherSpec | None = None) -> None:
        if spec is None:
            if cfg.path is None:
                raise ConfigError("targets.teacher.path: required by the teacher target")
            spec = read_teacher_spec(cfg.path)
        self.spec = spec
        self.size = teacher_input_side(cfg, spec)
        if not 0 <= cfg.frame < grid.tubelet:
            raise ConfigError(f"targets.teacher.frame: must be in [0, {grid.tubelet}), "
                              f"got {cfg.frame}")
        self.grid = grid
        self.frame = cfg.frame
        self.mode = cfg.grid_resize
        self.norm = cfg.norm
        self.precision = cfg.precision
        self.weight = cfg.weight
        self.dim = spec.hidden_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.stats = TeacherStats()
        self._teacher: FrozenTeacher | None = None
        self._weights: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}
        self._warned_misses = False

    @property
    def cells(self) -> int:
        """Teacher patches per side of a frame."""
        return self.size // self.spec.patch_size

    def teacher(self, device: torch.device) -> FrozenTeacher:
        """The frozen teacher on ``device`` (loaded on the first call)."""
        if self._teacher is None:
            self._teacher = load_teacher(self.spec)
        if next(self._teacher.parameters()).device != device:
            self._teacher.to(device)
        return self._teacher

    def _grid_weights(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row ``[h, g]`` and column ``[w, g]`` weights of the online path (the teacher sees
        the whole clip frame), made once per device and dtype."""
        key = (like.device, like.dtype)
        if key not in self._weights:
            g, cells = self.grid, self.cells
            mats = []
            for n in (g.h, g.w):
                k = np.arange(n)
                mats.append(footprint_weights(k * cells / n, (k + 1) * cells / n, cells,
                                              self.mode))
            self._weights[key] = tuple(torch.from_numpy(m).to(like) for m in mats)
        rows, cols = self._weights[key]
        return rows, cols

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """``clip [B, C, T, H, W]`` (normalised) -> raw teacher features on the token grid
        ``[B, L, D]`` float32 (steps 1-4 of the module doc)."""
        g = self.grid
        frames = tubelet_frames(clip.float(), g.tubelet, self.frame)  # [B*t, C, H, W]
        teacher = self.teacher(clip.device)
        features = run_teacher(teacher, channel_affine(frames, self.std, self.mean),
                               (self.size, self.size), use_bf16(self.precision, clip.device))
        rows, cols = self._grid_weights(features)
        tokens = resample_grid(features, rows, cols)  # [B*t, h, w, D]
        return tokens.reshape(clip.shape[0], g.num_tokens, self.dim)

    def _cached(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cached features with the clips that missed the cache computed online."""
        clip = batch["clip"]
        values = batch["teacher_features"].float()
        missing = [i for i, hit in enumerate(batch["teacher_cached"]) if not hit]
        self.stats.cached += values.shape[0] - len(missing)
        self.stats.online += len(missing)
        if missing:
            if not self._warned_misses:
                logger.warning("teacher feature cache: %d of %d clips of a batch are not "
                               "cached; computing them online (fill the cache with "
                               "`motionmae extract-teacher`)", len(missing), values.shape[0])
                self._warned_misses = True
            index = torch.tensor(missing).to(clip.device, non_blocking=True)
            values = values.index_copy(0, index, self.features(clip.index_select(0, index)))
        return values

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        """``batch["clip"] [B, C, T, H, W]`` (and cached features, if any) ->
        ``(values [B, L, D] float32, None)``."""
        if "teacher_features" in batch:
            values = self._cached(batch)
        else:
            self.stats.online += batch["clip"].shape[0]
            values = self.features(batch["clip"])
        return normalize_features(values, self.norm), None

    def __repr__(self) -> str:
        return (f"TeacherTarget({self.spec.model_type} at {self.spec.path}, dim={self.dim}, "
                f"input={self.size}px, grid={self.mode}, norm={self.norm!r})")




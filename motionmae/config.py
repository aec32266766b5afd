"""Typed run configuration: dataclasses, loaded from YAML plus ``key=value`` overrides.

Every value passes through :func:`from_dict`, which checks names and types against the
dataclass fields, and through each section's ``validate``; errors name the dotted key
(``masking.ratio: must be in (0, 1), got 1.5``) so a typo in a 3-day run's config fails in
the first second, not after the first epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (embed_dim, depth, num_heads, decoder_dim, decoder_heads)
MODEL_SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (192, 12, 3, 128, 4),
    "small": (384, 12, 6, 192, 3),
    "base": (768, 12, 12, 384, 6),
    "large": (1024, 24, 16, 512, 8),
}


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range; names the key."""


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass
class ModelConfig:
    """ViT encoder over tubelets plus light decoders. ``None`` sizes come from ``size``."""

    size: str = "tiny"
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    decoder_dim: int | None = None
    decoder_depth: int = 4
    decoder_heads: int | None = None
    drop_path: float = 0.0
    # The tubelet projection reads each tubelet as the mean of its frames and their
    # successive differences times this gain; 0 reads the frames as they are (VideoMAE's).
    # A change of basis of the same linear map (exports fold it into VideoMAE's kernel), but
    # it decides what learns first: with plain frames a tiny ViT on 2x16x16 tubelets of real
    # footage learned no motion in 500-1,500 steps (a frame difference is ~15% of a frame's
    # norm and the gradient follows appearance); with gain 4 it did (docs/benchmarks.md).
    difference_gain: float = 4.0
    # Targets predicted by one joint decoder (M3Video's default): one set of blocks and one
    # linear head whose output is split into the targets' values; each target keeps its own
    # loss and weight. Targets not listed get a decoder each. Empty: one decoder per target.
    joint_targets: list[str] = field(default_factory=list)

    def validate(self, key: str = "model") -> None:
        _check(self.size in MODEL_SIZES, f"{key}.size", f"must be one of {sorted(MODEL_SIZES)}, "
               f"got {self.size!r}")
        for name in ("embed_dim", "depth", "num_heads", "decoder_dim", "decoder_heads"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"{key}.{name}", f"must be positive, got {value}")
        _check(self.patch_size > 0, f"{key}.patch_size", "must be positive")
        _check(self.tubelet_size > 0, f"{key}.tubelet_size", "must be positive")
        _check(self.decoder_depth >= 1, f"{key}.decoder_depth", "must be >= 1")
        _check(0.0 <= self.drop_path < 1.0, f"{key}.drop_path", "must be in [0, 1)")
        _check(self.difference_gain >= 0.0, f"{key}.difference_gain",
               f"must be >= 0 (0: plain frames), got {self.difference_gain}")
        _check(not self.joint_targets or len(self.joint_targets) >= 2, f"{key}.joint_targets",
               f"a joint decoder needs at least two targets, got {self.joint_targets}")
        _check(len(set(self.joint_targets)) == len(self.joint_targets), f"{key}.joint_targets",
               f"has duplicates: {self.joint_targets}")
        resolved = self.resolved()
        _check(resolved.embed_dim % resolved.num_heads == 0, f"{key}.num_heads",
               f"embed_dim {resolved.embed_dim} is not divisible by {resolved.num_heads} heads")
        _check(resolved.decoder_dim % resolved.decoder_heads == 0, f"{key}.decoder_heads",
               f"decoder_dim {resolved.decoder_dim} is not divisible by "
               f"{resolved.decoder_heads} heads")

    def resolved(self) -> ModelConfig:
        """A copy with every size filled in from the named size (what checkpoints store)."""
        embed_dim, depth, heads, dec_dim, dec_heads = MODEL_SIZES[self.size]
        return dataclasses.replace(
            self,
            embed_dim=self.embed_dim or embed_dim,
            depth=self.depth or depth,
            num_heads=self.num_heads or heads,
            decoder_dim=self.decoder_dim or dec_dim,
            decoder_heads=self.decoder_heads or dec_heads,
        )


SAVED_MODEL_DEFAULTS: dict[str, Any] = {"difference_gain": 0.0}
"""What a ``model`` section saved before a key existed meant: the value that reproduces the
model it was trained as (not today's default)."""


def saved_model_dict(model: dict[str, Any]) -> dict[str, Any]:
    """A stored ``model`` section (checkpoint description, run config) with the keys it
    predates filled in as :data:`SAVED_MODEL_DEFAULTS` says."""
    return {**SAVED_MODEL_DEFAULTS, **model}


@dataclass
class DataConfig:
    """Where clips come from and how they are sampled and augmented.

    ``train``/``val``: a list file (``path [label]`` per line) or a dataset spec
    ``FORMAT:PATH[,key=value...]`` naming a dataset in its released annotation format
    (``ssv2:labels/train.json``; see :mod:`motionmae.data.formats`).

    Bad videos in training (``on_error``): ``skip`` replaces a video that cannot be read by
    another, lists it with its reason in ``RUN/bad_videos.tsv`` and stops the run once more
    than ``bad_videos_tolerated`` distinct videos were bad *and* they are more than
    ``max_bad_fraction`` of the distinct videos seen; ``raise`` stops at the first one.
    Evaluation never replaces a video (its features would be another's): a bad one stops it.

    ``short_videos``: a video shorter than a clip's span ``(frames - 1) * stride + 1`` is
    ``pad`` ded by repeating its last frame (the stride is kept), or ``stretch`` ed: sampled
    with the largest stride that fits (VideoMAE's choice; frames repeat only when the video
    has fewer than ``frames``). Either way the run warns once with a count.
    """

    train: str | None = None
    val: str | None = None
    frames: int = 16
    stride: int = 4
    size: int = 224
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    flip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_sample: int = 1
    workers: int = 2
    on_error: str = "skip"
    max_bad_fraction: float = 0.01
    bad_videos_tolerated: int = 3
    short_videos: str = "pad"
    test_clips: int = 1
    test_crops: int = 1

    def validate(self, key: str = "data") -> None:
        _check(self.frames >= 1, f"{key}.frames", f"must be >= 1, got {self.frames}")
        _check(self.stride >= 1, f"{key}.stride", f"must be >= 1, got {self.stride}")
        _check(self.size >= 8, f"{key}.size", f"must be >= 8, got {self.size}")
        _check(len(self.scales) >= 1 and all(0.0 < s <= 1.0 for s in self.scales),
               f"{key}.scales", f"must be a non-empty list of values in (0, 1], got {self.scales}")
        _check(all(s > 0 for s in self.std), f"{key}.std", "must be positive")
        _check(self.num_sample >= 1, f"{key}.num_sample", "must be >= 1")
        _check(self.workers >= 0, f"{key}.workers", "must be >= 0")
        _check(self.on_error in ("raise", "skip"), f"{key}.on_error",
               f"must be 'raise' or 'skip', got {self.on_error!r}")
        _check(0.0 <= self.max_bad_fraction <= 1.0, f"{key}.max_bad_fraction",
               f"must be in [0, 1], got {self.max_bad_fraction}")
        _check(self.bad_videos_tolerated >= 0, f"{key}.bad_videos_tolerated",
               f"must be >= 0, got {self.bad_videos_tolerated}")
        _check(self.short_videos in SHORT_VIDEOS, f"{key}.short_videos",
               f"must be one of {list(SHORT_VIDEOS)}, got {self.short_videos!r}")
        _check(self.test_clips >= 1, f"{key}.test_clips", "must be >= 1")
        _check(self.test_crops >= 1, f"{key}.test_crops", "must be >= 1")


SHORT_VIDEOS = ("pad", "stretch")
MASKING_KINDS = ("random", "tube", "cube", "motion", "learned")
SAMPLER_POLICIES = ("tats", "adamae")


@dataclass
class LearnedMaskingConfig:
    """The learned token sampler of ``masking.kind = learned`` (``motionmae.masking.learned``).

    ``policy``: ``tats`` (actor + critic trained with PPO: clipped surrogate ``clip``, value
    loss ``value_coef``, entropy bonus ``entropy_coef``, each rollout optimised in
    ``ppo_epochs`` consecutive steps; 4 keeps the reused rollouts near on-policy, see
    docs/benchmarks.md) or ``adamae`` (REINFORCE, no critic). ``tube``: one
    decision per spatial position, repeated over time. ``lr``: the sampler's peak learning
    rate (its own parameter group; it follows the run's warmup + cosine schedule).
    ``use_tracks``: make the loader compute point tracks so that the sampler sees, per token,
    the motion of the tracked points at its patch when its tubelet starts (it uses tracks
    whenever a batch has them). PPO's reuse is logged as ``sampler/clip_fraction`` (and per
    reuse epoch, ``sampler/clip_fraction_reuse{k}``). ``loss_weight``: the
    sampler's loss enters the joint loss at this weight; AdamW makes the sampler's own
    updates independent of it, while a small weight keeps the sampler's gradients (its early
    value loss especially) from dominating the joint norm that ``optim.clip_grad`` clips.
    """

    policy: str = "tats"
    tube: bool = False
    dim: int = 64
    heads: int = 2
    lr: float = 1e-3
    ppo_epochs: int = 4
    clip: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    use_tracks: bool = False
    loss_weight: float = 0.01

    def validate(self, key: str = "masking.learned") -> None:
        _check(self.policy in SAMPLER_POLICIES, f"{key}.policy",
               f"must be one of {list(SAMPLER_POLICIES)}, got {self.policy!r}")
        _check(self.dim >= 1, f"{key}.dim", f"must be >= 1, got {self.dim}")
        _check(self.heads >= 1 and self.dim % self.heads == 0, f"{key}.heads",
               f"must be >= 1 and divide dim {self.dim}, got {self.heads}")
        _check(self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        _check(self.ppo_epochs >= 1, f"{key}.ppo_epochs", f"must be >= 1, got {self.ppo_epochs}")
        _check(0.0 < self.clip < 1.0, f"{key}.clip", f"must be in (0, 1), got {self.clip}")
        _check(self.value_coef >= 0, f"{key}.value_coef", "must be >= 0")
        _check(self.entropy_coef >= 0, f"{key}.entropy_coef", "must be >= 0")
        _check(self.loss_weight > 0, f"{key}.loss_weight", "must be > 0")


@dataclass
class MaskingConfig:
    """Which tokens are hidden. ``ratio`` is the hidden fraction.

    ``motion`` (TrackMAE's motion-aware masking) splits spatial positions into a high- and a
    low-motion half by mean track displacement and takes a share ``rho`` of the visible
    positions from the high half (tubed over time). ``cube``: MaskFeat-style space-time
    blocks. ``learned``: a token sampler trained with the autoencoder (section ``learned``).

    ``decoder_ratio`` (VideoMAE v2's decoder masking): the fraction of the hidden tokens the
    decoders do *not* reconstruct (running-cell pattern); 0 decodes them all.
    """

    kind: str = "tube"
    ratio: float = 0.9
    rho: float = 0.5
    decoder_ratio: float = 0.0
    learned: LearnedMaskingConfig = field(default_factory=LearnedMaskingConfig)

    def validate(self, key: str = "masking") -> None:
        _check(self.kind in MASKING_KINDS, f"{key}.kind",
               f"must be one of {list(MASKING_KINDS)}, got {self.kind!r}")
        _check(0.0 < self.ratio < 1.0, f"{key}.ratio", f"must be in (0, 1), got {self.ratio}")
        _check(0.0 <= self.rho <= 1.0, f"{key}.rho", f"must be in [0, 1], got {self.rho}")
        _check(0.0 <= self.decoder_ratio < 1.0, f"{key}.decoder_ratio",
               f"must be in [0, 1), got {self.decoder_ratio}")
        self.learned.validate(f"{key}.learned")


@dataclass
class TrackingConfig:
    """Where point tracks come from (motion targets, motion-aware masking).

    Tracks are computed in the data-loader workers on the very frames the model sees, or read
    from a track cache (``motionmae extract-tracks``) when ``cache`` is set; cache misses fall
    back to online tracking.

    ``tracker: cotracker`` (:mod:`motionmae.motion.cotracker`) needs ``cotracker_checkpoint``,
    the local ``scaled_offline.pth`` (``scaled_online.pth`` with ``cotracker_variant:
    online``), and the CoTracker code base: installed, or a clone named by ``cotracker_code``.
    These settings, paths included, are part of the track cache's key: ``extract-tracks`` and
    training must name the same ones.
    """

    tracker: str = "lk"
    cache: str | None = None
    cache_clips: int = 4
    cotracker_checkpoint: str | None = None
    cotracker_variant: str = "offline"
    cotracker_code: str | None = None

    def tracker_settings(self) -> dict[str, Any]:
        """The settings of ``tracker`` for :func:`motionmae.motion.make_tracker` (also part
        of the track cache's key)."""
        if self.tracker != "cotracker":
            return {}
        return {"checkpoint": self.cotracker_checkpoint, "variant": self.cotracker_variant,
                "code": self.cotracker_code}

    def validate(self, key: str = "tracking") -> None:
        _check(self.tracker in ("lk", "flow", "cotracker"), f"{key}.tracker",
               f"must be lk, flow or cotracker, got {self.tracker!r}")
        _check(self.cache_clips >= 1, f"{key}.cache_clips", "must be >= 1")
        _check(self.cotracker_variant in ("offline", "online"), f"{key}.cotracker_variant",
               f"must be offline or online, got {self.cotracker_variant!r}")
        _check(self.tracker != "cotracker" or self.cotracker_checkpoint is not None,
               f"{key}.cotracker_checkpoint",
               f"{key}.tracker is cotracker: give the path of the local CoTracker3 checkpoint "
               f"(scaled_offline.pth; scaled_online.pth with {key}.cotracker_variant=online; "
               f"from https://huggingface.co/facebook/cotracker3)")


@dataclass
class PixelTargetConfig:
    """Pixels of each tubelet, optionally normalised per patch (VideoMAE's ``norm_pix``)."""

    weight: float = 1.0
    norm_pix: bool = True

    def validate(self, key: str) -> None:
        _check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")


TRACK_NORMS = ("none", "scale", "patch", "patch_mean", "batch")
# The default of targets.tracks.norm; TrackMAE's own is "patch" (its recipes say so).
DEFAULT_TRACK_NORM = "batch"
TRACK_WINDOWS = ("tubelet", "official")
TRACK_UPSAMPLE_MODES = ("centres", "align_corners")


@dataclass
class TracksTargetConfig:
    """TrackMAE: per-tubelet displacements of grid points (one per patch centre, tracked
    through the clip), spatially upsampled ``upsample`` x (``upsample**2`` points per patch);
    :mod:`motionmae.targets.tracks` defines each setting.

    ``norm``: ``none`` (pixels), ``scale`` (divide by ``scale`` px), ``patch`` (z-score within
    each token, as TrackMAE; removes the token's own motion: a rigid translation gives 0),
    ``patch_mean`` (``patch`` plus the token's mean displacement / ``scale`` as 2 more
    channels), ``batch`` (divide by the batch's RMS displacement, at least ``rms_floor`` px).
    ``windows``: ``tubelet`` (each tubelet measured; the last one over the clip's last
    ``tubelet_size`` frames) or ``official`` (TrackMAE: frames ``0, u, 2u, ...``, the last
    tubelet repeats the previous one). ``upsample_mode``: ``centres`` (sub-patch centres) or
    ``align_corners`` (TrackMAE's ``align_corners=True``). Invisible points get loss weight
    0 unless ``use_visibility`` is false (TrackMAE's original behaviour). ``weight`` null
    (default): TrackMAE's lambda, 0.25 next to a teacher target, else 1
    (:meth:`TargetsConfig.loss_weight`).
    """

    weight: float | None = None
    upsample: int = 2
    norm: str = DEFAULT_TRACK_NORM
    scale: float = 8.0
    rms_floor: float = 1.0
    windows: str = "tubelet"
    upsample_mode: str = "centres"
    use_visibility: bool = True

    def validate(self, key: str) -> None:
        _check(self.weight is None or self.weight >= 0, f"{key}.weight",
               f"must be >= 0 or null, got {self.weight}")
        _check(self.upsample >= 1, f"{key}.upsample", "must be >= 1")
        _check(self.norm in TRACK_NORMS, f"{key}.norm",
               f"must be one of {list(TRACK_NORMS)}, got {self.norm!r}")
        _check(self.norm not in ("patch", "patch_mean") or self.upsample >= 2, f"{key}.norm",
               f"{self.norm} z-scores the upsample^2 points of a token and needs "
               f"{key}.upsample >= 2 (got {self.upsample})")
        _check(self.scale > 0, f"{key}.scale", "must be > 0")
        _check(self.rms_floor > 0, f"{key}.rms_floor", "must be > 0")
        _check(self.windows in TRACK_WINDOWS, f"{key}.windows",
               f"must be one of {list(TRACK_WINDOWS)}, got {self.windows!r}")
        _check(self.upsample_mode in TRACK_UPSAMPLE_MODES, f"{key}.upsample_mode",
               f"must be one of {list(TRACK_UPSAMPLE_MODES)}, got {self.upsample_mode!r}")


@dataclass
class HogTargetConfig:
    """MaskFeat-style HOG of each tubelet frame: Sobel gradients, ``bins`` orientation bins,
    histograms over ``cell`` x ``cell`` pixel cells, L2-normalised per cell."""

    weight: float = 1.0
    bins: int = 9
    cell: int = 8

    def validate(self, key: str) -> None:
        _check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")
        _check(self.bins >= 2, f"{key}.bins", "must be >= 2")
        _check(self.cell >= 2, f"{key}.cell", "must be >= 2")


M3TRAJ_NORMS = ("patch_std", "path_length", "none")
HOG_CHANNELS = ("rgb", "grey")


@dataclass
class M3TrajTargetConfig:
    """M3Video: K = ``points_per_side**2`` points per patch, followed ``length`` steps (L;
    ``length + 1`` positions) at the full frame rate from the first frame of each tubelet
    through dense flow; target = the L position changes (clipped at ``clip`` px) and, with
    ``hog``, the L trajectory-aligned HOGs (``hog_bins`` bins per ``hog_channels`` channel).

    ``length`` counts steps since issue 13: a config written before with ``length: 6`` (then
    6 positions, 5 steps) now means 6 steps (7 positions, the paper's L = 6), and its target is
    wider (264 instead of 220 values with K = 4 and grey HOG).

    ``norm``: ``patch_std`` (M3Video's ``traj_norm PatchStd``: each position and HOG feature
    z-scored over the patch's K trajectories), ``path_length`` (the position changes divided by
    the patch's mean path length, each HOG L2-normalised; motionmae's scheme before issue 13)
    or ``none`` (pixels, raw HOG). ``hog_channels``: ``rgb`` (a histogram per colour channel,
    the paper's appendix) or ``grey``.

    With ``hog`` and ``path_length`` the HOG values held ~96% of the target's variance, and on
    the demo data they drowned the motion (49.8% linear probe vs 80.8% with ``hog=False``:
    docs/benchmarks.md)."""

    weight: float = 1.0
    points_per_side: int = 2
    length: int = 6
    clip: float = 20.0
    hog: bool = True
    hog_bins: int = 9
    hog_channels: str = "grey"
    norm: str = "patch_std"
    camera_compensation: bool = False

    def validate(self, key: str) -> None:
        _check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")
        _check(self.points_per_side >= 1, f"{key}.points_per_side", "must be >= 1")
        _check(self.length >= 1, f"{key}.length", f"must be >= 1 step, got {self.length}")
        _check(self.clip > 0, f"{key}.clip", "must be > 0")
        _check(self.hog_bins >= 2, f"{key}.hog_bins", f"must be >= 2, got {self.hog_bins}")
        _check(self.hog_channels in HOG_CHANNELS, f"{key}.hog_channels",
               f"must be one of {list(HOG_CHANNELS)}, got {self.hog_channels!r}")
        _check(self.norm in M3TRAJ_NORMS, f"{key}.norm",
               f"must be one of {list(M3TRAJ_NORMS)}, got {self.norm!r}")
        _check(self.norm != "patch_std" or self.points_per_side >= 2, f"{key}.norm",
               "patch_std z-scores over a patch's trajectories: needs points_per_side >= 2")


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
        _check(self.path is not None, f"{key}.path",
               "the teacher target needs a local Hugging Face model folder (written by "
               "save_pretrained) of a CLIP, SigLIP or DINOv2 vision model")
        _check(self.weight >= 0, f"{key}.weight", f"must be >= 0, got {self.weight}")
        _check(self.norm in TEACHER_NORMS, f"{key}.norm",
               f"must be one of {list(TEACHER_NORMS)}, got {self.norm!r}")
        _check(self.frame >= 0, f"{key}.frame", f"must be >= 0, got {self.frame}")
        _check(self.size is None or self.size >= 1, f"{key}.size", "must be >= 1 or null")
        _check(self.grid_resize in TEACHER_RESIZES, f"{key}.grid_resize",
               f"must be one of {list(TEACHER_RESIZES)}, got {self.grid_resize!r}")
        _check(self.precision in TEACHER_PRECISIONS, f"{key}.precision",
               f"must be one of {list(TEACHER_PRECISIONS)}, got {self.precision!r}")


TARGET_NAMES = ("pixel", "tracks", "hog", "m3traj", "teacher")
# TrackMAE's loss weight of the tracks target next to a feature (teacher) target.
TRACKS_WEIGHT_WITH_TEACHER = 0.25
MOTION_TARGETS = ("tracks", "m3traj")


@dataclass
class TargetsConfig:
    """The reconstruction targets: ``names`` selects, each section configures one."""

    names: list[str] = field(default_factory=lambda: ["pixel"])
    pixel: PixelTargetConfig = field(default_factory=PixelTargetConfig)
    tracks: TracksTargetConfig = field(default_factory=TracksTargetConfig)
    hog: HogTargetConfig = field(default_factory=HogTargetConfig)
    m3traj: M3TrajTargetConfig = field(default_factory=M3TrajTargetConfig)
    teacher: TeacherTargetConfig = field(default_factory=TeacherTargetConfig)

    def loss_weight(self, name: str) -> float:
        """Target ``name``'s loss weight: its section's ``weight``; an unset (null) tracks
        weight is :data:`TRACKS_WEIGHT_WITH_TEACHER` when ``names`` has a teacher, else 1."""
        weight = getattr(self, name).weight
        if weight is not None:
            return float(weight)
        return TRACKS_WEIGHT_WITH_TEACHER if "teacher" in self.names else 1.0

    def validate(self, key: str = "targets") -> None:
        _check(len(self.names) >= 1, f"{key}.names", "needs at least one target")
        for name in self.names:
            _check(name in TARGET_NAMES, f"{key}.names",
                   f"unknown target {name!r}; known: {list(TARGET_NAMES)}")
        _check(len(set(self.names)) == len(self.names), f"{key}.names",
               f"has duplicates: {self.names}")
        for name in self.names:
            getattr(self, name).validate(f"{key}.{name}")


LR_SCALINGS = ("linear", "sqrt")


@dataclass
class OptimConfig:
    """AdamW with warmup + cosine, peaking at :meth:`peak_lr` (``lr`` when set).

    The peak rate follows the global batch ``B`` (processes x ``run.batch_size`` x
    ``accum_steps``) against ``reference_batch`` ``R``: at and above it always linearly,
    ``base_lr * B / R`` (the VideoMAE papers' rule); below it by ``lr_scaling``:
    ``linear`` keeps ``base_lr * B / R`` (the papers' rule at every batch, which leaves a
    batch-8 run at 4.7e-6 and barely learning), ``sqrt`` gives ``base_lr * sqrt(B / R)``, and
    either is raised to ``min_peak_lr`` (null: no floor) - below the reference batch only, so
    a recipe at or above it keeps its paper's rate whatever the floor. The defaults give 3e-4
    from batch 1 to 255 (a floor above ``base_lr`` makes the rate drop to 1.5e-4 at 256) and
    the papers' rule from 256 up; fine-tuning's ``base_lr`` 1e-3 gives ``sqrt`` scaling
    down to batch 24. A recipe below the reference batch that wants its paper's rule says
    ``lr_scaling: linear`` and ``min_peak_lr: null``.
    """

    base_lr: float = 1.5e-4
    lr: float | None = None
    lr_scaling: str = "sqrt"
    reference_batch: int = 256
    # Interim: 64x the papers' batch-8 rate; on 250-step batch-8 runs of synthetic clips
    # 1.5e-4, 3e-4 and 1e-3 ended alike, 4.7e-6 short of even the batch mean (a sweep on
    # real clips should set it).
    min_peak_lr: float | None = 3e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_fraction: float = 0.05
    clip_grad: float | None = None
    accum_steps: int = 1
    layer_decay: float = 1.0
    fused: bool = True

    def validate(self, key: str = "optim") -> None:
        _check(self.base_lr > 0, f"{key}.base_lr", f"must be > 0, got {self.base_lr}")
        _check(self.lr is None or self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        _check(self.lr_scaling in LR_SCALINGS, f"{key}.lr_scaling",
               f"must be one of {list(LR_SCALINGS)}, got {self.lr_scaling!r}")
        _check(self.reference_batch >= 1, f"{key}.reference_batch",
               f"must be >= 1, got {self.reference_batch}")
        _check(self.min_peak_lr is None or self.min_peak_lr > 0, f"{key}.min_peak_lr",
               f"must be > 0 or null, got {self.min_peak_lr}")
        _check(self.min_lr >= 0, f"{key}.min_lr", "must be >= 0")
        _check(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0")
        _check(all(0 <= b < 1 for b in self.betas), f"{key}.betas", "must be in [0, 1)")
        _check(0 <= self.warmup_fraction < 1, f"{key}.warmup_fraction", "must be in [0, 1)")
        _check(self.clip_grad is None or self.clip_grad > 0, f"{key}.clip_grad",
               "must be > 0 or null")
        _check(self.accum_steps >= 1, f"{key}.accum_steps", "must be >= 1")
        _check(0 < self.layer_decay <= 1, f"{key}.layer_decay", "must be in (0, 1]")

    def peak_lr(self, global_batch: int) -> float:
        """The schedule's peak learning rate for ``global_batch`` clips per optimizer step."""
        if self.lr is not None:
            return self.lr
        ratio = global_batch / self.reference_batch
        if ratio >= 1 or self.lr_scaling == "linear":
            scaled = self.base_lr * ratio
        else:
            scaled = self.base_lr * ratio**0.5
        if ratio < 1 and self.min_peak_lr is not None:
            scaled = max(scaled, self.min_peak_lr)
        return scaled

    def lr_rule(self, global_batch: int) -> str:
        """How :meth:`peak_lr` came about, for the start-up log: ``peak lr 3.00e-04 (base_lr
        1.50e-04, sqrt scaling below batch 256, floor 3.00e-04, global batch 8)``."""
        peak = f"peak lr {self.peak_lr(global_batch):.2e}"
        if self.lr is not None:
            return f"{peak} (optim.lr, global batch {global_batch})"
        below = global_batch < self.reference_batch
        rule = (f"{self.lr_scaling} scaling below batch {self.reference_batch}" if below
                else f"linear scaling at and above batch {self.reference_batch}")
        floor = (f", floor {self.min_peak_lr:.2e}"
                 if below and self.min_peak_lr is not None else "")
        return f"{peak} (base_lr {self.base_lr:.2e}, {rule}{floor}, global batch {global_batch})"


@dataclass
class RunConfig:
    """Length of the run, batch, precision, logging and checkpoint cadence."""

    out: str = "runs/pretrain"
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 8
    seed: int = 0
    precision: str = "fp32"
    device: str = "auto"
    compile: bool = False
    log_every: int = 10
    ckpt_every: int = 500
    keep_every: int | None = None
    max_bad_steps: int = 10
    # Under torchrun: "ddp" replicates the model, "fsdp" shards parameters, gradients and
    # optimizer state over the ranks (FSDP2 fully_shard); one process ignores it.
    parallel: str = "ddp"
    # Also write the logged records as TensorBoard scalars to RUN/tensorboard (rank 0; needs
    # the tensorboard package: pip install 'motionmae[tensorboard]').
    tensorboard: bool = False
    # Also log them to Weights & Biases (rank 0; pip install 'motionmae[wandb]'). The API key
    # comes from WANDB_API_KEY or `wandb login`, never from the config. ``wandb_mode`` null:
    # W&B's default (WANDB_MODE, else online).
    wandb: bool = False
    wandb_project: str = "motionmae"
    wandb_entity: str | None = None
    wandb_mode: str | None = None
    # In-run linear probe (pretraining, rank 0): every ``probe_every`` steps (a multiple of
    # ``log_every``) and at the last step, frozen features of the labelled lists
    # ``probe_train`` and ``probe_val`` with the current encoder; top-1 logged as
    # ``probe/linear``. Keep the lists small: training waits for the probe.
    probe_every: int | None = None
    probe_train: str | None = None
    probe_val: str | None = None

    def validate(self, key: str = "run") -> None:
        _check(self.steps is None or self.steps >= 1, f"{key}.steps", "must be >= 1")
        _check(self.epochs is None or self.epochs >= 1, f"{key}.epochs", "must be >= 1")
        _check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        _check(self.precision in ("fp32", "bf16"), f"{key}.precision",
               f"must be 'fp32' or 'bf16', got {self.precision!r}")
        _check(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
               f"{key}.device", f"must be auto, cpu, cuda[:i] or mps, got {self.device!r}")
        _check(self.log_every >= 1, f"{key}.log_every", "must be >= 1")
        _check(self.ckpt_every >= 1, f"{key}.ckpt_every", "must be >= 1")
        _check(self.keep_every is None or self.keep_every >= 1, f"{key}.keep_every",
               "must be >= 1 or null")
        _check(self.max_bad_steps >= 1, f"{key}.max_bad_steps", "must be >= 1")
        _check(self.parallel in ("ddp", "fsdp"), f"{key}.parallel",
               f"must be 'ddp' or 'fsdp', got {self.parallel!r}")
        _check(self.wandb_mode in (None, "online", "offline"), f"{key}.wandb_mode",
               f"must be online, offline or null, got {self.wandb_mode!r}")
        _check(bool(self.wandb_project), f"{key}.wandb_project", "must not be empty")
        if self.probe_every is not None:
            _check(self.probe_every >= 1, f"{key}.probe_every", "must be >= 1 or null")
            _check(self.probe_every % self.log_every == 0, f"{key}.probe_every",
                   f"must be a multiple of {key}.log_every {self.log_every} (a probe's result "
                   f"goes into the logged record of its step), got {self.probe_every}")
            for name in ("probe_train", "probe_val"):
                _check(getattr(self, name) is not None, f"{key}.{name}",
                       f"a labelled list file is required with {key}.probe_every")


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs; saved beside every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        model = self.model.resolved()
        _check(self.data.frames % model.tubelet_size == 0, "data.frames",
               f"{self.data.frames} frames is not a multiple of model.tubelet_size "
               f"{model.tubelet_size}")
        _check(self.data.size % model.patch_size == 0, "data.size",
               f"{self.data.size} px is not a multiple of model.patch_size {model.patch_size}")
        for name in model.joint_targets:
            _check(name in self.targets.names, "model.joint_targets",
                   f"{name!r} is not one of targets.names {self.targets.names}")
        if "teacher" in self.targets.names:
            _check(self.targets.teacher.frame < model.tubelet_size, "targets.teacher.frame",
                   f"must be < model.tubelet_size {model.tubelet_size}, "
                   f"got {self.targets.teacher.frame}")
        # The sampler runs outside the model's forward, where FSDP keeps parameters sharded.
        _check(not (self.masking.kind == "learned" and self.run.parallel == "fsdp"),
               "masking.kind", "learned masking does not run under run.parallel=fsdp; use ddp")

    @property
    def needs_tracks(self) -> bool:
        """Whether samples must carry point tracks (TrackMAE target, motion-aware masking, or
        the learned sampler with ``use_tracks``)."""
        return ("tracks" in self.targets.names or self.masking.kind == "motion"
                or (self.masking.kind == "learned" and self.masking.learned.use_tracks))


RANDAUGMENT_OPS = ("auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize",
                   "solarize_add", "color", "contrast", "brightness", "sharpness", "shear_x",
                   "shear_y", "translate_x", "translate_y")
ERASING_MODES = ("clip", "frame")


@dataclass
class RandAugmentConfig:
    """RandAugment on a clip: ``num_ops`` operations drawn from ``ops`` (with replacement),
    each applied with probability 0.5 at magnitude ``N(magnitude, magnitude_std)`` clipped to
    [0, 10]; one draw per clip, the same for every frame. ``num_ops: 0`` disables it.
    VideoMAE's ``rand-m7-n4-mstd0.5-inc1``."""

    num_ops: int = 4
    magnitude: float = 7.0
    magnitude_std: float = 0.5
    ops: list[str] = field(default_factory=lambda: list(RANDAUGMENT_OPS))

    def validate(self, key: str) -> None:
        _check(self.num_ops >= 0, f"{key}.num_ops", f"must be >= 0, got {self.num_ops}")
        _check(0 <= self.magnitude <= 10, f"{key}.magnitude",
               f"must be in [0, 10], got {self.magnitude}")
        _check(self.magnitude_std >= 0, f"{key}.magnitude_std", "must be >= 0")
        _check(self.num_ops == 0 or len(self.ops) >= 1, f"{key}.ops", "must not be empty")
        for name in self.ops:
            _check(name in RANDAUGMENT_OPS, f"{key}.ops",
                   f"unknown operation {name!r}; known: {list(RANDAUGMENT_OPS)}")


@dataclass
class ErasingConfig:
    """Random erasing: with probability ``prob`` a box of ``min_area..max_area`` of the frame
    (aspect ratio in ``[min_aspect, 1 / min_aspect]``) is filled with random pixels; ``clip``
    mode erases the same box (same noise) in every frame, ``frame`` mode draws each frame's
    box independently."""

    prob: float = 0.25
    mode: str = "clip"
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3

    def validate(self, key: str) -> None:
        _check(0 <= self.prob <= 1, f"{key}.prob", f"must be in [0, 1], got {self.prob}")
        _check(self.mode in ERASING_MODES, f"{key}.mode",
               f"must be one of {list(ERASING_MODES)}, got {self.mode!r}")
        _check(0 < self.min_area <= self.max_area < 1, f"{key}.min_area",
               f"need 0 < min_area <= max_area < 1, got {self.min_area}, {self.max_area}")
        _check(0 < self.min_aspect <= 1, f"{key}.min_aspect", "must be in (0, 1]")


@dataclass
class FinetuneSettings:
    """Supervised fine-tuning of a classifier on the encoder (VideoMAE's recipe by default).

    ``checkpoint``: the encoder to start from (anything ``load_encoder`` accepts); ``null``
    trains from scratch with the architecture in the ``model`` section. ``num_classes``
    defaults to the training list's. Mixup and cutmix are Beta(``mixup``/``cutmix``)
    parameters (0 disables each); with both on, a batch takes cutmix with probability
    ``switch_prob``; ``mix_prob`` is the chance a batch is mixed at all.
    """

    checkpoint: str | None = None
    num_classes: int | None = None
    layer_decay: float = 0.75
    drop_path: float = 0.1
    head_init_scale: float = 1e-3
    head_dropout: float = 0.0
    mixup: float = 0.8
    cutmix: float = 1.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    smoothing: float = 0.1
    randaugment: RandAugmentConfig = field(default_factory=RandAugmentConfig)
    erasing: ErasingConfig = field(default_factory=ErasingConfig)

    def validate(self, key: str = "finetune") -> None:
        _check(self.num_classes is None or self.num_classes >= 1, f"{key}.num_classes",
               "must be >= 1 or null")
        _check(0 < self.layer_decay <= 1, f"{key}.layer_decay",
               f"must be in (0, 1], got {self.layer_decay}")
        _check(0 <= self.drop_path < 1, f"{key}.drop_path", "must be in [0, 1)")
        _check(self.head_init_scale > 0, f"{key}.head_init_scale", "must be > 0")
        _check(0 <= self.head_dropout < 1, f"{key}.head_dropout", "must be in [0, 1)")
        _check(self.mixup >= 0, f"{key}.mixup", f"must be >= 0, got {self.mixup}")
        _check(self.cutmix >= 0, f"{key}.cutmix", f"must be >= 0, got {self.cutmix}")
        _check(0 <= self.mix_prob <= 1, f"{key}.mix_prob", "must be in [0, 1]")
        _check(0 <= self.switch_prob <= 1, f"{key}.switch_prob", "must be in [0, 1]")
        _check(0 <= self.smoothing < 1, f"{key}.smoothing", "must be in [0, 1)")
        self.randaugment.validate(f"{key}.randaugment")
        self.erasing.validate(f"{key}.erasing")


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs; saved beside every checkpoint.

    ``model`` is the architecture when ``finetune.checkpoint`` is null (from scratch); with a
    checkpoint the checkpoint's own architecture is used. Stochastic depth and layer-wise lr
    decay are set in ``finetune`` (``finetune.drop_path``, ``finetune.layer_decay``), not in
    ``model``/``optim``.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(base_lr=1e-3, betas=(0.9, 0.999)))
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/finetune"))

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        _check(self.model.drop_path == 0.0, "model.drop_path",
               "fine-tuning sets stochastic depth with finetune.drop_path")
        _check(self.optim.layer_decay == 1.0, "optim.layer_decay",
               "fine-tuning sets layer-wise lr decay with finetune.layer_decay")
        if self.finetune.checkpoint is None:
            model = self.model.resolved()
            _check(self.data.frames % model.tubelet_size == 0, "data.frames",
                   f"{self.data.frames} frames is not a multiple of model.tubelet_size "
                   f"{model.tubelet_size}")
            _check(self.data.size % model.patch_size == 0, "data.size",
                   f"{self.data.size} px is not a multiple of model.patch_size "
                   f"{model.patch_size}")


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")


@dataclass
class PrepareConfig:
    """How ``motionmae prepare`` re-encodes a dataset's videos.

    Short side ``short_side`` px (never enlarged; ``null`` keeps the size), aspect kept, both
    sides even; H.264 ``yuv420p`` at quality ``crf`` with x264 ``preset``; a keyframe every
    ``keyframe_seconds`` (a clip read seeks to the keyframe before it and decodes from
    there); every frame kept, or resampled to ``fps`` frames per second. Audio is dropped.
    """

    short_side: int | None = 320
    fps: float | None = None
    # FFmpeg's default: 34.5 dB PSNR on bigbuckbunny at 320 px, half the bytes of crf 18.
    crf: int = 23
    preset: str = "veryfast"
    keyframe_seconds: float = 1.0

    def validate(self, key: str = "prepare") -> None:
        _check(self.short_side is None or self.short_side >= 2, f"{key}.short_side",
               f"must be >= 2 or null, got {self.short_side}")
        _check(self.fps is None or self.fps > 0, f"{key}.fps", f"must be > 0, got {self.fps}")
        _check(0 <= self.crf <= 51, f"{key}.crf", f"must be in [0, 51], got {self.crf}")
        _check(self.preset in X264_PRESETS, f"{key}.preset",
               f"must be one of {list(X264_PRESETS)}, got {self.preset!r}")
        _check(self.keyframe_seconds > 0, f"{key}.keyframe_seconds",
               f"must be > 0, got {self.keyframe_seconds}")


# --------------------------------------------------------------------------------------------
# Loading: dict/YAML -> dataclass with type checks, and dotted overrides.

T = TypeVar("T")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: must not be null")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        _check(isinstance(value, dict), key, f"must be a mapping, got {value!r}")
        return from_dict(annotation, value, key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        _check(isinstance(value, list | tuple), key, f"must be a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            _check(len(value) == len(args), key, f"must have {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in
                         enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is bool:
        _check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if annotation is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key,
               f"must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept it as the number it is.
            with contextlib.suppress(ValueError):
                value = float(value)
        _check(isinstance(value, int | float) and not isinstance(value, bool), key,
               f"must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        _check(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in names:
            raise ConfigError(f"{key}: unknown key; known keys here: {sorted(names)}")
        kwargs[name] = _coerce(value, hints[name], key)
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for JSON and YAML."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. masking.ratio=0.75")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted ``key=value`` overrides (values parsed as YAML scalars) in a nested dict."""
    for text in overrides:
        path, value = _parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path)}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> T:
    """Load ``cls`` from defaults <- ``base`` <- YAML file <- overrides, then validate."""
    data: dict[str, Any] = _deep_merge({}, base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        with path.open() as handle:
            loaded = yaml.safe_load(handle) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        data = _deep_merge(data, loaded)
    apply_overrides(data, overrides or [])
    config = from_dict(cls, data)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value if not isinstance(value, dict) else _deep_merge({}, value)
    return into

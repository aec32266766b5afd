"""Where clips come from and how they are sampled and augmented (the ``data`` section)."""

from __future__ import annotations

from dataclasses import dataclass, field

from motionmae.config_loading import check

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHORT_VIDEOS = ("pad", "stretch")


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

    ``reverse``: the probability that a training clip plays backward (its frames, and its
    ``frame_indices``, in descending order), the arrow-of-time pretext's input
    (:mod:`motionmae.targets.arrow`); 0 keeps every clip forward. Pretraining only (fine-tuning
    refuses it: a class may be a direction); evaluation clips never play backward.
    """

    train: str | None = None
    val: str | None = None
    frames: int = 16
    stride: int = 4
    size: int = 224
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    flip: bool = True
    reverse: float = 0.0
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
        check(self.frames >= 1, f"{key}.frames", f"must be >= 1, got {self.frames}")
        check(self.stride >= 1, f"{key}.stride", f"must be >= 1, got {self.stride}")
        check(self.size >= 8, f"{key}.size", f"must be >= 8, got {self.size}")
        check(len(self.scales) >= 1 and all(0.0 < s <= 1.0 for s in self.scales),
               f"{key}.scales", f"must be a non-empty list of values in (0, 1], got {self.scales}")
        check(all(s > 0 for s in self.std), f"{key}.std", "must be positive")
        check(0.0 <= self.reverse <= 1.0, f"{key}.reverse",
              f"must be a probability in [0, 1], got {self.reverse}")
        check(self.num_sample >= 1, f"{key}.num_sample", "must be >= 1")
        check(self.workers >= 0, f"{key}.workers", "must be >= 0")
        check(self.on_error in ("raise", "skip"), f"{key}.on_error",
               f"must be 'raise' or 'skip', got {self.on_error!r}")
        check(0.0 <= self.max_bad_fraction <= 1.0, f"{key}.max_bad_fraction",
               f"must be in [0, 1], got {self.max_bad_fraction}")
        check(self.bad_videos_tolerated >= 0, f"{key}.bad_videos_tolerated",
               f"must be >= 0, got {self.bad_videos_tolerated}")
        check(self.short_videos in SHORT_VIDEOS, f"{key}.short_videos",
               f"must be one of {list(SHORT_VIDEOS)}, got {self.short_videos!r}")
        check(self.test_clips >= 1, f"{key}.test_clips", "must be >= 1")
        check(self.test_crops >= 1, f"{key}.test_crops", "must be >= 1")




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
        check(self.num_ops >= 0, f"{key}.num_ops", f"must be >= 0, got {self.num_ops}")
        check(0 <= self.magnitude <= 10, f"{key}.magnitude",
               f"must be in [0, 10], got {self.magnitude}")
        check(self.magnitude_std >= 0, f"{key}.magnitude_std", "must be >= 0")
        check(self.num_ops == 0 or len(self.ops) >= 1, f"{key}.ops", "must not be empty")
        for name in self.ops:
            check(name in RANDAUGMENT_OPS, f"{key}.ops",
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
        check(0 <= self.prob <= 1, f"{key}.prob", f"must be in [0, 1], got {self.prob}")
        check(self.mode in ERASING_MODES, f"{key}.mode",
               f"must be one of {list(ERASING_MODES)}, got {self.mode!r}")
        check(0 < self.min_area <= self.max_area < 1, f"{key}.min_area",
               f"need 0 < min_area <= max_area < 1, got {self.min_area}, {self.max_area}")
        check(0 < self.min_aspect <= 1, f"{key}.min_aspect", "must be in (0, 1]")


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
        check(self.short_side is None or self.short_side >= 2, f"{key}.short_side",
               f"must be >= 2 or null, got {self.short_side}")
        check(self.fps is None or self.fps > 0, f"{key}.fps", f"must be > 0, got {self.fps}")
        check(0 <= self.crf <= 51, f"{key}.crf", f"must be in [0, 51], got {self.crf}")
        check(self.preset in X264_PRESETS, f"{key}.preset",
               f"must be one of {list(X264_PRESETS)}, got {self.preset!r}")
        check(self.keyframe_seconds > 0, f"{key}.keyframe_seconds",
               f"must be > 0, got {self.keyframe_seconds}")

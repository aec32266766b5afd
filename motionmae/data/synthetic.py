"""A built-in synthetic motion dataset: the class is how objects move, not how they look.

Each clip shows a few textured objects (ellipses, rectangles or wobbly blobs; smooth-noise,
stripe or checker textures; random colours) over a static textured background. All objects of
a clip move the same way: they stay still, translate (left/right/up/down), rotate about their
own centres (cw/ccw, as seen on screen) or scale (zoom in/out). Several objects rather than one
put the class signal into a sizeable share of the tokens (one object covers ~5% of a 112 px
frame), so a short pretraining budget sees enough motion to learn from.

Appearance is drawn from its own generator, independently of the class, and
every motion is the identity at frame 0, so **frame 0 of a clip is the same image whatever
its class** (:func:`render_clip` of one appearance with two motions gives identical first
frames). The objects live on a torus (they wrap around the frame edges) with uniform
positions, so positions do not reveal the class in any frame either; the zoom classes do
change the objects' sizes over the clip (that is the motion).

Clips are written as real H.264 mp4 files (``yuv420p``, crf 18) with plain list files, so
the demo and tests exercise the same decode path as real data. Generation is seeded and
idempotent: a complete dataset with the same parameters (checked via ``manifest.json``,
written last) is reused; files are written under temporary names and renamed, so a killed
run never leaves a dataset that looks complete.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from motionmae.data.config import DataConfig
from motionmae.data.lists import VideoEntry, read_video_list, write_video_list
from motionmae.data.video_writer import write_video

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("down", "left", "right", "rotate_ccw", "rotate_cw", "still", "up",
                            "zoom_in", "zoom_out")
"""Class names in label order (sorted, matching :func:`read_video_list`'s name mapping)."""

GENERATOR_VERSION = 3  # bump when rendering changes, so old datasets are regenerated
FPS = 25.0
CRF = 18
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SyntheticDataset:
    """A generated dataset: list files (``path label``, label = class name) and classes."""

    train_list: Path
    val_list: Path
    classes: list[str]
    frames: int
    size: int

    def data_config(self, frames: int = 16, size: int | None = None, **overrides: Any) \
            -> DataConfig:
        """A :class:`DataConfig` for this dataset: its lists, ``flip=False`` (left vs right
        is a class), a stride that spreads ``frames`` over the whole video, ``size`` (default:
        the video size rounded down to a multiple of 16)."""
        values: dict[str, Any] = {
            "train": str(self.train_list),
            "val": str(self.val_list),
            "frames": frames,
            "stride": max(1, self.frames // frames),
            "size": size or max(16, self.size // 16 * 16),
            "flip": False,
        }
        values.update(overrides)
        if values["flip"]:
            raise ValueError("flip must be off for the synthetic motion dataset")
        return DataConfig(**values)


# -- appearance ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Appearance:
    """What a clip looks like at frame 0.

    Attributes:
        background: float32 ``[S, S, 3]`` in [0, 1].
        sprites: per object, float32 ``[P, P, 4]``: premultiplied RGB and alpha, centred;
            drawn in this order (later ones in front).
        positions: per object, (x, y) of its centre at frame 0, in pixels (pixel centres at
            integers), anywhere in ``[0, S)`` (the frame wraps around).
    """

    background: np.ndarray
    sprites: tuple[np.ndarray, ...]
    positions: tuple[tuple[float, float], ...]


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.05, 0.95, size=3).astype(np.float32)


def _texture(rng: np.random.Generator, size: int, contrast: float) -> np.ndarray:
    """A random ``[size, size, 3]`` float32 texture in [0, 1]: smooth noise, stripes or
    checkers between two random colours."""
    kind = int(rng.integers(3))
    if kind == 0:  # smooth noise
        cells = int(rng.integers(3, 9))
        field = cv2.resize(rng.random((cells, cells)).astype(np.float32), (size, size),
                           interpolation=cv2.INTER_CUBIC)
        field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    else:
        y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
        theta = rng.uniform(0, math.pi)
        u = x * math.cos(theta) + y * math.sin(theta)
        v = -x * math.sin(theta) + y * math.cos(theta)
        freq = rng.uniform(2.0, 6.0)
        phase = rng.uniform(0, 2 * math.pi)
        if kind == 1:  # stripes, soft or hard
            field = 0.5 + 0.5 * np.sin(2 * math.pi * freq * u + phase)
            if rng.random() < 0.5:
                field = (field > 0.5).astype(np.float32)
        else:  # checkers
            a = np.floor(freq * u + phase).astype(np.int64)
            b = np.floor(freq * v + phase).astype(np.int64)
            field = ((a + b) % 2).astype(np.float32)
    first, second = _colour(rng), _colour(rng)
    second = first + contrast * (second - first)
    return (first + field[..., None] * (second - first)).astype(np.float32)


def _shape_mask(rng: np.random.Generator, patch: int, radius: float) -> np.ndarray:
    """Antialiased ``[patch, patch]`` float32 mask of an ellipse, rectangle or blob of mean
    radius ``radius`` px centred in the patch."""
    c = (patch - 1) / 2
    y, x = np.mgrid[0:patch, 0:patch].astype(np.float32) - c
    theta = rng.uniform(0, math.pi)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    aspect = rng.uniform(0.45, 0.8)  # elongated, so rotation shows
    kind = int(rng.integers(3))
    if kind == 0:  # ellipse: distance in px to its boundary, approximately
        rho = np.hypot(u / radius, v / (radius * aspect))
        edge = (1.0 - rho) * radius * aspect
    elif kind == 1:  # rectangle
        edge = np.minimum(radius * 0.9 - np.abs(u), radius * 0.9 * aspect - np.abs(v))
    else:  # blob: radius modulated by a few harmonics
        angle = np.arctan2(v, u)
        r = np.full_like(angle, radius)
        for k in (2, 3, 5):
            r += radius * rng.uniform(0.0, 0.12) * np.cos(k * angle + rng.uniform(0, 6.3))
        edge = r - np.hypot(u, v)
    return np.clip(edge + 0.5, 0.0, 1.0).astype(np.float32)


def _sample_sprite(rng: np.random.Generator, size: int) -> np.ndarray:
    radius = rng.uniform(0.11, 0.17) * size
    patch = math.ceil(radius * 2.6) | 1  # odd: the centre is a pixel centre
    mask = _shape_mask(rng, patch, radius)
    texture = _texture(rng, patch, contrast=rng.uniform(0.6, 1.0))
    return np.concatenate([texture * mask[..., None], mask[..., None]], axis=-1).astype(
        np.float32)


def sample_appearance(rng: np.random.Generator, size: int,
                      objects: tuple[int, int] = (2, 4)) -> Appearance:
    """Background, object sprites and frame-0 positions of one clip (class-independent);
    the number of objects is uniform in ``objects`` (inclusive)."""
    background = _texture(rng, size, contrast=rng.uniform(0.2, 0.5))
    count = int(rng.integers(objects[0], objects[1] + 1))
    sprites = tuple(_sample_sprite(rng, size) for _ in range(count))
    positions = tuple((float(rng.uniform(0, size)), float(rng.uniform(0, size)))
                      for _ in range(count))
    return Appearance(background=background, sprites=sprites, positions=positions)


# -- motion -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motion:
    """Total change over a clip, applied linearly in time (log-linearly for scale).

    Attributes:
        shift: (dx, dy) in pixels from the first to the last frame.
        angle: rotation in degrees, counter-clockwise on screen positive.
        log_scale: natural log of the last frame's object scale over the first's.
    """

    shift: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    log_scale: float = 0.0


def sample_motion(name: str, rng: np.random.Generator, size: int) -> Motion:
    """The motion of class ``name`` with randomised magnitude."""
    distance = rng.uniform(0.25, 0.40) * size
    turn = rng.uniform(120.0, 240.0)
    zoom = math.log(rng.uniform(1.6, 2.2))
    motions = {
        "still": Motion(),
        "left": Motion(shift=(-distance, 0.0)),
        "right": Motion(shift=(distance, 0.0)),
        "up": Motion(shift=(0.0, -distance)),
        "down": Motion(shift=(0.0, distance)),
        "rotate_ccw": Motion(angle=turn),
        "rotate_cw": Motion(angle=-turn),
        "zoom_in": Motion(log_scale=zoom),
        "zoom_out": Motion(log_scale=-zoom),
    }
    if name not in motions:
        raise ValueError(f"unknown motion {name!r}; known: {sorted(motions)}")
    return motions[name]


def render_clip(appearance: Appearance, motion: Motion, frames: int) -> np.ndarray:
    """Render ``[frames, S, S, 3]`` uint8 RGB; frame 0 depends on ``appearance`` only.
    Every object moves by ``motion`` (rotation and scale about its own centre)."""
    size = appearance.background.shape[0]
    centre = (size - 1) / 2
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        f = t / max(frames - 1, 1)
        image = appearance.background
        for sprite, position in zip(appearance.sprites, appearance.positions, strict=True):
            pc = (sprite.shape[0] - 1) / 2
            x = position[0] + f * motion.shift[0]
            y = position[1] + f * motion.shift[1]
            # Render at the canvas centre plus the sub-pixel part, then roll the integer
            # part (mod S): objects wrap around the frame edges.
            ix, iy = math.floor(x - centre), math.floor(y - centre)
            matrix = cv2.getRotationMatrix2D((pc, pc), f * motion.angle,
                                             math.exp(f * motion.log_scale))
            matrix[0, 2] += centre + (x - centre - ix) - pc
            matrix[1, 2] += centre + (y - centre - iy) - pc
            layer = cv2.warpAffine(sprite, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
            layer = np.roll(layer, (iy % size, ix % size), axis=(0, 1))
            image = image * (1.0 - layer[..., 3:]) + layer[..., :3]
        out[t] = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def render_sample(seed: int, split: str, index: int, frames: int, size: int) -> \
        tuple[np.ndarray, str]:
    """Clip ``index`` of ``split``: ``([frames, size, size, 3] uint8, class name)``.

    Classes cycle through :data:`CLASSES` (balanced); appearance and motion magnitude come
    from separate generators seeded by ``(seed, split, index)``.
    """
    split_id = {"train": 0, "val": 1}[split]
    name = CLASSES[index % len(CLASSES)]
    appearance = sample_appearance(np.random.default_rng([seed, split_id, index, 0]), size)
    motion = sample_motion(name, np.random.default_rng([seed, split_id, index, 1]), size)
    return render_clip(appearance, motion, frames), name


# -- files --------------------------------------------------------------------------------


def make_synthetic_dataset(
    root: Path,
    num_train: int,
    num_val: int,
    frames: int = 32,
    size: int = 128,
    seed: int = 0,
) -> SyntheticDataset:
    """Write (or reuse) the synthetic dataset under ``root``.

    Layout: ``root/train/NNNNNN.mp4``, ``root/val/NNNNNN.mp4``, ``root/train.txt``,
    ``root/val.txt`` (``path class_name`` lines) and ``root/manifest.json``. ``size`` must be
    even (4:2:0 video).
    """
    root = Path(root)
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and >= 16, got {size}")
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    if num_train < 1 or num_val < 0:
        raise ValueError(f"need num_train >= 1 and num_val >= 0, got {num_train}, {num_val}")
    params = {"version": GENERATOR_VERSION, "num_train": num_train, "num_val": num_val,
              "frames": frames, "size": size, "seed": seed, "fps": FPS, "crf": CRF,
              "classes": list(CLASSES)}
    dataset = SyntheticDataset(train_list=root / "train.txt", val_list=root / "val.txt",
                               classes=list(CLASSES), frames=frames, size=size)
    if _is_complete(root, params):
        logger.info("reusing synthetic dataset in %s", root)
        return dataset
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)  # incomplete from here until rewritten
    for split, count in (("train", num_train), ("val", num_val)):
        folder = root / split
        folder.mkdir(exist_ok=True)
        for stale in folder.glob("*.tmp*"):
            stale.unlink(missing_ok=True)
        entries = []
        for index in range(count):
            clip, name = render_sample(seed, split, index, frames, size)
            final = folder / f"{index:06d}.mp4"
            temporary = folder / f"{index:06d}.tmp{os.getpid()}.mp4"
            write_video(temporary, clip, fps=FPS, crf=CRF)
            os.replace(temporary, final)
            entries.append(VideoEntry(path=final, label=CLASSES.index(name)))
        _write_atomic(root / f"{split}.txt", lambda p, e=entries: write_video_list(
            p, e, classes=list(CLASSES)))
    _write_atomic(root / MANIFEST, lambda p: p.write_text(json.dumps(params, indent=1)))
    logger.info("wrote synthetic dataset (%d train, %d val clips of %dx%dx%d) to %s in %.1fs",
                num_train, num_val, frames, size, size, root, time.perf_counter() - start)
    return dataset


def _write_atomic(path: Path, write: Any) -> None:
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    write(temporary)
    os.replace(temporary, path)


def _is_complete(root: Path, params: dict[str, Any]) -> bool:
    """A manifest with exactly ``params`` exists and every listed video is present."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest != params:
        return False
    for split, count in (("train", params["num_train"]), ("val", params["num_val"])):
        if count == 0:
            continue
        try:
            videos = read_video_list(root / f"{split}.txt")
        except (OSError, ValueError):
            return False
        if len(videos) != count or not all(e.path.is_file() for e in videos.entries):
            return False
    return True


def class_counts(labels: Sequence[int]) -> dict[str, int]:
    """How many clips of each class, by name."""
    counts = dict.fromkeys(CLASSES, 0)
    for label in labels:
        counts[CLASSES[label]] += 1
    return counts


__all__ = [
    "CLASSES",
    "Appearance",
    "Motion",
    "SyntheticDataset",
    "class_counts",
    "make_synthetic_dataset",
    "render_clip",
    "render_sample",
    "sample_appearance",
    "sample_motion",
]

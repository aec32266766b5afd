"""Known-motion clips built from a real image, with exact ground-truth tracks.

A clip is a sequence of affine warps of one base image (``cv2.warpAffine``, bicubic): frame
``t`` shows the base image mapped by the ``3 x 3`` matrix ``affines[t]`` (base-image pixel
coordinates -> frame pixel coordinates, pixel centres at integers). A point seen at ``(x, y)``
in frame ``s`` is therefore at ``affines[t] @ inv(affines[s]) @ (x, y, 1)`` in frame ``t``.
Optionally a textured square (the *occluder*) slides over the scene with integer pixel
positions; points under it are occluded.

The generators refuse motions whose window would leave the base image (no invented border
content), so pick a base image comfortably larger than the output size. All randomness comes
from an explicit ``np.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from motionmae.motion.protocol import in_frame

__all__ = [
    "SyntheticClip",
    "add_noise",
    "add_occluder",
    "affine_clip",
    "occluder_texture",
    "random_motion_clip",
    "rotation_clip",
    "translation_clip",
    "zoom_clip",
]


@dataclass(frozen=True)
class SyntheticClip:
    """A rendered clip and everything needed for its ground truth.

    Attributes:
        frames: ``[T, H, W, 3]`` ``uint8`` RGB.
        affines: ``[T, 3, 3]`` ``float64``; base-image pixel coords -> frame ``t`` pixel coords.
        occluder_boxes: ``[T, 4]`` ``int64`` ``(x0, y0, x1, y1)`` pixel index box of the
            occluder in each frame (columns ``x0 .. x1 - 1``, rows ``y0 .. y1 - 1``; may extend
            past the frame), or ``None`` when there is no occluder.
    """

    frames: np.ndarray
    affines: np.ndarray
    occluder_boxes: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)``."""
        t, h, w = self.frames.shape[:3]
        return t, h, w

    def occluded(self, points: np.ndarray) -> np.ndarray:
        """Whether points are under the occluder.

        Args:
            points: ``[T, N, 2]`` ``(x, y)`` pixels, one row per frame.
        Returns:
            ``[T, N]`` bool (all ``False`` without an occluder). A pixel-index box
            ``x0 .. x1 - 1`` covers ``x`` in ``[x0 - 0.5, x1 - 0.5)``.
        """
        if self.occluder_boxes is None:
            return np.zeros(points.shape[:2], dtype=bool)
        b = self.occluder_boxes[:, None, :].astype(np.float64) - 0.5
        x, y = points[..., 0], points[..., 1]
        return (x >= b[..., 0]) & (x < b[..., 2]) & (y >= b[..., 1]) & (y < b[..., 3])

    def ground_truth(self, queries: np.ndarray,
                     camera_removed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """True tracks and visibility of query points.

        Args:
            queries: ``[N, 3]`` rows ``(t, x, y)`` pixels (pixel centres at integers).
            camera_removed: the whole motion of these clips is camera motion over a static
                scene, so with camera motion removed (query-frame coordinates, as returned by
                the flow tracker with camera compensation) every point stays at its query
                position; ``True`` returns those tracks instead of the frame positions.
        Returns:
            ``(tracks [T, N, 2] float32 (x, y) pixels, visible [T, N] bool)``; visible means
            inside the frame and not under the occluder (in the real frames, either way). A
            query lying on the occluder refers to the scene point beneath it.
        """
        q = np.asarray(queries, dtype=np.float64).reshape(-1, 3)
        t_q = q[:, 0].astype(np.int64)
        inv = np.linalg.inv(self.affines)  # [T, 3, 3]
        hom = np.concatenate([q[:, 1:], np.ones((len(q), 1))], axis=1)  # [N, 3]
        base = np.einsum("nij,nj->ni", inv[t_q], hom)  # [N, 3] base-image coords
        pos = np.einsum("tij,nj->tni", self.affines, base)[..., :2]  # [T, N, 2]
        _, h, w = self.shape
        visible = in_frame(pos, h, w) & ~self.occluded(pos)
        if camera_removed:
            pos = np.broadcast_to(q[None, :, 1:], pos.shape)
        return pos.astype(np.float32), visible


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _window_affine(image_shape: tuple[int, ...], size: tuple[int, int],
                   origin: tuple[float, float] | None) -> np.ndarray:
    """Base -> frame-0 affine: the output window's top-left pixel sits at ``origin`` (x, y)."""
    h, w = size
    if origin is None:
        origin = ((image_shape[1] - w) / 2.0, (image_shape[0] - h) / 2.0)
    return _translate(-origin[0], -origin[1])


def affine_clip(image: np.ndarray, affines: np.ndarray, size: tuple[int, int]) -> SyntheticClip:
    """Render ``image`` through a sequence of affine maps.

    Args:
        image: ``[Hb, Wb, 3]`` ``uint8`` RGB base image.
        affines: ``[T, 3, 3]`` base-image pixel coords -> frame pixel coords (last row
            ``0 0 1``).
        size: output ``(H, W)`` in pixels.

    Returns:
        :class:`SyntheticClip` with ``frames [T, H, W, 3] uint8``.

    Raises:
        ValueError: when a frame would show content outside the base image.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected [H, W, 3] uint8, got {image.shape} {image.dtype}")
    affines = np.asarray(affines, dtype=np.float64)
    if affines.ndim != 3 or affines.shape[1:] != (3, 3):
        raise ValueError(f"affines: expected [T, 3, 3], got {affines.shape}")
    h, w = size
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1],
                        [w - 0.5, h - 0.5, 1]]).T
    hb, wb = image.shape[:2]
    for t, a in enumerate(affines):
        c = np.linalg.inv(a) @ corners
        # keep one pixel of margin for the bicubic kernel
        if c[0].min() < 0.5 or c[1].min() < 0.5 or c[0].max() > wb - 1.5 or c[1].max() > hb - 1.5:
            raise ValueError(f"affines: frame {t} needs base-image content outside the "
                             f"{wb}x{hb} image; use a larger image or a smaller motion")
    frames = np.stack([
        cv2.warpAffine(image, a[:2], (w, h), flags=cv2.INTER_CUBIC,
                       borderMode=cv2.BORDER_REFLECT101) for a in affines])
    return SyntheticClip(frames=frames, affines=affines)


def translation_clip(image: np.ndarray, num_frames: int, size: tuple[int, int],
                     velocity: tuple[float, float],
                     origin: tuple[float, float] | None = None) -> SyntheticClip:
    """The scene translates by ``velocity`` ``(vx, vy)`` pixels per frame.

    ``origin``: top-left of the frame-0 window in base-image pixels (default: centred).
    Scene points at ``(x, y)`` in frame 0 are at ``(x + t * vx, y + t * vy)`` in frame ``t``.
    """
    a0 = _window_affine(image.shape, size, origin)
    aff = np.stack([_translate(t * velocity[0], t * velocity[1]) @ a0 for t in range(num_frames)])
    return affine_clip(image, aff, size)


def _about_centre(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    cx, cy = (size[1] - 1) / 2.0, (size[0] - 1) / 2.0
    return _translate(cx, cy) @ m @ _translate(-cx, -cy)


def rotation_clip(image: np.ndarray, num_frames: int, size: tuple[int, int],
                  degrees_per_frame: float,
                  origin: tuple[float, float] | None = None) -> SyntheticClip:
    """The scene rotates about the frame centre by ``degrees_per_frame`` (counter-clockwise in
    image coordinates with y down, i.e. clockwise on screen, for positive values)."""
    a0 = _window_affine(image.shape, size, origin)
    aff = []
    for t in range(num_frames):
        th = np.deg2rad(degrees_per_frame * t)
        r = np.array([[np.cos(th), -np.sin(th), 0.0], [np.sin(th), np.cos(th), 0.0], [0, 0, 1]])
        aff.append(_about_centre(r, size) @ a0)
    return affine_clip(image, np.stack(aff), size)


def zoom_clip(image: np.ndarray, num_frames: int, size: tuple[int, int],
              scale_per_frame: float,
              origin: tuple[float, float] | None = None) -> SyntheticClip:
    """The scene scales about the frame centre by ``scale_per_frame ** t`` (> 1 zooms in)."""
    a0 = _window_affine(image.shape, size, origin)
    aff = [_about_centre(np.diag([scale_per_frame ** t, scale_per_frame ** t, 1.0]), size) @ a0
           for t in range(num_frames)]
    return affine_clip(image, np.stack(aff), size)


def occluder_texture(image: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``[side, side, 3]`` ``uint8`` texture cut from a random place of ``image``, rotated by
    180 degrees and with its colour channels reversed, so it does not match the scene."""
    hb, wb = image.shape[:2]
    if side > min(hb, wb):
        raise ValueError(f"side: {side} px is larger than the {wb}x{hb} image")
    y0 = int(rng.integers(0, hb - side + 1))
    x0 = int(rng.integers(0, wb - side + 1))
    return np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side][::-1, ::-1, ::-1])


def add_occluder(clip: SyntheticClip, texture: np.ndarray, start: tuple[int, int],
                 velocity: tuple[int, int]) -> SyntheticClip:
    """Paste a square texture sliding over the clip.

    Args:
        clip: the clip to draw on (not modified).
        texture: ``[S, S, 3]`` ``uint8`` occluder texture.
        start: integer top-left pixel ``(x0, y0)`` of the occluder in frame 0 (may be outside
            the frame, e.g. ``x0 = -S`` to enter from the left).
        velocity: integer pixels per frame ``(vx, vy)``.

    Returns:
        A new :class:`SyntheticClip` with the occluder drawn and ``occluder_boxes`` set.
    """
    t_len, h, w = clip.shape
    side_y, side_x = texture.shape[:2]
    frames = clip.frames.copy()
    boxes = np.zeros((t_len, 4), dtype=np.int64)
    for t in range(t_len):
        x0 = int(start[0]) + t * int(velocity[0])
        y0 = int(start[1]) + t * int(velocity[1])
        boxes[t] = (x0, y0, x0 + side_x, y0 + side_y)
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + side_x, w), min(y0 + side_y, h)
        if fx1 > fx0 and fy1 > fy0:
            frames[t, fy0:fy1, fx0:fx1] = texture[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return replace(clip, frames=frames, occluder_boxes=boxes)


def add_noise(clip: SyntheticClip, std: float, rng: np.random.Generator) -> SyntheticClip:
    """Independent Gaussian pixel noise of ``std`` grey levels on every frame (sensor noise;
    the ground truth is unchanged). Returns a new clip."""
    noisy = clip.frames.astype(np.float32) + rng.normal(0.0, std, clip.frames.shape)
    return replace(clip, frames=np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def random_motion_clip(image: np.ndarray, rng: np.random.Generator, kind: str,
                       num_frames: int = 16, size: tuple[int, int] = (224, 224),
                       occluder: bool = False, noise_std: float = 0.0) -> SyntheticClip:
    """A random clip of one motion ``kind`` (for benchmarks).

    Kinds and parameter ranges (uniform): ``"translation"``: speed 0.5..3 px/frame in a random
    direction; ``"rotation"``: +-0.3..1 degree/frame; ``"zoom"``: 1.005..1.02 per frame, in or
    out. The window is centred in ``image`` (which must be large enough, see
    :func:`affine_clip`). With ``occluder``, a ``size/4`` square cut from ``image`` enters from
    the left at a random height and crosses the frame at 8..14 px/frame. ``noise_std > 0``
    adds Gaussian pixel noise (:func:`add_noise`).
    """
    if kind == "translation":
        ang = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0.5, 3.0)
        clip = translation_clip(image, num_frames, size, (speed * np.cos(ang), speed * np.sin(ang)))
    elif kind == "rotation":
        deg = rng.uniform(0.3, 1.0) * rng.choice([-1.0, 1.0])
        clip = rotation_clip(image, num_frames, size, deg)
    elif kind == "zoom":
        s = rng.uniform(1.005, 1.02)
        clip = zoom_clip(image, num_frames, size, s if rng.random() < 0.5 else 1.0 / s)
    else:
        raise ValueError(f"kind: expected 'translation', 'rotation' or 'zoom', got {kind!r}")
    if occluder:
        side = size[1] // 4
        tex = occluder_texture(image, side, rng)
        y0 = int(rng.integers(0, size[0] - side + 1))
        clip = add_occluder(clip, tex, (-side, y0), (int(rng.integers(8, 15)), 0))
    if noise_std > 0:
        clip = add_noise(clip, noise_std, rng)
    return clip

"""Teacher features in the offline cache: stored per cached clip, mapped to each sample's crop.

``motionmae extract-teacher`` (:mod:`motionmae.targets.teacher_extract`) runs the teacher on
the cached clips of every video (the clips every cache holds: ``cache.clips`` evenly spaced
starts, :class:`~motionmae.cache.layout.ClipLayout`) and stores, per
clip, the features of its tubelet frames over the **whole decoded frame** (decoded at
``data.size`` short side, aspect kept; the teacher input is that frame resized to the
teacher's input side, long side rounded to whole patches, position embeddings interpolated).
During training, when ``cache.path`` is set, the clip sampler draws only cached clips and
:class:`TeacherFeaturesHook` (in the loader workers) maps each sample's crop, resize and flip
onto the stored feature map with the same footprint weights as the online target
(:func:`~motionmae.targets.teacher.footprint_weights`), so a token takes the teacher cells
under its own patch. A sample whose clip is not cached gets zeros and ``teacher_cached =
False``; :class:`~motionmae.targets.teacher.TeacherTarget` computes it online.

**What is exact and what is not.** The *geometry* is exact: a token's cached feature comes
from the image region the token covers, through any crop, scale and flip (tested with feature
maps that encode their own coordinates). The *features* are an approximation of the online
ones whenever the crop is not the whole frame: the teacher saw the whole frame (more context,
another scale: a crop of half the frame puts half as many teacher patches under each token)
rather than the crop, and a flipped sample reads the unflipped frame's features in mirrored
order (a ViT's features are not mirror-equivariant). With crop = whole (square) frame and no
flip, cached and online features agree up to float16 storage (tested). Use the online path
(no cache) when this matters more than the teacher's compute.

**Layout.** One shard per (video, clip) under the cache root, ``root/ab/abcdef....npz``
(:func:`~motionmae.cache.shards.shard_path`, beside the track cache's shards; keys never
collide, they hash a ``kind``). The key hashes the
video's absolute path, size and ``mtime_ns``, the clip's source frame indices and
:class:`TeacherCacheSettings` (teacher identity: :func:`~motionmae.targets.teacher_models.
teacher_fingerprint`; input side, tubelet frame, precision, decode size). Written and
verified like track shards (:func:`~motionmae.cache.shards.write_shard`, uncompressed: float
features barely compress). Shard arrays: ``features`` float16 ``[t, g_h, g_w, D]``,
``frame_indices`` int64 ``[T]``, ``frame_size`` (decoded ``(H, W)``), ``source_size``.
Size per clip: ``2 * t * g_h * g_w * D`` bytes (ViT-B/16, 16 frames at 224 px, 4:3 video:
``2 * 8 * 14 * 19 * 768`` = 3.3 MB).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from motionmae.cache.shards import FORMAT_VERSION, read_shard, shard_path, video_key, write_shard
from motionmae.config_loading import ConfigError
from motionmae.data.transforms import Geometry, output_size
from motionmae.targets.registry import TargetContext, register_target
from motionmae.targets.teacher import (
    TeacherTarget,
    TeacherTargetConfig,
    check_teacher_run,
    footprint_weights,
    teacher_input_side,
)
from motionmae.targets.teacher_models import TeacherSpec, read_teacher_spec
from motionmae.tokens import TokenGrid

if TYPE_CHECKING:
    from motionmae.data.hooks import HookInput

__all__ = [
    "CachedFeatures",
    "TeacherCacheSettings",
    "TeacherFeatureCache",
    "TeacherFeaturesHook",
    "cached_features_for_geometry",
    "frame_input_size",
    "geometry_footprints",
    "teacher_features_hook",
]

logger = logging.getLogger(__name__)

KIND = "teacher_features"


@dataclass(frozen=True)
class TeacherCacheSettings:
    """Everything besides the video and clip that determines cached teacher features (all part
    of the key).

    Attributes:
        teacher: the teacher folder's fingerprint.
        model_type: its ``model_type`` (descriptive; the fingerprint covers it).
        input_size: teacher input short side, pixels.
        tubelet: frames per tubelet.
        frame: which frame of each tubelet the teacher sees.
        precision: the ``targets.teacher.precision`` setting.
        decode_size: short side, pixels, at which frames are decoded.
    """

    teacher: str
    model_type: str
    input_size: int
    tubelet: int
    frame: int
    precision: str
    decode_size: int

    @classmethod
    def for_run(cls, teacher: TeacherTargetConfig, tubelet: int, decode_size: int,
                spec: TeacherSpec) -> TeacherCacheSettings:
        """The settings of a run's ``targets.teacher`` section, tubelet and clip size (one
        source for extraction and training)."""
        teacher.check_frame(tubelet)
        return cls(teacher=spec.fingerprint, model_type=spec.model_type,
                   input_size=teacher_input_side(teacher, spec), tubelet=tubelet,
                   frame=teacher.frame, precision=teacher.precision, decode_size=decode_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def frame_input_size(height: int, width: int, side: int, patch: int) -> tuple[int, int]:
    """Teacher input ``(height, width)`` for a whole ``height x width`` frame: short side
    ``side``, long side scaled alike and rounded to whole patches (at least one)."""
    short, long = min(height, width), max(height, width)
    scaled = max(patch, round(long * side / short / patch) * patch)
    return (side, scaled) if height <= width else (scaled, side)


@dataclass
class CachedFeatures:
    """One cached clip's teacher features.

    Attributes:
        frame_indices: ``[T]`` int64, source frame of each clip frame.
        features: ``[t, g_h, g_w, D]`` float16, the features of the whole decoded frame of
            each tubelet's teacher frame (cell ``(i, j)`` covers rows ``[i, i + 1] * H / g_h``
            and columns ``[j, j + 1] * W / g_w`` of the decoded frame).
        frame_size: decoded ``(H, W)``, pixels.
        source_size: the video's ``(height, display width)``, pixels.
    """

    frame_indices: np.ndarray
    features: np.ndarray
    frame_size: tuple[int, int]
    source_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.features.ndim != 4:
            raise ValueError(f"features: expected [t, g_h, g_w, D], got {self.features.shape}")
        if self.frame_indices.ndim != 1:
            raise ValueError(f"frame_indices: expected [T], got {self.frame_indices.shape}")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"frame_indices": np.asarray(self.frame_indices, np.int64),
                "features": np.asarray(self.features, np.float16),
                "frame_size": np.asarray(self.frame_size, np.int64),
                "source_size": np.asarray(self.source_size, np.int64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> CachedFeatures:
        frame_size = tuple(int(v) for v in arrays["frame_size"])
        source_size = tuple(int(v) for v in arrays["source_size"])
        if len(frame_size) != 2 or len(source_size) != 2:
            raise ValueError("frame_size and source_size must hold 2 values")
        return cls(frame_indices=arrays["frame_indices"], features=arrays["features"],
                   frame_size=frame_size, source_size=source_size)  # type: ignore[arg-type]


class TeacherFeatureCache:
    """Cached teacher features under ``root`` (the cache folder, ``cache.path``) for one
    :class:`TeacherCacheSettings`. Picklable; many readers and writers may share a root."""

    def __init__(self, root: str | Path, settings: TeacherCacheSettings) -> None:
        self.root = Path(root)
        self.settings = settings

    def __repr__(self) -> str:
        return f"TeacherFeatureCache({str(self.root)!r}, {self.settings})"

    def key(self, video_path: str | Path, frame_indices: np.ndarray) -> str:
        """sha256 hex of the video (path, size, mtime), the clip's frames and the settings.
        Raises ``OSError`` when the video cannot be stat'ed."""
        frames = [int(i) for i in np.asarray(frame_indices).reshape(-1)]
        return video_key(video_path, {"kind": KIND, "frame_indices": frames,
                                      "settings": self.settings.to_dict()})

    def shard_path(self, key: str) -> Path:
        """``root/ab/abcdef....npz`` for key ``abcdef...``."""
        return shard_path(self.root, key)

    def contains(self, video_path: str | Path, frame_indices: np.ndarray) -> bool:
        """Whether a shard exists for the clip (not verified); ``False`` for a missing video."""
        try:
            return self.shard_path(self.key(video_path, frame_indices)).is_file()
        except OSError:
            return False

    def get(self, video_path: str | Path, frame_indices: np.ndarray) -> CachedFeatures | None:
        """The clip's verified features, or ``None`` (a miss; corrupt shards are reported and
        deleted, see :func:`~motionmae.cache.shards.read_shard`)."""
        try:
            key = self.key(video_path, frame_indices)
        except OSError:
            return None
        return read_shard(self.shard_path(key), key, CachedFeatures.from_arrays,
                          "teacher feature cache", video_path)

    def put(self, video_path: str | Path, clip: CachedFeatures, key: str | None = None) -> Path:
        """Store one clip's features atomically; returns the shard. ``key``: taken before the
        video was read (default: now), as :meth:`~motionmae.motion.cache.TrackCache.put`."""
        key = key or self.key(video_path, clip.frame_indices)
        meta = {"version": FORMAT_VERSION, "key": key, "kind": KIND,
                "video": str(Path(video_path).resolve()), "settings": self.settings.to_dict()}
        path = self.shard_path(key)
        write_shard(path, clip.arrays(), meta, compress=False)
        return path


def geometry_footprints(geometry: Geometry, grid: TokenGrid, decoded_size: tuple[int, int],
                        cells: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Where each token row and column of a sample lies on a whole-frame feature map.

    Token column ``k`` covers clip pixels ``[k * patch, (k + 1) * patch]`` (area coordinates),
    which the flip mirrors and the crop box maps to decoded pixels, which map to feature
    cells by ``g / W`` (the map covers the decoded frame uniformly).

    Args:
        geometry: the sample's crop box (decoded pixels), output size and flip.
        grid: the student's token grid (``height == width == geometry.size``).
        decoded_size: ``(H, W)`` of the frames the crop box refers to, pixels.
        cells: ``(g_h, g_w)`` of the feature map.

    Returns:
        ``(row_lo, row_hi, col_lo, col_hi)``, ``[h]``, ``[h]``, ``[w]``, ``[w]`` float64 cells.
    """
    box = geometry.box
    height, width = decoded_size
    k = np.arange(grid.w, dtype=np.float64)
    x0, x1 = k * grid.patch, (k + 1) * grid.patch
    if geometry.flip:
        x0, x1 = grid.width - x1, grid.width - x0
    sx = cells[1] / width
    col_lo = (box.x + x0 * box.width / grid.width) * sx
    col_hi = (box.x + x1 * box.width / grid.width) * sx
    r = np.arange(grid.h, dtype=np.float64)
    sy = cells[0] / height
    row_lo = (box.y + r * grid.patch * box.height / grid.height) * sy
    row_hi = (box.y + (r + 1) * grid.patch * box.height / grid.height) * sy
    return row_lo, row_hi, col_lo, col_hi


def cached_features_for_geometry(clip: CachedFeatures, geometry: Geometry, grid: TokenGrid,
                                 mode: str, decoded_size: tuple[int, int] | None = None
                                 ) -> np.ndarray:
    """A cached clip's features on one sample's token grid.

    Args:
        clip: the cached clip (whole-frame feature maps).
        geometry: the sample's crop (in frames decoded at ``decoded_size``), size and flip.
        grid: the student's token grid.
        mode: ``bilinear`` or ``area`` (:func:`~motionmae.targets.teacher.footprint_weights`).
        decoded_size: ``(H, W)`` of the dataset's decoded frames (default: the cache's).

    Returns:
        ``[L, D]`` float32 in token order ``(t, h, w)``.
    """
    features = np.asarray(clip.features, np.float32)  # [t, g_h, g_w, D]
    t, g_h, g_w, dim = features.shape
    if t != grid.t:
        raise ValueError(f"cached clip has {t} teacher frames, the token grid {grid.t}")
    row_lo, row_hi, col_lo, col_hi = geometry_footprints(
        geometry, grid, decoded_size or clip.frame_size, (g_h, g_w))
    rows = footprint_weights(row_lo, row_hi, g_h, mode).astype(np.float32)
    cols = footprint_weights(col_lo, col_hi, g_w, mode).astype(np.float32)
    tokens = np.einsum("ih,jw,thwd->tijd", rows, cols, features, optimize=True)
    return tokens.reshape(grid.num_tokens, dim)


class TeacherFeaturesHook:
    """Sample hook adding ``teacher_features`` float16 ``[L, D]`` (the cached features mapped
    to the sample's token grid, :func:`cached_features_for_geometry`) and ``teacher_cached``, a
    Python ``bool`` (it stays on the host through collation, so the target picks the clips to
    compute online without a device synchronisation). A miss gives zeros and ``False``.

    Args:
        cache: the teacher feature cache.
        grid: the student's token grid.
        dim: teacher features per token ``D``.
        mode: ``bilinear`` or ``area``.
        decode_size: short side at which the dataset decodes (default: the cache's).

    Picklable; counts hits and misses of this process in :attr:`cached` / :attr:`misses`.
    """

    needs_dense_frames = False

    def __init__(self, cache: TeacherFeatureCache, grid: TokenGrid, dim: int, mode: str,
                 decode_size: int | None = None) -> None:
        self.cache = cache
        self.grid = grid
        self.dim = dim
        self.mode = mode
        self.decode_size = decode_size or cache.settings.decode_size
        self.cached = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"TeacherFeaturesHook({self.cache!r}, dim={self.dim}, mode={self.mode!r})"

    def __call__(self, sample: HookInput) -> dict[str, Any]:
        clip = self.cache.get(sample.entry.path, sample.frame_indices)
        if clip is None:
            self.misses += 1
            logger.debug("teacher feature cache miss: %s frames %s", sample.entry.path,
                         np.asarray(sample.frame_indices).tolist())
            return {"teacher_features": torch.zeros(self.grid.num_tokens, self.dim,
                                                    dtype=torch.float16),
                    "teacher_cached": False}
        self.cached += 1
        decoded = output_size(clip.source_size[0], clip.source_size[1], self.decode_size)
        values = cached_features_for_geometry(clip, sample.geometry, self.grid, self.mode,
                                              decoded)
        return {"teacher_features": torch.from_numpy(values.astype(np.float16)),
                "teacher_cached": True}


def teacher_features_hook(cfg: TeacherTargetConfig, cache_folder: str | Path,
                          grid: TokenGrid, decode_size: int) -> TeacherFeaturesHook:
    """The hook that reads the features of teacher ``cfg`` from the cache in
    ``cache_folder`` (the settings ``motionmae extract-teacher`` writes them under for the
    same run config)."""
    if cfg.path is None:
        raise ConfigError("targets.teacher.path: the cached teacher features are keyed by "
                          "the teacher folder; give its path")
    spec = read_teacher_spec(cfg.path)
    settings = TeacherCacheSettings.for_run(cfg, grid.tubelet, decode_size, spec)
    return TeacherFeaturesHook(TeacherFeatureCache(cache_folder, settings), grid,
                               spec.hidden_size, cfg.grid_resize, decode_size=decode_size)


def teacher_hooks(cfg: TeacherTargetConfig, ctx: TargetContext) -> list[TeacherFeaturesHook]:
    """Cached features when the run has a cache folder; else none (the target runs the
    teacher on the batch)."""
    if ctx.cache is None:
        return []
    return [teacher_features_hook(cfg, ctx.cache, ctx.grid, ctx.data.size)]


# Registered here rather than in teacher.py: the online target and the cache hook are both
# known only here (the cache reads teacher.py's geometry).
@register_target("teacher", TeacherTargetConfig, hooks=teacher_hooks, cacheable=True,
                 predicts_features=True, check=check_teacher_run)
def build_teacher_target(cfg: TeacherTargetConfig, ctx: TargetContext) -> TeacherTarget:
    return TeacherTarget(cfg, ctx.grid, ctx.data.mean, ctx.data.std)

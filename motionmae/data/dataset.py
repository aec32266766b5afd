"""``VideoDataset``: list entry -> decoded, sampled, augmented, normalised clip(s).

Per sample, in the worker process::

    decode the needed frames (once, at the working short side)
      -> geometric augmentation on uint8 frames [T, S, S, 3]
      -> clip transforms (training only; e.g. RandAugment, random erasing) on the uint8 frames
      -> sample hooks (see the same uint8 frames the model sees; add e.g. point tracks)
      -> normalise to float [C, T, S, S]

Randomness: each sample draws from its own generator seeded by ``(seed, epoch, index)``, so
a sample is the same whatever the worker count or order, and a resumed run reproduces it
(call :meth:`VideoDataset.set_epoch` before iterating each epoch; the epoch lives in shared
memory, so persistent workers see it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from motionmae.config_loading import check
from motionmae.data.config import DataConfig
from motionmae.data.hooks import HookInput, SampleHook
from motionmae.data.lists import VideoEntry, VideoList
from motionmae.data.transforms import (
    Geometry,
    apply_geometry,
    clip_span,
    eval_clips_indices,
    eval_geometries,
    fitting_stride,
    multi_clip_indices,
    needs_padding,
    normalize,
    sample_train_geometry,
)
from motionmae.data.video_info import VideoReadError
from motionmae.data.video_reader import VideoReader

logger = logging.getLogger(__name__)

FrameHook = Callable[[np.ndarray, VideoEntry], dict[str, torch.Tensor]]
"""The simple hook form: ``hook(frames [T, S, S, 3] uint8 read-only, entry) -> entries``.
Hooks that need more (frame indices, geometry, every frame of the span) implement
:class:`~motionmae.data.hooks.SampleHook` and receive a :class:`~motionmae.data.hooks.
HookInput`."""

Sample = dict[str, Any]

ClipTransform = Callable[[torch.Tensor, np.random.Generator], torch.Tensor]
"""``transform(frames [T, S, S, 3] uint8, rng) -> frames [T, S, S, 3] uint8``: a training
augmentation of a whole clip drawing from the sample's generator (e.g.
:class:`~motionmae.data.randaugment.RandAugment`)."""

# Paths already reported as bad by this process (each is logged once per process).
_REPORTED_BAD: set[str] = set()

# Rows of the short-clip counters: one per loader worker (mod this), so no two processes
# write the same row.
_COUNTER_ROWS = 64
# Columns: padded clips, stretched clips, all clips, frames of the shortest short video
# (0: none yet), its index.
_PADDED, _STRETCHED, _CLIPS, _SHORTEST, _SHORTEST_INDEX = range(5)


@dataclass(frozen=True)
class ShortClips:
    """Clips drawn from videos shorter than a clip's span, so far (all loader workers)."""

    padded: int
    stretched: int
    clips: int
    shortest_frames: int
    shortest_path: str | None


class VideoDataset(Dataset):
    """Clips from a :class:`VideoList`.

    Args:
        videos: the entries (``label`` ``None`` becomes -1).
        config: frames, stride, size, scales, flip, mean, std, num_sample, on_error,
            test_clips, test_crops are used.
        train: random clips with multi-scale crop (+ flip if ``config.flip``); otherwise the
            ``test_clips x test_crops`` evaluation views.
        seed: base seed of every per-sample generator.
        sample_hooks: run on each augmented uint8 clip, in order; their outputs are merged
            into the sample (keys must not collide). A :class:`~motionmae.data.hooks.
            SampleHook` (has ``needs_dense_frames``) gets a ``HookInput`` (frames, entry,
            frame indices, geometry in decoded pixels, and, if any hook sets
            ``needs_dense_frames``, every source frame of the clip's span under the same
            geometry); any other callable is a :data:`FrameHook` ``(frames, entry)``. Must be
            picklable for workers.
        decode_size: short side, in pixels, at which frames are decoded (default
            ``config.size``); crops are taken at this resolution, then resized to ``size``.
        decode_threads: decoder threads per video (1: the fastest inside workers).
        max_bad: with ``on_error="skip"``, how many bad videos in a row before giving up.
        clip_sampler: ``(num_frames, rng=) -> [frames]`` source indices of one training
            clip, replacing the uniform random start (e.g. the cache's
            :meth:`~motionmae.cache.layout.ClipLayout.sample`, which only draws clips the
            cache holds).
        clip_transforms: :data:`ClipTransform` s applied in order to each training clip after
            its geometric augmentation (before the hooks, which see their output). Must be
            picklable for workers.

    Each item (``dataset[i]``) is a sample dict, or a list of ``num_views`` of them when
    ``num_views > 1`` (training: ``config.num_sample`` clips of one decode; evaluation: the
    views, clip-major). A sample holds:

    * ``clip``: float32 ``[3, T, S, S]``, normalised;
    * ``label``, ``index``, ``bad_videos``: int64 scalars (``index`` is the video actually
      used, which differs from ``i`` when a bad video was replaced; ``bad_videos`` counts the
      bad videos skipped to produce the sample);
    * ``frame_indices``: int64 ``[T]`` source frame of each clip frame;
    * ``crop_box``: float32 ``[4]`` (x, y, width, height) of the crop in the video's coded
      pixels, and ``flipped``: bool scalar: :func:`~motionmae.data.transforms.
      transform_points` ``(points, CropBox(*crop_box), S, flipped)`` maps source-pixel
      points to clip pixels;
    * ``view``: int64 scalar (evaluation only): ``clip_index * test_crops + crop_index``;
    * ``bad_files`` (training only): str, one ``path<TAB>reason`` line per bad video skipped
      for this sample ("" when none);
    * the hooks' entries.

    Bad videos are replaced only when training with ``on_error="skip"``: evaluation raises
    :class:`VideoReadError` (a replaced video's features or prediction would be another's).
    Clips from videos shorter than the clip's span are padded or stretched
    (``config.short_videos``) and counted across workers: :meth:`short_clips`,
    :meth:`warn_short_clips`.
    """

    def __init__(
        self,
        videos: VideoList,
        config: DataConfig,
        train: bool,
        seed: int = 0,
        sample_hooks: Sequence[SampleHook | FrameHook] = (),
        *,
        decode_size: int | None = None,
        decode_threads: int = 1,
        max_bad: int = 20,
        clip_sampler: Callable[..., np.ndarray] | None = None,
        clip_transforms: Sequence[ClipTransform] = (),
    ) -> None:
        config.validate()
        if len(videos) == 0:
            raise ValueError("VideoDataset needs at least one video")
        self.videos = videos
        # The list is fixed: its length is looked up here once, not per sample.
        self._num_videos = len(videos)
        self.config = config
        self.train = train
        self.seed = seed
        self.sample_hooks = tuple(sample_hooks)
        self._dense = any(getattr(h, "needs_dense_frames", False) for h in self.sample_hooks)
        # Every-source-frame hooks (M3Video's trajectories) read a span in source order.
        check(not (train and self._dense and config.reverse > 0), "data.reverse",
              "clips played backward are not supported with a target that reads every source "
              "frame of the clip's span (m3traj); set data.reverse=0")
        self.decode_size = decode_size or config.size
        self.decode_threads = decode_threads
        self.max_bad = max_bad
        self.clip_sampler = clip_sampler
        self.clip_transforms = tuple(clip_transforms)
        self._epoch = torch.zeros((), dtype=torch.int64)
        self._short = torch.zeros((_COUNTER_ROWS, 5), dtype=torch.int64)
        self._short_warned = False
        try:
            self._epoch.share_memory_()
            self._short.share_memory_()
        except RuntimeError as error:  # no shared memory: epochs reach workers only on spawn
            logger.warning("epoch counter not in shared memory (%s); set_epoch will not reach "
                           "persistent workers", error)

    # -- epochs and sizes ----------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's randomness; call before iterating the loader for that epoch."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    @property
    def num_views(self) -> int:
        """Samples per item: ``num_sample`` when training, ``test_clips * test_crops`` else."""
        if self.train:
            return self.config.num_sample
        return self.config.test_clips * self.config.test_crops

    def __len__(self) -> int:
        return self._num_videos

    # -- items ---------------------------------------------------------------------------

    def __getitem__(self, index: int) -> Sample | list[Sample]:
        samples = self._samples(int(index), train=self.train)
        return samples[0] if len(samples) == 1 else samples

    def views(self, index: int) -> Sample:
        """All evaluation views of video ``index`` in one sample: ``clip`` ``[V, 3, T, S, S]``
        (``V = test_clips * test_crops``, clip-major), per-view entries stacked on a first
        ``V`` axis, ``label``/``index``/``bad_videos`` scalars."""
        samples = self._samples(int(index), train=False)
        stacked = collate_samples(samples)
        for key in ("label", "index", "bad_videos"):
            stacked[key] = stacked[key][0]
        return stacked

    def rng(self, index: int, attempt: int = 0) -> np.random.Generator:
        """The generator of sample ``index`` in the current epoch (``attempt``: replacement)."""
        return np.random.default_rng([self.seed, self.epoch, index, attempt])

    def _samples(self, index: int, train: bool) -> list[Sample]:
        if not 0 <= index < self._num_videos:
            raise IndexError(f"index {index} out of range for {self._num_videos} videos")
        used = index
        skipped: list[str] = []
        for bad in range(self.max_bad + 1):
            entry = self.videos.entries[used]
            rng = self.rng(index, bad)
            try:
                samples = self._load(used, entry, rng, train)
            except VideoReadError as error:
                if self.config.on_error != "skip" or not train:
                    # The list's line (1-based), not the loader's internal index.
                    raise VideoReadError(f"video {index + 1} of the list: {error}",
                                         path=error.path,
                                         reason=error.reason) from error
                _report_bad(entry, error)
                skipped.append(f"{entry.path}\t{_one_line(error.reason or str(error))}")
                used = int(np.random.default_rng([self.seed, self.epoch, index, bad, 1])
                           .integers(self._num_videos))
                continue
            for sample in samples:
                sample["bad_videos"] = torch.tensor(bad, dtype=torch.int64)
                if train:
                    sample["bad_files"] = "\n".join(skipped)
            return samples
        raise VideoReadError(f"video {index + 1} of the list: {self.max_bad + 1} bad videos in "
                             f"a row (last: {entry.path}); is the dataset readable?")

    def _load(self, index: int, entry: VideoEntry, rng: np.random.Generator,
              train: bool) -> list[Sample]:
        cfg = self.config
        with VideoReader(entry.path, threads=self.decode_threads) as reader:
            info = reader.info
            if train and self.clip_sampler is not None:
                clips = np.stack([self.clip_sampler(info.num_frames, rng=rng)
                                  for _ in range(cfg.num_sample)])
            elif train:
                clips = multi_clip_indices(info.num_frames, cfg.frames, cfg.stride, rng,
                                           cfg.num_sample, cfg.short_videos)
            else:
                clips = eval_clips_indices(info.num_frames, cfg.frames, cfg.stride,
                                           cfg.test_clips, cfg.short_videos)
            if train and cfg.reverse > 0:
                backward = rng.random(len(clips)) < cfg.reverse
                clips = np.where(backward[:, None], clips[:, ::-1], clips)
            self._count_clips(index, info.num_frames, len(clips))
            wanted = [clips.ravel()]
            if self._dense:  # every source frame of each clip's span
                wanted += [np.arange(c[0], c[-1] + 1) for c in clips]
            needed = np.unique(np.concatenate(wanted))  # one decode visit for all clips
            decoded = reader.read(needed, self.decode_size)
        height, width = decoded.shape[1:3]
        # Decoded pixels -> coded source pixels (for crop boxes reported in source pixels).
        to_source = (info.width / width, info.height / height)
        label = -1 if entry.label is None else entry.label
        samples = []
        for k, clip_frames in enumerate(clips):
            frames = decoded[np.searchsorted(needed, clip_frames)]
            dense = None
            if self._dense:
                span = np.arange(clip_frames[0], clip_frames[-1] + 1)
                dense = decoded[np.searchsorted(needed, span)]
            if train:
                geometries = [sample_train_geometry(height, width, cfg.size, cfg.scales,
                                                    cfg.flip, rng)]
            else:
                geometries = eval_geometries(height, width, cfg.size, cfg.test_crops)
            for c, geometry in enumerate(geometries):
                sample = self._sample(frames, dense, clip_frames, geometry, entry, to_source,
                                      rng if train else None)
                sample["frame_indices"] = torch.from_numpy(clip_frames.copy())
                sample["label"] = torch.tensor(label, dtype=torch.int64)
                sample["index"] = torch.tensor(index, dtype=torch.int64)
                if not train:
                    sample["view"] = torch.tensor(k * cfg.test_crops + c, dtype=torch.int64)
                samples.append(sample)
        return samples

    # -- short videos ----------------------------------------------------------------------

    def _count_clips(self, index: int, num_frames: int, count: int) -> None:
        cfg = self.config
        worker = torch.utils.data.get_worker_info()
        row = self._short[0 if worker is None else (worker.id + 1) % _COUNTER_ROWS]
        row[_CLIPS] += count
        if num_frames >= clip_span(cfg.frames, cfg.stride):
            return
        if needs_padding(num_frames, cfg.frames, cfg.stride, cfg.short_videos):
            row[_PADDED] += count
        else:
            row[_STRETCHED] += count
        if row[_SHORTEST] == 0 or num_frames < row[_SHORTEST]:
            row[_SHORTEST], row[_SHORTEST_INDEX] = num_frames, index

    def short_clips(self) -> ShortClips:
        """Counts of clips from short videos so far, over every process of the loader."""
        rows = self._short.clone()
        short = rows[rows[:, _SHORTEST] > 0]
        shortest, path = 0, None
        if len(short):
            row = short[int(short[:, _SHORTEST].argmin())]
            shortest = int(row[_SHORTEST])
            path = str(self.videos.entries[int(row[_SHORTEST_INDEX])].path)
        return ShortClips(padded=int(rows[:, _PADDED].sum()),
                          stretched=int(rows[:, _STRETCHED].sum()),
                          clips=int(rows[:, _CLIPS].sum()), shortest_frames=shortest,
                          shortest_path=path)

    def warn_short_clips(self) -> bool:
        """Log one warning (per dataset object) if clips came from short videos; ``True``
        once it has warned. Call from the process that owns the loader."""
        if self._short_warned:
            return True
        counts = self.short_clips()
        if counts.padded + counts.stretched == 0:
            return False
        cfg = self.config
        span = clip_span(cfg.frames, cfg.stride)
        fit = fitting_stride(counts.shortest_frames, cfg.frames, cfg.stride)
        if cfg.short_videos == "pad":
            what = (f"{counts.padded} of {counts.clips} clips so far came from videos shorter "
                    f"than a clip's span ({cfg.frames} frames x stride {cfg.stride} = {span} "
                    "source frames) and were padded by repeating their last frame")
            advice = (f"set data.short_videos=stretch to sample short videos at a smaller "
                      f"stride, or data.stride={fit} for every video")
        else:
            what = (f"{counts.stretched + counts.padded} of {counts.clips} clips so far came "
                    f"from videos shorter than a clip's span ({cfg.frames} frames x stride "
                    f"{cfg.stride} = {span} source frames) and were sampled at a smaller "
                    f"stride; {counts.padded} of them still repeat frames (the video has fewer "
                    f"than {cfg.frames} frames)")
            advice = f"data.frames={min(cfg.frames, counts.shortest_frames)} would fit it"
        logger.warning("%s; shortest: %s (%d frames; the largest stride that fits it: %d): %s",
                       what, counts.shortest_path, counts.shortest_frames, fit, advice)
        self._short_warned = True
        return True

    def _sample(self, frames: np.ndarray, dense: np.ndarray | None, clip_frames: np.ndarray,
                geometry: Geometry, entry: VideoEntry,
                to_source: tuple[float, float], rng: np.random.Generator | None) -> Sample:
        augmented = apply_geometry(frames, geometry)  # [T, S, S, 3] uint8
        if rng is not None:
            for transform in self.clip_transforms:
                augmented = transform(augmented, rng)
        sample: Sample = {}
        if self.sample_hooks:
            view = _read_only(augmented.numpy())
            hook_input = HookInput(
                frames=view, entry=entry, frame_indices=_read_only(clip_frames.copy()),
                geometry=geometry,
                dense_frames=None if dense is None else
                _read_only(apply_geometry(dense, geometry).numpy()))
            for hook in self.sample_hooks:
                rich = isinstance(hook, SampleHook)
                extra = hook(hook_input) if rich else hook(view, entry)  # type: ignore[call-arg]
                clash = set(extra) & (set(sample) | _RESERVED)
                if clash:
                    raise ValueError(f"sample hook {hook!r} returned reserved or duplicate "
                                     f"keys {sorted(clash)}")
                sample.update(extra)
        sample["clip"] = normalize(augmented, self.config.mean, self.config.std)
        box = geometry.box.scaled(*to_source)
        sample["crop_box"] = torch.tensor(box.as_tuple(), dtype=torch.float32)
        sample["flipped"] = torch.tensor(geometry.flip)
        return sample


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


_RESERVED = frozenset({"clip", "label", "index", "bad_videos", "bad_files", "frame_indices",
                       "crop_box", "flipped", "view"})


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _report_bad(entry: VideoEntry, error: VideoReadError) -> None:
    key = str(entry.path)
    if key not in _REPORTED_BAD:
        _REPORTED_BAD.add(key)
        logger.warning("skipping bad video %s: %s", entry.path, error.reason or error)


def collate_samples(batch: Sequence[Sample | Sequence[Sample]]) -> Sample:
    """DataLoader ``collate_fn``: flatten per-item lists of samples, stack each key.

    ``B`` items of ``V`` samples give tensors with a leading ``B * V`` axis (item-major);
    entries that are not tensors become lists.
    """
    flat: list[Sample] = []
    for item in batch:
        if isinstance(item, dict):
            flat.append(item)
        else:
            flat.extend(item)
    if not flat:
        raise ValueError("empty batch")
    keys = list(flat[0])
    for sample in flat[1:]:
        if set(sample) != set(keys):
            raise ValueError(f"samples have different keys: {sorted(keys)} vs {sorted(sample)}")
    out: Sample = {}
    for key in keys:
        values = [s[key] for s in flat]
        if all(isinstance(v, torch.Tensor) for v in values):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out

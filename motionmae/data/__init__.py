"""Data: video files -> decoded frames -> sampled, augmented, normalised clips.

* :mod:`~motionmae.data.video_reader`: PyAV probing and reading (seek + decode only the
  needed frames, at the working size); :mod:`~motionmae.data.video_info` (what a stream
  declares, ``VideoReadError``); :mod:`~motionmae.data.video_writer` (``write_video``).
* :mod:`~motionmae.data.transforms`: where a clip is taken from: which frame indices make
  it, geometric augmentation on uint8 frames (as explicit parameters), point mapping,
  normalisation.
* :mod:`~motionmae.data.lists`: ``path [label]`` and CSV list files.
* :mod:`~motionmae.data.dataset`: ``VideoDataset`` and ``collate_samples``.
* :mod:`~motionmae.data.hooks`: ``SampleHook``/``HookInput``, per-sample work in workers.
* :mod:`~motionmae.data.loader`: ``EpochSampler``, ``build_loader`` and ``set_epoch``.
* :mod:`~motionmae.data.stream`: ``BatchStream``, the training batches epoch after epoch.
* :mod:`~motionmae.data.synthetic`: the built-in synthetic motion dataset.
"""

from motionmae.data.dataset import FrameHook, VideoDataset, collate_samples
from motionmae.data.hooks import HookInput, SampleHook
from motionmae.data.lists import (
    ListFormatError,
    VideoEntry,
    VideoList,
    read_video_list,
    write_video_list,
)
from motionmae.data.loader import EpochSampler, build_loader, set_epoch
from motionmae.data.synthetic import CLASSES, SyntheticDataset, make_synthetic_dataset
from motionmae.data.transforms import (
    CropBox,
    Geometry,
    apply_geometry,
    clip_indices,
    denormalize,
    eval_clips_indices,
    eval_geometries,
    multi_clip_indices,
    multiscale_crop_box,
    normalize,
    sample_train_geometry,
    transform_points,
)
from motionmae.data.video_info import VideoInfo, VideoReadError
from motionmae.data.video_reader import VideoReader, probe_video, read_frames
from motionmae.data.video_writer import write_video

__all__ = [
    "CLASSES",
    "CropBox",
    "EpochSampler",
    "FrameHook",
    "Geometry",
    "HookInput",
    "ListFormatError",
    "SampleHook",
    "SyntheticDataset",
    "VideoDataset",
    "VideoEntry",
    "VideoInfo",
    "VideoList",
    "VideoReadError",
    "VideoReader",
    "apply_geometry",
    "build_loader",
    "clip_indices",
    "collate_samples",
    "denormalize",
    "eval_clips_indices",
    "eval_geometries",
    "make_synthetic_dataset",
    "multi_clip_indices",
    "multiscale_crop_box",
    "normalize",
    "probe_video",
    "read_frames",
    "read_video_list",
    "sample_train_geometry",
    "set_epoch",
    "transform_points",
    "write_video",
    "write_video_list",
]

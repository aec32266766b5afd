"""Moved: import from the module that defines the name (kept until its importers follow)."""

from motionmae.data.video_info import PathLike, VideoInfo, VideoReadError, output_size
from motionmae.data.video_reader import VideoReader, probe_video, read_frames
from motionmae.data.video_writer import write_video

__all__ = ["PathLike", "VideoInfo", "VideoReadError", "VideoReader", "output_size",
           "probe_video", "read_frames", "write_video"]

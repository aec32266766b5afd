"""``motionmae check-data`` on real footage plus a broken corpus: report rows and clean list."""

from __future__ import annotations

from pathlib import Path

import pytest
from datatest_helpers import make_audio_only

from motionmae.cli import main
from motionmae.data.check import check_video
from motionmae.data.lists import read_video_list
from motionmae.errors import DATA


def test_check_data_reports_every_video_and_writes_a_clean_list(
        footage: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = [footage / n for n in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")]
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((footage / "bikes.mp4").read_bytes()[:20000])
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "text.mp4").write_text("not a video\n")
    make_audio_only(tmp_path / "audio.mp4")
    broken = {"truncated.mp4": "", "empty.mp4": "empty file (0 bytes)",
              "text.mp4": "cannot be opened as media", "audio.mp4": "no video stream",
              "missing.mp4": "file not found"}
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p} {i}\n" for i, p in enumerate(good))
                       + "".join(f"{tmp_path / n} 9\n" for n in broken))
    out = tmp_path / "check"
    # 16 frames at stride 9 span 136 source frames: bikes (250) fits, the others do not.
    code = main(["check-data", str(listing), "--out", str(out), "--frames", "16", "--stride",
                 "9", "--workers", "2"])
    captured = capsys.readouterr()
    assert code == DATA
    assert "1 ok, 2 shorter than a clip, 5 bad" in captured.out
    rows = [line.split("\t") for line in (out / "report.tsv").read_text().splitlines()]
    assert rows[0] == ["path", "status", "frames", "width", "height", "fps", "detail"]
    status = {Path(r[0]).name: r for r in rows[1:]}
    assert len(status) == 8
    assert status["bikes.mp4"][1:5] == ["ok", "250", "640", "272"]
    assert status["bigbuckbunny.mp4"][1] == "short"
    assert status["bigbuckbunny.mp4"][6] == (
        "132 frames < clip span 136 (16 x stride 9): padded: 15 distinct frames then 1 copies "
        "of the last one at stride 9; the largest stride that fits: 8")
    for name, reason in broken.items():
        assert status[name][1] == "bad", status[name]
        assert status[name][6].startswith(f"{tmp_path / name}: ") and reason in status[name][6]
        assert str(tmp_path / name) in captured.err
    clean = read_video_list(out / "clean.txt")
    assert [(Path(e.path).name, e.label) for e in clean.entries] == [
        ("bikes.mp4", 0), ("bigbuckbunny.mp4", 1), ("carphone_pristine.mp4", 2)]


def test_stretch_says_the_stride_it_will_use(footage: Path) -> None:
    result = check_video(footage / "carphone_pristine.mp4", 16, 9, short="stretch")
    assert result.status == "short" and result.frames == 120
    assert result.detail.endswith("sampled at stride 7 instead of 9 (data.short_videos=stretch)")

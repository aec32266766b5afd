"""``motionmae check-data`` on real footage plus a broken corpus: report rows, a clean list that
reads back as the same videos and labels, clip settings from a run config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datatest_helpers import make_audio_only

from motionmae.cli import main
from motionmae.data.check import check_video
from motionmae.data.lists import read_video_list
from motionmae.data.video_writer import write_video
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


def test_clean_list_reads_back_as_the_same_videos_labels_and_classes(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Paths with spaces, unicode, quotes and '#'; class names with a space and unicode; a CSV
    # list; the only video of class "zoom in" is missing, so that class has no clean video.
    folder = tmp_path / "my videos"
    folder.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), np.uint8)
    names = {"a clip.mp4": "left turn", "vidéo #2.mp4": "café", "it's.mp4": "left turn"}
    for name in names:
        write_video(folder / name, frames)
    listing = tmp_path / "list.csv"
    rows = [*names.items(), ("gone.mp4", "zoom in")]
    listing.write_text("path,label\n" + "".join(f'"my videos/{n}",{label}\n'
                                                for n, label in rows), encoding="utf-8")
    out = tmp_path / "checked"
    assert main(["check-data", str(listing), "--out", str(out), "--frames", "4", "--stride",
                 "2", "--workers", "1"]) == DATA
    assert "3 ok, 0 shorter than a clip, 1 bad" in capsys.readouterr().out
    original, clean = read_video_list(listing), read_video_list(out / "clean.txt")
    assert clean.classes == original.classes == ["café", "left turn", "zoom in"]
    assert clean.entries == original.entries[:3]
    # Another command reads it: check-data on the clean list finds every video.
    assert main(["check-data", str(out / "clean.txt"), "--out", str(tmp_path / "again"),
                 "--frames", "4", "--stride", "2", "--workers", "1"]) == 0
    assert "3 ok, 0 shorter than a clip, 0 bad" in capsys.readouterr().out


def test_clip_settings_come_from_a_run_config(footage: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{footage / 'carphone_pristine.mp4'}\n")  # 120 frames
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data:\n  frames: 16\n  stride: 9\n"
                                     "  short_videos: stretch\nmodel:\n  size: tiny\n")
    out = tmp_path / "check"
    assert main(["check-data", str(listing), "--out", str(out), "--config",
                 str(run / "config.yaml"), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "clips of 16 frames at stride 9 (span 136 source frames, short videos: stretch)" \
        in printed
    row = (out / "report.tsv").read_text().splitlines()[1].split("\t")
    assert row[1] == "short" and row[6].endswith("sampled at stride 7 instead of 9 "
                                                 "(data.short_videos=stretch)")
    # A run folder stands for its config; a flag overrides the config's value.
    assert main(["check-data", str(listing), "--out", str(out), "--config", str(run),
                 "--stride", "7", "--workers", "1"]) == 0
    assert "clips of 16 frames at stride 7 (span 106" in capsys.readouterr().out
    assert (out / "report.tsv").read_text().splitlines()[1].split("\t")[1] == "ok"
    (run / "config.yaml").write_text("data:\n  frames: 0\n")
    assert main(["check-data", str(listing), "--out", str(out), "--config", str(run)]) == 2
    assert "data.frames: must be >= 1, got 0" in capsys.readouterr().err

"""List file formats, their error messages, and matching one list's labels to another's."""

from __future__ import annotations

from pathlib import Path

import pytest

from motionmae.cli import main
from motionmae.data.entries import LabelError, relabel
from motionmae.data.lists import (
    ListFormatError,
    VideoEntry,
    read_video_list,
    write_video_list,
)
from motionmae.errors import DATA


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_plain_list_with_int_labels_comments_and_relative_paths(tmp_path: Path) -> None:
    lst = _write(tmp_path / "lists" / "train.txt",
                 "# a comment\n\nclips/a.mp4 3\n  /abs/b.mp4   0  # trailing comment\n"
                 "../c.mp4 1\n")
    videos = read_video_list(lst)
    assert [e.path for e in videos.entries] == [
        tmp_path / "lists" / "clips" / "a.mp4", Path("/abs/b.mp4"),
        tmp_path / "lists" / ".." / "c.mp4"]
    assert [e.label for e in videos.entries] == [3, 0, 1]
    assert videos.classes is None
    assert videos.num_classes == 4


def test_plain_list_with_class_names_maps_in_sorted_order(tmp_path: Path) -> None:
    lst = _write(tmp_path / "l.txt", "a.mp4 walk\nb.mp4 run\nc.mp4 walk\n\"d e.mp4\" jump\n")
    videos = read_video_list(lst)
    assert videos.classes == ["jump", "run", "walk"]
    assert [e.label for e in videos.entries] == [2, 1, 2, 0]
    assert videos.entries[3].path == tmp_path / "d e.mp4"


def test_unlabelled_list(tmp_path: Path) -> None:
    videos = read_video_list(_write(tmp_path / "l.txt", "a.mp4\nb.mp4\n"))
    assert [e.label for e in videos.entries] == [None, None]
    assert videos.num_classes is None


def test_csv_with_header(tmp_path: Path) -> None:
    lst = _write(tmp_path / "train.csv", "video,label,extra\nx/a.mp4,dog,1\n\nb.mp4,cat,2\n")
    videos = read_video_list(lst)
    assert [e.path for e in videos.entries] == [tmp_path / "x" / "a.mp4", tmp_path / "b.mp4"]
    assert videos.classes == ["cat", "dog"]
    assert [e.label for e in videos.entries] == [1, 0]


def test_csv_detected_by_header_and_filename_column(tmp_path: Path) -> None:
    videos = read_video_list(_write(tmp_path / "l.txt", "filename,label\na.mp4,4\n"))
    assert videos.entries == [VideoEntry(tmp_path / "a.mp4", 4)]
    videos = read_video_list(_write(tmp_path / "p.csv", "path\na.mp4\n"))
    assert videos.entries == [VideoEntry(tmp_path / "a.mp4", None)]


def test_error_bad_int_label_names_file_and_line(tmp_path: Path) -> None:
    lst = _write(tmp_path / "l.txt", "# header comment\na.mp4 1\nb.mp4 x2\n")
    with pytest.raises(ListFormatError, match=r"l\.txt:3: bad label 'x2'.*line 2"):
        read_video_list(lst)


def test_error_negative_label(tmp_path: Path) -> None:
    with pytest.raises(ListFormatError, match=r"l\.txt:2: bad label '-1'"):
        read_video_list(_write(tmp_path / "l.txt", "a.mp4 0\nb.mp4 -1\n"))


def test_error_missing_label(tmp_path: Path) -> None:
    with pytest.raises(ListFormatError, match=r"l\.txt:3: missing label"):
        read_video_list(_write(tmp_path / "l.txt", "a.mp4 0\n\nb.mp4\n"))


def test_error_too_many_fields(tmp_path: Path) -> None:
    with pytest.raises(ListFormatError, match=r"l\.txt:1: expected 'path \[label\]', got 3"):
        read_video_list(_write(tmp_path / "l.txt", "my clip.mp4 3\n"))


def test_error_csv_without_path_column(tmp_path: Path) -> None:
    with pytest.raises(ListFormatError, match=r"l\.csv:1: CSV header has no path column"):
        read_video_list(_write(tmp_path / "l.csv", "name,label\na.mp4,1\n"))


def test_error_empty_list(tmp_path: Path) -> None:
    with pytest.raises(ListFormatError, match=r"l\.txt: empty list"):
        read_video_list(_write(tmp_path / "l.txt", "# nothing\n\n"))
    with pytest.raises(ListFormatError, match="empty list"):
        read_video_list(_write(tmp_path / "l.csv", "path,label\n"))


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    entries = [VideoEntry(tmp_path / "v" / "a b.mp4", 1), VideoEntry(Path("/x/c.mp4"), 0)]
    write_video_list(tmp_path / "out.txt", entries, classes=["left", "right"])
    videos = read_video_list(tmp_path / "out.txt")
    assert videos.entries == entries
    assert videos.classes == ["left", "right"]


def test_round_trip_quotes_paths_and_class_names_that_need_it(tmp_path: Path) -> None:
    entries = [VideoEntry(tmp_path / "v" / "my clip #1.mp4", 0),
               VideoEntry(Path("/x/vidéo 'b'.mp4"), 1), VideoEntry(Path("/x/c.mp4"), 2)]
    classes = ["Back 15som 05Twis FREE", "café", "it's"]
    write_video_list(tmp_path / "out.txt", entries, classes=classes)
    videos = read_video_list(tmp_path / "out.txt")
    assert videos.entries == entries
    assert videos.classes == classes


def test_relative_entries_outside_the_list_folder_are_written_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lists").mkdir()
    write_video_list(tmp_path / "lists" / "l.txt", [VideoEntry(Path("clips/a.mp4"), 0)])
    assert read_video_list(tmp_path / "lists" / "l.txt").entries == [
        VideoEntry(tmp_path / "clips" / "a.mp4", 0)]


def test_binary_list_is_one_line_naming_the_file(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    lst = _write(tmp_path / "l.txt", "a.mp4 0\n")
    lst.write_bytes(b"a.mp4 0\n\x89PNG\r\n\x1a\n\x00")
    with pytest.raises(ListFormatError, match=r"l\.txt: not a UTF-8 text file \(byte 0x89 at "
                                              r"offset 8\)"):
        read_video_list(lst)
    code = main(["check-data", str(lst), "--out", str(tmp_path / "out")])
    assert code == DATA
    assert capsys.readouterr().err == (f"motionmae check-data: error: {lst}: not a UTF-8 text "
                                       "file (byte 0x89 at offset 8); a list is text, one "
                                       "video per line\n")


def test_relabel_matches_names_and_keeps_integer_ids() -> None:
    # val numbers its names ["a", "c"]; train numbers ["a", "b", "c"]: c is 1 in val, 2 in train.
    assert relabel([1, 0, 1], ["a", "c"], ["a", "b", "c"], {0, 1, 2}, "val", "train") == \
        [2, 0, 2]
    assert relabel([2, 0], None, ["a", "b", "c"], {0, 1, 2}, "val", "train") == [2, 0]
    with pytest.raises(LabelError, match=r"^val: classes 'd', 'e' unknown to train \(its "
                                         r"classes: a, c\)$"):
        relabel([0, 1, 2], ["a", "d", "e"], ["a", "b", "c"], {0, 2}, "val", "train")
    with pytest.raises(LabelError, match=r"^val: labels 3, 4 unknown to train \(its classes: "
                                         r"0, 1, 2\)$"):
        relabel([4, 3], None, None, range(3), "val", "train")
    with pytest.raises(LabelError, match=r"^val: labels are class names \(a\) but train has "
                                         "integer labels without class names"):
        relabel([0], ["a"], None, {0}, "val", "train")

"""Dataset list files: which videos, with which labels.

Two formats, chosen by content (a ``.csv`` suffix, or a first line that is a CSV header with a
path column):

* plain text: one ``path [label]`` per line, whitespace separated (quote a path containing
  spaces: ``"my clip.mp4" 3``); blank lines and ``#`` comments are skipped;
* CSV with a header: a path column named ``path``, ``video`` or ``filename`` and an optional
  ``label`` column.

Relative paths are relative to the list file's folder. Labels are either all integers (kept)
or class names, mapped to integers in sorted name order (``VideoList.classes``); the first
label decides which. That numbering is the list's own: where two lists meet (train and val) or
a list meets a model, labels are matched by name (:func:`~motionmae.data.entries.relabel`).
Either every entry has a label or none has. A video listed again with the same label is kept
(repeating an entry is a way to weigh it) and the repeats are counted in one warning, as they
are more often a merge mistake; with a different label it is an error. Errors name the file
and line; a file that is not UTF-8 text is one too.

Integer labels can carry class names in a file beside the list, ``<list stem>.classes.txt``
(one name per line, line ``i`` = class ``i``), which :func:`write_video_list` writes with
``class_file=True``: unlike name labels, it keeps class ids that are not in sorted name order.

Where a list file is expected, a dataset spec ``FORMAT:PATH[,key=value...]`` names a dataset in
its released annotation format instead (Something-Something v2, Kinetics, UCF101, HMDB51,
FineGym, Diving48: see :mod:`motionmae.data.formats`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from motionmae.data.entries import ListFormatError, VideoEntry, VideoList, read_list_text

PATH_COLUMNS = ("path", "video", "filename")
LABEL_COLUMN = "label"

logger = logging.getLogger(__name__)


def read_video_list(path: str | Path) -> VideoList:
    """Parse a plain or CSV list file (see the module docstring), or read a dataset spec
    ``FORMAT:PATH[,key=value...]`` (:func:`motionmae.data.formats.read_dataset`, whose errors
    it raises) when ``path`` is no existing file and has a ``FORMAT:`` prefix.

    Raises:
        ListFormatError: not UTF-8 text, unreadable structure, bad or missing label, missing
            path column, or no entries; the message names ``path`` and the line number.
        FileNotFoundError: ``path`` does not exist.
    """
    if not Path(path).exists():
        # Imported here: only a dataset spec needs the format readers.
        from motionmae.data.formats import looks_like_spec, read_dataset

        if looks_like_spec(str(path)):
            return read_dataset(str(path))
    path = Path(path)
    text = read_list_text(path)
    rows = _read_csv(path, text) if _is_csv(path, text) else _read_plain(path, text)
    if not rows:
        raise ListFormatError(f"{path}: empty list (no video entries)")
    videos = _build(path, rows)
    class_file = classes_path(path)
    if videos.classes is None and videos.num_classes is not None and class_file.is_file():
        videos.classes = _read_class_file(class_file, videos.num_classes)
    return videos


def classes_path(path: str | Path) -> Path:
    """The class-name file of list ``path``: ``train.txt`` -> ``train.classes.txt``."""
    return Path(path).with_suffix(".classes.txt")


def _read_class_file(path: Path, needed: int) -> list[str]:
    names = [line.strip() for line in read_list_text(path).splitlines()]
    while names and not names[-1]:
        names.pop()
    for number, name in enumerate(names, start=1):
        if not name:
            raise ListFormatError(f"{path}:{number}: empty class name")
    if len(names) < needed:
        raise ListFormatError(f"{path}: {len(names)} class names, but the list beside it has "
                              f"label {needed - 1}")
    return names


def write_video_list(path: str | Path, entries: Sequence[VideoEntry],
                     classes: Sequence[str] | None = None, *, class_file: bool = False) -> None:
    """Write a plain list: paths relative to the list's folder when inside it, labels as class
    names when ``classes`` is given, else integers; paths and names quoted where they need it
    (spaces, quotes, ``#``), so that :func:`read_video_list` reads back the same entries.

    With ``class_file``, labels stay integers and ``classes`` goes to the list's
    :func:`classes_path` file (the way to keep ids that are not in sorted name order). A
    class file left from an earlier list of the same name is removed otherwise.
    """
    path = Path(path)
    if class_file and classes is not None:
        classes_path(path).write_text("\n".join(classes) + "\n", encoding="utf-8")
    else:
        classes_path(path).unlink(missing_ok=True)
    if class_file:
        classes = None
    lines = []
    for entry in entries:
        try:
            name = entry.path.resolve().relative_to(path.parent.resolve()).as_posix()
        except ValueError:  # elsewhere: absolute (a relative path would be read from here)
            name = os.path.abspath(entry.path)
        fields = [shlex.quote(name)]
        if entry.label is not None:
            fields.append(shlex.quote(classes[entry.label]) if classes is not None
                          else str(entry.label))
        lines.append(" ".join(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- parsing ------------------------------------------------------------------------------

_Row = tuple[int, str, str | None]  # line number, path text, label text


def _is_csv(path: Path, text: str) -> bool:
    if path.suffix.lower() == ".csv":
        return True
    first = next((line for line in text.splitlines() if line.strip()), "")
    header = [c.strip().lower() for c in first.split(",")]
    return len(header) > 1 and any(c in PATH_COLUMNS for c in header)


def _read_plain(path: Path, text: str) -> list[_Row]:
    rows: list[_Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = _split_fields(path, number, stripped)
        if not fields:
            continue
        if len(fields) > 2:
            raise ListFormatError(
                f"{path}:{number}: expected 'path [label]', got {len(fields)} fields "
                f"(quote paths that contain spaces)")
        rows.append((number, fields[0], fields[1] if len(fields) == 2 else None))
    return rows


def _split_fields(path: Path, number: int, line: str) -> list[str]:
    """Whitespace-separated fields up to a ``#`` comment; shell quoting only when quoted (so
    backslashes in unquoted paths survive)."""
    if '"' in line or "'" in line:
        try:
            return shlex.split(line, comments=True)
        except ValueError as error:
            raise ListFormatError(f"{path}:{number}: cannot parse line ({error})") from error
    fields = line.split()
    cut = next((i for i, f in enumerate(fields) if f.startswith("#")), len(fields))
    return fields[:cut]


def _read_csv(path: Path, text: str) -> list[_Row]:
    reader = csv.DictReader(io.StringIO(text))
    columns = {(name or "").strip().lower(): name for name in (reader.fieldnames or [])}
    path_column = next((columns[c] for c in PATH_COLUMNS if c in columns), None)
    if path_column is None:
        raise ListFormatError(
            f"{path}:1: CSV header has no path column (one of {', '.join(PATH_COLUMNS)}); "
            f"columns: {list(columns)}")
    label_column = columns.get(LABEL_COLUMN)
    rows: list[_Row] = []
    for record in reader:
        number = reader.line_num
        video = (record.get(path_column) or "").strip()
        label = (record.get(label_column) or "").strip() if label_column else ""
        if not video:
            if label or any((v or "").strip() for v in record.values() if isinstance(v, str)):
                raise ListFormatError(f"{path}:{number}: empty path")
            continue
        rows.append((number, video, label or None))
    return rows


def _build(path: Path, rows: list[_Row]) -> VideoList:
    labelled = [r for r in rows if r[2] is not None]
    if labelled and len(labelled) != len(rows):
        number = next(r[0] for r in rows if r[2] is None)
        first = labelled[0][0]
        raise ListFormatError(f"{path}:{number}: missing label (line {first} has one; "
                              "label every entry or none)")
    # The first label decides: integers (then every label must be one) or class names.
    classes: list[str] | None = None
    mapping: dict[str, int] | None = None
    if labelled and not _is_int(labelled[0][2]):
        classes = sorted({r[2] for r in labelled if r[2] is not None})
        mapping = {name: i for i, name in enumerate(classes)}
    entries = []
    seen: dict[str, tuple[int, str | None]] = {}  # normalised path -> (line, label text)
    repeats: list[tuple[int, int]] = []
    for number, video, label_text in rows:
        label: int | None = None
        if label_text is not None:
            if mapping is not None:
                label = mapping[label_text]
            else:
                if not _is_int(label_text):
                    raise ListFormatError(
                        f"{path}:{number}: bad label {label_text!r}: not an integer, but line "
                        f"{labelled[0][0]} has integer label {labelled[0][2]!r}")
                label = int(label_text)
                if label < 0:
                    raise ListFormatError(
                        f"{path}:{number}: bad label {label_text!r}: must be >= 0")
        video_path = Path(video).expanduser()
        if not video_path.is_absolute():
            video_path = path.parent / video_path
        key = os.path.normpath(video_path)
        if key in seen:
            first, first_label = seen[key]
            if first_label != label_text:
                raise ListFormatError(
                    f"{path}:{number}: {video} is listed again with label {label_text!r}, but "
                    f"line {first} gives it {first_label!r}: one label per video")
            repeats.append((number, first))
        seen.setdefault(key, (number, label_text))
        entries.append(VideoEntry(path=video_path, label=label))
    if repeats:
        logger.warning("%s: %d duplicate entries, kept (e.g. line %d repeats line %d)",
                       path, len(repeats), *repeats[0])
    return VideoList(entries=entries, classes=classes)


def _is_int(text: str | None) -> bool:
    if text is None:
        return False
    try:
        int(text)
    except ValueError:
        return False
    return True

"""Kinetics-400/600/700: the CSV annotation files.

Columns (a header names them; order free, extra columns such as ``is_cc`` ignored)::

    label,youtube_id,time_start,time_end,split[,is_cc]
    abseiling,0347ZoDXyP0,14,24,train

The test files of some releases have no ``label`` column: their entries are unlabelled. The
video of a row is ``<youtube_id>_<time_start:06d>_<time_end:06d>.mp4``, either directly in the
video folder (the layout of the CVDF downloads) or in a per-class subfolder named like the
class, with spaces kept or replaced by underscores (the layouts of the crawler scripts).

Classes are the sorted label names of the file, or the lines of ``classes=FILE`` (one name per
line, line ``i`` = class ``i``) when a subset of rows must keep the full dataset's ids.
Videos taken down from YouTube are the norm for Kinetics: use ``missing=skip``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

from motionmae.data.formats._common import (
    AnnotationError,
    DatasetFormat,
    Parsed,
    Row,
    read_text,
    text_lines,
)

REQUIRED = ("youtube_id", "time_start", "time_end")


def clip_name(youtube_id: str, start: int, end: int, suffix: str = ".mp4") -> str:
    """``<youtube_id>_<start:06d>_<end:06d>.mp4``, the file name of a Kinetics clip."""
    return f"{youtube_id}_{start:06d}_{end:06d}{suffix}"


def _seconds(text: str, path: Path, line: int, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{path}:{line}: {column} {text!r} is not a number") from None
    if value < 0 or value != int(value):
        raise AnnotationError(f"{path}:{line}: {column} {text!r} must be a whole number of "
                              "seconds >= 0")
    return int(value)


def _class_file(path: Path) -> list[str]:
    names = [name for _, name in text_lines(path)]
    if not names:
        raise AnnotationError(f"{path}: no class names")
    return names


def parse(annotation: Path, videos: Path, options: Mapping[str, str]) -> Parsed:
    reader = csv.DictReader(io.StringIO(read_text(annotation)))
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    absent = [c for c in REQUIRED if c not in columns]
    if absent:
        raise AnnotationError(f"{annotation}:1: CSV header lacks {', '.join(absent)} (columns: "
                              f"{list(columns)}; expected label,youtube_id,time_start,"
                              "time_end,split)")
    label_column = columns.get("label")
    records = []
    for record in reader:
        line = reader.line_num
        if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
            continue
        if None in record:  # more fields than the header
            raise AnnotationError(f"{annotation}:{line}: more fields than the header has")
        youtube_id = (record[columns["youtube_id"]] or "").strip()
        if not youtube_id:
            raise AnnotationError(f"{annotation}:{line}: empty youtube_id")
        start = _seconds((record[columns["time_start"]] or "").strip(), annotation, line,
                         "time_start")
        end = _seconds((record[columns["time_end"]] or "").strip(), annotation, line,
                       "time_end")
        label = (record[label_column] or "").strip() if label_column else ""
        if label_column and not label:
            raise AnnotationError(f"{annotation}:{line}: empty label")
        records.append((line, youtube_id, start, end, label or None))
    classes = None
    if label_column:
        if options.get("classes"):
            classes = _class_file(Path(options["classes"]).expanduser())
        else:
            classes = sorted({r[4] for r in records if r[4] is not None})
    index = {name: i for i, name in enumerate(classes or [])}
    folders: dict[str, Path | None] = {}
    rows = []
    for line, youtube_id, start, end, label in records:
        name = clip_name(youtube_id, start, end)
        class_id = None
        folder = None
        if label is not None:
            if label not in index:
                raise AnnotationError(f"{annotation}:{line}: label {label!r} is not in the "
                                      f"class file {options.get('classes')}")
            class_id = index[label]
            if label not in folders:
                folders[label] = _class_folder(videos, label)
            folder = folders[label]
        # The per-class location first when the class has a folder: a missing video is
        # then reported where the dataset's layout expects it.
        candidates = (folder / name, videos / name) if folder else (videos / name,)
        rows.append(Row(line, candidates, class_id))
    return Parsed(rows, classes)


def _class_folder(videos: Path, label: str) -> Path | None:
    """The class's subfolder of ``videos`` (named as the class, or with ``_`` for spaces)."""
    for name in (label, label.replace(" ", "_")):
        if (videos / name).is_dir():
            return videos / name
    return None


FORMAT = DatasetFormat(
    name="kinetics",
    parse=parse,
    video_dirs=("{stem}", "videos"),
    options={"classes": None},
)

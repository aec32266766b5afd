"""Pieces shared by the dataset-format readers (internal): errors, line-numbered JSON and text
reading, finding video files, and turning parsed rows into a :class:`VideoList`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motionmae.data.entries import ListFormatError, VideoEntry, VideoList, read_list_text

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
"""Suffixes tried when the annotated file name is absent but the same stem exists (a dataset
re-encoded to another container keeps its names)."""

MISSING_SHOWN = 5  # how many missing paths an error or warning names


class AnnotationError(ListFormatError):
    """A dataset annotation file is malformed; the message names the file and line."""


class MissingVideosError(FileNotFoundError):
    """Annotated videos are not on disk; ``missing`` holds their expected paths.

    Raised by a reader with ``missing=raise`` (the default) when any video is absent, and with
    ``missing=skip`` when every video is.
    """

    def __init__(self, message: str, missing: Sequence[Path], total: int) -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.total = total

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.missing, self.total))


@dataclass(frozen=True)
class Row:
    """One annotated video: where it was declared (``line`` of the annotation file), where
    it may be (``candidates``, the expected location first) and its label."""

    line: int
    candidates: tuple[Path, ...]
    label: int | None


@dataclass
class Parsed:
    """A reader's result before the videos are looked up."""

    rows: list[Row]
    classes: list[str] | None


# -- reading annotation files ----------------------------------------------------------------


def read_text(path: Path) -> str:
    """The file's text (a UTF-8 BOM dropped); ``FileNotFoundError`` names a missing file,
    :class:`ListFormatError` one that is not UTF-8 text."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    return read_list_text(path)


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-blank lines (CRLF files are common)."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        stripped = line.strip()
        if stripped:
            yield number, stripped


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _decode_error(path: Path, error: json.JSONDecodeError) -> AnnotationError:
    return AnnotationError(f"{path}:{error.lineno}: invalid JSON ({error.msg}, column "
                           f"{error.colno})")


def _container(path: Path, text: str, opening: str) -> int:
    """Position after the top-level ``opening`` bracket (after checking the file is JSON)."""
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise _decode_error(path, error) from error
    start = _skip_space(text, 0)
    if not text.startswith(opening, start):
        kind = "list" if opening == "[" else "object"
        raise AnnotationError(f"{path}:{_line_at(text, start)}: expected a JSON {kind} at the "
                              "top level")
    return start + 1


def json_array(path: Path) -> list[tuple[int, Any]]:
    """Items of a top-level JSON list, each with the line it starts on."""
    text = read_text(path)
    position = _container(path, text, "[")
    decoder = json.JSONDecoder()
    items = []
    while True:
        position = _skip_space(text, position)
        if text.startswith("]", position):
            return items
        item, end = decoder.raw_decode(text, position)
        items.append((_line_at(text, position), item))
        position = _skip_space(text, end)
        if text.startswith(",", position):
            position += 1


def json_object(path: Path) -> list[tuple[int, str, Any]]:
    """``(line, key, value)`` of a top-level JSON object, in file order."""
    text = read_text(path)
    position = _container(path, text, "{")
    decoder = json.JSONDecoder()
    items = []
    while True:
        position = _skip_space(text, position)
        if text.startswith("}", position):
            return items
        key, end = decoder.raw_decode(text, position)
        colon = _skip_space(text, end)
        value, end = decoder.raw_decode(text, _skip_space(text, colon + 1))
        items.append((_line_at(text, position), key, value))
        position = _skip_space(text, end)
        if text.startswith(",", position):
            position += 1


def parse_int(text: str, path: Path, line: int, what: str) -> int:
    """``int(text)``, or an :class:`AnnotationError` naming the file, line and field."""
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(f"{path}:{line}: {what} {text!r} is not an integer") from None


def check_class_ids(path: Path, lines: Sequence[int], ids: Sequence[int], base: int) -> None:
    """Class ids must be ``base, base + 1, ...`` with no gap or repeat (in any order)."""
    seen: dict[int, int] = {}
    for line, class_id in zip(lines, ids, strict=True):
        if class_id in seen:
            raise AnnotationError(f"{path}:{line}: class id {class_id} repeats line "
                                  f"{seen[class_id]}")
        seen[class_id] = line
    expected = set(range(base, base + len(ids)))
    if set(ids) != expected:
        gap = min(expected - set(ids))
        raise AnnotationError(f"{path}: class ids must run from {base} to "
                              f"{base + len(ids) - 1} without gaps; {gap} is missing")


# -- finding videos --------------------------------------------------------------------------


class VideoFinder:
    """Looks up files through one listing per folder (much faster than a ``stat`` per video
    on network file systems), falling back to the same stem with another video suffix."""

    def __init__(self) -> None:
        self._listings: dict[Path, tuple[set[str], dict[str, str]]] = {}

    def _listing(self, folder: Path) -> tuple[set[str], dict[str, str]]:
        """File names directly in ``folder``, and ``{stem: name}`` of its video files (the
        first name in sorted order when a stem has several)."""
        listing = self._listings.get(folder)
        if listing is None:
            try:
                with os.scandir(folder) as entries:
                    names = sorted(e.name for e in entries if e.is_file())
            except (FileNotFoundError, NotADirectoryError):
                names = []
            stems: dict[str, str] = {}
            for name in names:
                stem, suffix = os.path.splitext(name)
                if suffix.lower() in VIDEO_SUFFIXES:
                    stems.setdefault(stem, name)
            listing = self._listings[folder] = (set(names), stems)
        return listing

    def find(self, candidates: Sequence[Path]) -> Path | None:
        """The first candidate that exists, else the first candidate's stem with another
        video suffix (in the first folder that has one), else ``None``."""
        for path in candidates:
            if path.name in self._listing(path.parent)[0]:
                return path
        for path in candidates:
            other = self._listing(path.parent)[1].get(path.stem)
            if other is not None:
                return path.with_name(other)
        return None


def build_list(parsed: Parsed, source: str, missing: str) -> VideoList:
    """Look every row's video up; report the missing ones (see :class:`MissingVideosError`).

    ``missing``: ``raise`` (any missing video is an error) or ``skip`` (leave them out, with a
    warning naming the count and the first few).
    """
    if not parsed.rows:
        raise AnnotationError(f"{source}: no videos annotated")
    finder = VideoFinder()
    entries: list[VideoEntry] = []
    absent: list[Path] = []
    for row in parsed.rows:
        found = finder.find(row.candidates)
        if found is None:
            absent.append(row.candidates[0])
        else:
            entries.append(VideoEntry(path=found, label=row.label))
    if absent:
        total = len(parsed.rows)
        shown = ", ".join(str(p) for p in absent[:MISSING_SHOWN])
        more = ", ..." if len(absent) > MISSING_SHOWN else ""
        summary = f"{len(absent)} of {total} annotated videos are missing ({shown}{more})"
        if missing == "raise":
            raise MissingVideosError(f"{source}: {summary}; add ',missing=skip' to the dataset "
                                     "spec to leave them out", absent, total)
        if not entries:
            raise MissingVideosError(f"{source}: {summary}: none found; is the video folder "
                                     "right (option videos=DIR)?", absent, total)
        logger.warning("%s: %s; leaving them out (missing=skip)", source, summary)
    return VideoList(entries=entries, classes=parsed.classes)


# -- the description of a format ---------------------------------------------------------------


ParseFn = Callable[[Path, Path, Mapping[str, str]], Parsed]
"""``parse(annotation, videos, options) -> Parsed``: read the annotation file (or folder),
with ``videos`` the folder the videos are under and ``options`` the format's own options
(defaults filled in)."""


@dataclass(frozen=True)
class DatasetFormat:
    """One annotation format.

    Attributes:
        name: the spec prefix (``ssv2`` in ``ssv2:train.json``).
        parse: see :data:`ParseFn`.
        video_dirs: conventional names of the video folder, looked for beside the annotation
            file and one level up when the spec has no ``videos=``; ``{stem}`` stands for the
            annotation file's stem.
        options: the format's own options and their defaults (``None``: no default).
        choices: the allowed values of options that have a fixed set.
        selectors: options that choose which entries are read (they name the output list).
        annotation_is_dir: the annotation path is a folder (HMDB51's split files).
    """

    name: str
    parse: ParseFn
    video_dirs: tuple[str, ...]
    options: Mapping[str, str | None] = field(default_factory=dict)
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    selectors: tuple[str, ...] = ()
    annotation_is_dir: bool = False

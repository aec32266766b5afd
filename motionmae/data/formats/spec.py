"""Dataset specs: a dataset in its released annotation format, named by one string.

``FORMAT:PATH[,key=value...]``, e.g.::

    ssv2:/data/ssv2/labels/something-something-v2-train.json
    kinetics:/data/k400/annotations/train.csv,videos=/data/k400/train,missing=skip
    ucf101:/data/ucf101/ucfTrainTestlist/testlist01.txt
    hmdb51:/data/hmdb51/testTrainMulti_7030_splits,split=2,subset=test

Every option a spec can carry:

* ``videos=DIR``: the folder the videos are under (default: the format's conventional folder
  name, looked for beside the annotation file and one level up);
* ``missing=raise|skip``: what a video that is not on disk does (default ``raise``: an error
  naming how many and the first few; ``skip``: left out, with a warning);
* the format's own (see each module: ``labels=``, ``classes=``, ``vocab=``, ``split=``,
  ``subset=``).

Relative paths are relative to the working directory. A spec goes wherever a list file does
(``data.train``, ``--data``, ``--train``, ``--val``): :func:`~motionmae.data.lists.
read_video_list` hands it here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from motionmae.data.entries import VideoList
from motionmae.data.formats import diving48, finegym, hmdb51, kinetics, ssv2, ucf101
from motionmae.data.formats._common import DatasetFormat, build_list
from motionmae.errors import DataError

logger = logging.getLogger(__name__)

FORMATS: dict[str, DatasetFormat] = {
    f.name: f for f in (ssv2.FORMAT, kinetics.FORMAT, ucf101.FORMAT, hmdb51.FORMAT,
                        finegym.FORMAT, diving48.FORMAT)
}
COMMON_OPTIONS: dict[str, str | None] = {"videos": None, "missing": "raise"}
COMMON_CHOICES = {"missing": ("raise", "skip")}

_SPEC = re.compile(r"^(?P<format>[A-Za-z][A-Za-z0-9_]+):(?P<rest>.*)$", re.DOTALL)


class DatasetSpecError(DataError, ValueError):
    """A dataset spec is malformed: unknown format or option, bad value; names the spec."""


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed ``FORMAT:PATH[,key=value...]``; ``options`` holds the given options only."""

    format: str
    path: Path
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def spec_format(self) -> DatasetFormat:
        return FORMATS[self.format]

    def option(self, name: str) -> str | None:
        """The given value of option ``name``, else its default."""
        defaults = {**COMMON_OPTIONS, **self.spec_format.options}
        return self.options.get(name, defaults[name])

    @property
    def name(self) -> str:
        """A file-name stem for this dataset: the annotation's stem plus the values of the
        options that select entries (``testTrainMulti_7030_splits_split1_train``)."""
        parts = [self.path.stem if not self.spec_format.annotation_is_dir else self.path.name]
        parts += [f"{key}{self.option(key)}" if key == "split" else str(self.option(key))
                  for key in self.spec_format.selectors]
        return "_".join(parts)

    def __str__(self) -> str:
        options = "".join(f",{key}={value}" for key, value in self.options.items())
        return f"{self.format}:{self.path}{options}"


def looks_like_spec(text: str) -> bool:
    """Whether ``text`` has the ``FORMAT:`` prefix of a spec (known format or not; a one-letter
    prefix is a Windows drive, not a format)."""
    return _SPEC.match(text) is not None


def parse_spec(text: str) -> DatasetSpec:
    """Parse ``FORMAT:PATH[,key=value...]`` and check the format, option names and values.

    Raises:
        DatasetSpecError: the message names the spec and what is wrong with it.
    """
    match = _SPEC.match(text)
    if match is None:
        raise DatasetSpecError(f"{text!r}: expected FORMAT:PATH[,key=value...] with FORMAT "
                               f"one of {sorted(FORMATS)}")
    name = match["format"].lower()
    if name not in FORMATS:
        raise DatasetSpecError(f"{text!r}: unknown dataset format {match['format']!r}; known: "
                               f"{', '.join(sorted(FORMATS))}")
    path_text, *option_texts = match["rest"].split(",")
    if not path_text.strip():
        raise DatasetSpecError(f"{text!r}: no annotation path after '{match['format']}:'")
    fmt = FORMATS[name]
    known = {**COMMON_OPTIONS, **fmt.options}
    choices = {**COMMON_CHOICES, **fmt.choices}
    options: dict[str, str] = {}
    for option in option_texts:
        key, sep, value = option.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise DatasetSpecError(f"{text!r}: option {option!r} is not key=value (paths with "
                                   "commas cannot be used in a spec)")
        if key not in known:
            raise DatasetSpecError(f"{text!r}: unknown option {key!r} for {name}; known: "
                                   f"{', '.join(sorted(known))}")
        if key in options:
            raise DatasetSpecError(f"{text!r}: option {key!r} given twice")
        if key in choices and value not in choices[key]:
            raise DatasetSpecError(f"{text!r}: {key}={value!r} must be one of "
                                   f"{', '.join(choices[key])}")
        options[key] = value
    return DatasetSpec(name, Path(path_text.strip()).expanduser(), options)


def video_folder(spec: DatasetSpec) -> Path:
    """``videos=`` if given, else the first of the format's conventional folders found beside
    the annotation path or one level up."""
    given = spec.option("videos")
    if given:
        folder = Path(given).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{spec}: video folder {folder} does not exist")
        return folder.absolute()
    fmt = spec.spec_format
    base = spec.path if fmt.annotation_is_dir else spec.path.parent
    tried = []
    for parent in (base, base.parent):
        for name in fmt.video_dirs:
            folder = parent / name.replace("{stem}", spec.path.stem)
            if folder.is_dir():
                return folder.absolute()
            tried.append(str(folder))
    raise FileNotFoundError(f"{spec}: no video folder given and none of the usual ones exists "
                            f"({', '.join(tried)}); add ',videos=DIR'")


def read_dataset(spec: str | DatasetSpec) -> VideoList:
    """The videos, labels and class names of a dataset spec.

    Raises:
        DatasetSpecError: the spec itself is malformed.
        FileNotFoundError: the annotation file, a class file or the video folder is missing.
        AnnotationError: an annotation file is malformed (names the file and line).
        MissingVideosError: annotated videos are not on disk (``missing=raise``; with
            ``missing=skip`` only when none is).
    """
    if isinstance(spec, str):
        spec = parse_spec(spec)
    fmt = spec.spec_format
    if fmt.annotation_is_dir and not spec.path.is_dir():
        raise FileNotFoundError(f"{spec}: {spec.path} is not a folder ({fmt.name} wants the "
                                "folder of its split files)")
    if not fmt.annotation_is_dir and not spec.path.is_file():
        raise FileNotFoundError(f"{spec}: annotation file {spec.path} not found")
    options = {key: spec.option(key) or "" for key in fmt.options}
    parsed = fmt.parse(spec.path, video_folder(spec), options)
    videos = build_list(parsed, f"{fmt.name} {spec.path}", spec.option("missing") or "raise")
    logger.info("%s: %d videos%s", spec, len(videos),
                f", {len(videos.classes)} classes" if videos.classes is not None else "")
    return videos


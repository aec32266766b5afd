"""Diving48: the V2 JSON annotation lists and the vocabulary.

Files as released::

    Diving48_V2_train.json     [{"vid_name": "-mmq0PT-u8k_00155", "label": 0,
    Diving48_V2_test.json        "start_frame": 0, "end_frame": 76}, ...]
    Diving48_vocab.json        [["Back", "15som", "05Twis", "FREE"], ...]   (class i = item i)
    rgb/-mmq0PT-u8k_00155.mp4

A class name is its vocabulary entry's words joined by spaces (``"Back 15som 05Twis FREE"``).
The vocabulary is looked for beside the list, or given with ``vocab=FILE``; without one the
entries keep their labels and have no class names. ``start_frame``/``end_frame`` span the
whole released clip and are not needed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from motionmae.data.formats._common import AnnotationError, DatasetFormat, Parsed, Row, json_array

logger = logging.getLogger(__name__)

VOCAB_FILE = "Diving48_vocab.json"


def read_vocab(path: Path) -> list[str]:
    """Class names from ``Diving48_vocab.json`` (a list of word lists)."""
    classes = []
    for line, item in json_array(path):
        if not isinstance(item, list) or not item or not all(isinstance(w, str) for w in item):
            raise AnnotationError(f"{path}:{line}: expected a list of words, got {item!r}")
        classes.append(" ".join(item))
    if not classes:
        raise AnnotationError(f"{path}: empty vocabulary")
    return classes


def _vocab_file(annotation: Path, options: Mapping[str, str]) -> Path | None:
    if options.get("vocab"):
        return Path(options["vocab"]).expanduser()
    if (annotation.parent / VOCAB_FILE).is_file():
        return annotation.parent / VOCAB_FILE
    logger.info("%s: no %s beside it: entries without class names", annotation, VOCAB_FILE)
    return None


def parse(annotation: Path, videos: Path, options: Mapping[str, str]) -> Parsed:
    vocab_file = _vocab_file(annotation, options)
    classes = read_vocab(vocab_file) if vocab_file is not None else None
    rows = []
    for line, item in json_array(annotation):
        if not isinstance(item, dict):
            raise AnnotationError(f"{annotation}:{line}: expected an object with 'vid_name' "
                                  f"and 'label', got {type(item).__name__}")
        name, label = item.get("vid_name"), item.get("label")
        if not isinstance(name, str) or not name.strip():
            raise AnnotationError(f"{annotation}:{line}: entry has no 'vid_name' (got "
                                  f"{name!r})")
        if isinstance(label, bool) or not isinstance(label, int):
            raise AnnotationError(f"{annotation}:{line}: video {name}: 'label' {label!r} is "
                                  "not an integer")
        if label < 0 or (classes is not None and label >= len(classes)):
            bound = f"0..{len(classes) - 1} ({vocab_file})" if classes is not None else ">= 0"
            raise AnnotationError(f"{annotation}:{line}: video {name}: label {label} is "
                                  f"outside {bound}")
        rows.append(Row(line, (videos / f"{name.strip()}.mp4",), label))
    return Parsed(rows, classes)


FORMAT = DatasetFormat(
    name="diving48",
    parse=parse,
    video_dirs=("rgb", "videos"),
    options={"vocab": None},
)

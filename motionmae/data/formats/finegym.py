"""FineGym: the Gym99 / Gym288 element lists and category files.

Files as released::

    gym99_train_element_v1.1.txt      0LtLS9wROrk_E_002407_002435_A_0003_0005 4
    gym99_val_element.txt             (same: '<clip id> <label>', labels from 0)
    gym99_categories.txt              Clabel: 0; set: 1; Glabel: 1; (VT) round-off, flic-flac ...
    gym288_train_element_v1.1.txt, gym288_val_element.txt, gym288_categories.txt

FineGym ships annotations only; the clips are cut from the YouTube videos by the user, one
file per element: ``<clip id>.mp4``. Class ``i`` is the name on the category line with
``Clabel: i`` (event prefix such as ``(VT)`` kept). The category file is looked for beside
the list (``gym99_categories.txt`` for a ``gym99_*`` list, ``gym288_...`` likewise) or given
with ``classes=FILE``; without one, the entries keep their labels and have no class names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from motionmae.data.formats._common import (
    AnnotationError,
    DatasetFormat,
    Parsed,
    Row,
    check_class_ids,
    parse_int,
    text_lines,
)

logger = logging.getLogger(__name__)

_CATEGORY = re.compile(r"^Clabel:\s*(?P<id>\S+?)\s*;\s*set:\s*\S+?\s*;\s*Glabel:\s*\S+?\s*;"
                       r"\s*(?P<name>.*?)\s*$")


def read_categories(path: Path) -> list[str]:
    """Class names in ``Clabel`` order from a ``gym99_categories.txt``-style file."""
    lines, ids, names = [], [], []
    for line, text in text_lines(path):
        match = _CATEGORY.match(text)
        if match is None or not match["name"]:
            raise AnnotationError(f"{path}:{line}: expected 'Clabel: <id>; set: <id>; Glabel: "
                                  f"<id>; <name>', got {text!r}")
        lines.append(line)
        ids.append(parse_int(match["id"], path, line, "Clabel"))
        names.append(match["name"])
    if not names:
        raise AnnotationError(f"{path}: no categories")
    check_class_ids(path, lines, ids, base=0)
    classes = [""] * len(names)
    for class_id, name in zip(ids, names, strict=True):
        classes[class_id] = name
    return classes


def _category_file(annotation: Path, options: Mapping[str, str]) -> Path | None:
    if options.get("classes"):
        return Path(options["classes"]).expanduser()
    prefix = annotation.name.split("_", 1)[0]
    default = annotation.parent / f"{prefix}_categories.txt"
    if default.is_file():
        return default
    logger.info("%s: no %s beside it: entries without class names", annotation, default.name)
    return None


def parse(annotation: Path, videos: Path, options: Mapping[str, str]) -> Parsed:
    category_file = _category_file(annotation, options)
    classes = read_categories(category_file) if category_file is not None else None
    rows = []
    for line, text in text_lines(annotation):
        fields = text.split()
        if len(fields) != 2:
            raise AnnotationError(f"{annotation}:{line}: expected '<clip id> <label>', got "
                                  f"{text!r}")
        label = parse_int(fields[1], annotation, line, "label")
        limit = len(classes) if classes is not None else None
        if label < 0 or (limit is not None and label >= limit):
            bound = f"0..{limit - 1} ({category_file})" if limit is not None else ">= 0"
            raise AnnotationError(f"{annotation}:{line}: label {label} is outside {bound}")
        rows.append(Row(line, (videos / f"{fields[0]}.mp4",), label))
    return Parsed(rows, classes)


FORMAT = DatasetFormat(
    name="finegym",
    parse=parse,
    video_dirs=("subactions", "videos"),
    options={"classes": None},
)

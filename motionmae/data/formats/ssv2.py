"""Something-Something v2: JSON annotation lists and the labels file.

Files as released::

    labels/something-something-v2-labels.json
        {"Approaching something with your camera": "0", ...}
    labels/something-something-v2-{train,validation}.json
        [{"id": "78687", "label": "holding potato next to vicks vaporub bottle",
          "template": "Holding [something] next to [something]",
          "placeholders": ["potato", "vicks vaporub bottle"]}, ...]
    labels/something-something-v2-test.json
        [{"id": "1420"}, ...]
    20bn-something-something-v2/<id>.webm

(some redistributions name them ``labels.json``, ``train.json``, ``validation.json``.)

A video's class is its ``template`` with the square brackets removed (``"Putting [something]
on a surface"`` -> ``"Putting something on a surface"``), looked up in the labels file; class
``i`` is the name whose id is ``i``. The test list has ids only: its entries are unlabelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from motionmae.data.formats._common import (
    AnnotationError,
    DatasetFormat,
    Parsed,
    Row,
    check_class_ids,
    json_array,
    json_object,
)

LABEL_FILES = ("something-something-v2-labels.json", "labels.json")


def normalize_template(template: str) -> str:
    """The class name of a template: ``"Pushing [something] off of [something]"`` ->
    ``"Pushing something off of something"`` (brackets dropped, words and case kept)."""
    return template.replace("[", "").replace("]", "")


def read_labels(path: Path) -> list[str]:
    """Class names in id order from a labels file ``{"name": "id"}`` (ids as strings or
    integers, ``0..n-1``)."""
    lines, ids, names = [], [], []
    for line, name, value in json_object(path):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise AnnotationError(f"{path}:{line}: class {name!r}: id {value!r} is not an "
                                  "integer")
        try:
            class_id = int(value)
        except ValueError:
            raise AnnotationError(f"{path}:{line}: class {name!r}: id {value!r} is not an "
                                  "integer") from None
        lines.append(line)
        ids.append(class_id)
        names.append(name)
    if not names:
        raise AnnotationError(f"{path}: no classes")
    check_class_ids(path, lines, ids, base=0)
    classes = [""] * len(names)
    for class_id, name in zip(ids, names, strict=True):
        classes[class_id] = name
    return classes


def _labels_file(annotation: Path, options: Mapping[str, str]) -> Path:
    if options.get("labels"):
        return Path(options["labels"]).expanduser()
    for name in LABEL_FILES:
        if (annotation.parent / name).is_file():
            return annotation.parent / name
    raise FileNotFoundError(f"{annotation}: no labels file beside it (looked for "
                            f"{' or '.join(LABEL_FILES)}); give one with labels=FILE")


def parse(annotation: Path, videos: Path, options: Mapping[str, str]) -> Parsed:
    items = json_array(annotation)
    labelled = any(isinstance(item, dict) and "template" in item for _, item in items)
    classes = read_labels(_labels_file(annotation, options)) if labelled else None
    index = {name: i for i, name in enumerate(classes or [])}
    rows = []
    for line, item in items:
        if not isinstance(item, dict):
            raise AnnotationError(f"{annotation}:{line}: expected an object with an 'id', got "
                                  f"{type(item).__name__}")
        video_id = item.get("id")
        if isinstance(video_id, bool) or not isinstance(video_id, str | int) or (
                isinstance(video_id, str) and not video_id.strip()):
            raise AnnotationError(f"{annotation}:{line}: entry has no video 'id' (got "
                                  f"{video_id!r})")
        label = None
        if labelled:
            template = item.get("template")
            if not isinstance(template, str):
                raise AnnotationError(f"{annotation}:{line}: video {video_id}: no 'template' "
                                      "(other entries have one)")
            name = normalize_template(template)
            if name not in index:
                raise AnnotationError(f"{annotation}:{line}: video {video_id}: template "
                                      f"{template!r} (class {name!r}) is not in the labels "
                                      "file")
            label = index[name]
        rows.append(Row(line, (videos / f"{str(video_id).strip()}.webm",), label))
    return Parsed(rows, classes)


FORMAT = DatasetFormat(
    name="ssv2",
    parse=parse,
    video_dirs=("20bn-something-something-v2", "videos"),
    options={"labels": None},
)

"""HMDB51: the official three-split files (``testTrainMulti_7030_splits``).

Files as released: one file per class and split, ``<class>_test_split<1-3>.txt``, each line
``<video>.avi <id>`` with id ``1`` = training, ``2`` = testing, ``0`` = in neither::

    testTrainMulti_7030_splits/brush_hair_test_split1.txt
        April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1
    hmdb51_org/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi

The spec names the folder of split files; ``split=1|2|3`` (default 1) and
``subset=train|test`` (default train) choose the entries. Classes are the class names in
sorted order (``brush_hair`` = 0, ...). Videos are looked for in per-class folders, then
directly in the video folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from motionmae.data.formats._common import AnnotationError, DatasetFormat, Parsed, Row, text_lines

SUBSETS = {"train": 1, "test": 2}
_SPLIT_FILE = re.compile(r"^(?P<name>.+)_test_split(?P<split>[1-3])\.txt$")


def split_files(folder: Path, split: int) -> dict[str, Path]:
    """``{class name: split file}`` of one split, from the file names in ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder (hmdb51 wants the folder of "
                                "<class>_test_split<n>.txt files)")
    files = {}
    for path in sorted(folder.iterdir()):
        match = _SPLIT_FILE.match(path.name)
        if match and int(match["split"]) == split:
            files[match["name"]] = path
    if not files:
        raise AnnotationError(f"{folder}: no <class>_test_split{split}.txt files")
    return files


def parse(annotation: Path, videos: Path, options: Mapping[str, str]) -> Parsed:
    wanted = SUBSETS[options["subset"]]
    files = split_files(annotation, int(options["split"]))
    classes = sorted(files)
    rows = []
    for label, name in enumerate(classes):
        path = files[name]
        for line, text in text_lines(path):
            fields = text.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise AnnotationError(f"{path}:{line}: expected '<video> <0|1|2>', got "
                                      f"{text!r}")
            if int(fields[1]) == wanted:
                rows.append(Row(line, (videos / name / fields[0], videos / fields[0]), label))
    return Parsed(rows, classes)


FORMAT = DatasetFormat(
    name="hmdb51",
    parse=parse,
    video_dirs=("hmdb51_org", "hmdb51", "videos"),
    options={"split": "1", "subset": "train"},
    choices={"split": ("1", "2", "3"), "subset": tuple(SUBSETS)},
    selectors=("split", "subset"),
    annotation_is_dir=True,
)

"""UCF101: the official split files (``ucfTrainTestlist``).

Files as released::

    ucfTrainTestlist/classInd.txt          1 ApplyEyeMakeup          (ids from 1)
    ucfTrainTestlist/trainlist01.txt       ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1
    ucfTrainTestlist/testlist01.txt        ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi
    UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi

Splits 1-3 are the files ``trainlist0{1,2,3}.txt`` / ``testlist0{1,2,3}.txt``: the spec names
the file. Labels are the class ids minus one. Test lists carry no label: it comes from the
video's class folder (matched case-insensitively as a fallback, since the release spells one
class ``HandstandPushups`` in ``classInd.txt`` and ``HandStandPushups`` in file names). A train
list label that contradicts its class folder is an error.
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
    parse_int,
    text_lines,
)


def read_class_index(path: Path) -> list[str]:
    """Class names in id order from ``classInd.txt`` (``<id> <name>`` per line, ids from 1)."""
    lines, ids, names = [], [], []
    for line, text in text_lines(path):
        fields = text.split()
        if len(fields) != 2:
            raise AnnotationError(f"{path}:{line}: expected '<id> <class name>', got {text!r}")
        lines.append(line)
        ids.append(parse_int(fields[0], path, line, "class id"))
        names.append(fields[1])
    if not names:
        raise AnnotationError(f"{path}: no classes")
    check_class_ids(path, lines, ids, base=1)
    classes = [""] * len(names)
    for class_id, name in zip(ids, names, strict=True):
        classes[class_id - 1] = name
    return classes


def parse(annotation: Path, videos: Path, options: Mapping[str, str]) -> Parsed:
    class_file = Path(options["classes"]).expanduser() if options.get("classes") else (
        annotation.parent / "classInd.txt")
    classes = read_class_index(class_file)
    exact = {name: i for i, name in enumerate(classes)}
    folded = {name.casefold(): i for i, name in enumerate(classes)}
    rows = []
    for line, text in text_lines(annotation):
        fields = text.split()
        if len(fields) not in (1, 2):
            raise AnnotationError(f"{annotation}:{line}: expected '<class>/<video> [label]', "
                                  f"got {text!r}")
        relative = fields[0].replace("\\", "/")
        folder = relative.split("/")[0] if "/" in relative else None
        from_folder = None
        if folder is not None:
            from_folder = exact.get(folder, folded.get(folder.casefold()))
        if len(fields) == 2:
            label = parse_int(fields[1], annotation, line, "label") - 1
            if not 0 <= label < len(classes):
                raise AnnotationError(f"{annotation}:{line}: label {fields[1]} is outside "
                                      f"1..{len(classes)} ({class_file})")
            if from_folder is not None and from_folder != label:
                raise AnnotationError(
                    f"{annotation}:{line}: label {fields[1]} ({classes[label]}) contradicts "
                    f"the class folder {folder!r} (id {from_folder + 1} in {class_file})")
        elif from_folder is None:
            raise AnnotationError(f"{annotation}:{line}: no label and the folder {folder!r} is "
                                  f"not a class of {class_file}")
        else:
            label = from_folder
        rows.append(Row(line, (videos / relative,), label))
    return Parsed(rows, classes)


FORMAT = DatasetFormat(
    name="ucf101",
    parse=parse,
    video_dirs=("UCF-101", "UCF101", "videos"),
    options={"classes": None},
)

"""What a video list holds: entries (path, label) and their class names; how one list's labels
read in another's classes.

Below both readers of lists: the list-file parser (:mod:`motionmae.data.lists`) and the
dataset-format readers (:mod:`motionmae.data.formats`) build these.

Labels are names. A list numbers its class names in its own way (sorted names, a class file,
a dataset's ids), so two lists, or a list and a model, are matched by name
(:func:`relabel`), never by number, unless neither side has names (then the integers are the
classes' ids).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from motionmae.errors import DataError

__all__ = ["LabelError", "ListFormatError", "VideoEntry", "VideoList", "read_list_text",
           "relabel", "shared_videos", "warn_shared_videos"]

log = logging.getLogger(__name__)

NAMES_SHOWN = 5  # how many class names an error lists


class ListFormatError(DataError, ValueError):
    """A list file is malformed; the message names the file and line."""


class LabelError(DataError, ValueError):
    """Labels that cannot be used as asked: missing where needed, or a class the reference
    (a training list, a model) does not know; the message names the list and the classes."""


@dataclass(frozen=True)
class VideoEntry:
    """One video: its absolute ``path`` and integer ``label`` (``None`` when unlabelled)."""

    path: Path
    label: int | None = None


@dataclass
class VideoList:
    """Entries in file order; ``classes[label]`` is the class name when labels were names (or
    integers with a class file)."""

    entries: list[VideoEntry]
    classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def num_classes(self) -> int | None:
        """Number of classes: ``len(classes)``, else ``max(label) + 1``, else ``None``."""
        if self.classes is not None:
            return len(self.classes)
        labels = [e.label for e in self.entries if e.label is not None]
        return max(labels) + 1 if labels else None

    def fingerprint(self) -> str:
        """A short SHA-256 of the videos in list order, each by its folder and file name (so
        a dataset moved elsewhere keeps it; another list, or another order, does not)."""
        digest = hashlib.sha256()
        for entry in self.entries:
            digest.update(f"{entry.path.parent.name}/{entry.path.name}\n".encode())
        return digest.hexdigest()[:16]

    def require_labels(self, source: str, purpose: str) -> VideoList:
        """This list, if every video has a label; else a :class:`LabelError` naming
        ``source`` (the list) and ``purpose`` (``"a probe"``) that needs them."""
        missing = sum(e.label is None for e in self.entries)
        if missing:
            raise LabelError(f"{source}: {missing} of {len(self)} videos have no label; "
                             f"{purpose} needs a label for every video")
        return self

    def relabelled(self, reference: Sequence[str] | None, known: Collection[int],
                   source: str, against: str) -> VideoList:
        """This list with its labels in ``against``'s numbering (see :func:`relabel`); its
        classes are then ``reference`` (when named). Unlabelled entries stay unlabelled."""
        labels = relabel([e.label for e in self.entries if e.label is not None], self.classes,
                         reference, known, source, against)
        new = iter(labels)
        entries = [e if e.label is None else VideoEntry(e.path, next(new))
                   for e in self.entries]
        return VideoList(entries, list(reference) if reference is not None else self.classes)


def relabel(labels: Sequence[int], classes: Sequence[str] | None,
            reference: Sequence[str] | None, known: Collection[int], source: str,
            against: str) -> list[int]:
    """``labels`` of ``source`` as class ids of ``against`` (a training list, a model).

    With class names on both sides (``classes[label]``, ``reference[id]``) a label becomes
    the reference's id of its name. Integer labels without names are ids already and are
    kept. Either way every resulting id must be in ``known`` (the reference's classes that
    count: a model's ``range(K)``, or the labels a training set has).

    Raises:
        LabelError: a class unknown to ``against`` (named, with ``against``'s classes), or
            ``source`` labelled with names while ``against`` has integers without names.
    """
    if classes is not None and reference is None:
        raise LabelError(
            f"{source}: labels are class names ({_some(sorted({classes[i] for i in labels}))}) "
            f"but {against} has integer labels without class names; label both the same way "
            "(names, or integers with a <list stem>.classes.txt file)")
    if classes is not None and reference is not None:
        index = {name: i for i, name in enumerate(reference)}
        unknown = sorted({classes[i] for i in labels if index.get(classes[i]) not in known})
        if unknown:
            its = [reference[i] for i in sorted(known) if i < len(reference)]
            raise LabelError(f"{source}: {_classes(unknown)} unknown to {against} (its "
                             f"classes: {_some(its)})")
        return [index[classes[i]] for i in labels]
    unknown_ids = sorted({i for i in labels if i not in known})
    if unknown_ids:
        its = ([reference[i] for i in sorted(known) if i < len(reference)]
               if reference is not None else sorted(known))
        raise LabelError(f"{source}: label{'s' if len(unknown_ids) > 1 else ''} "
                         f"{_some(unknown_ids)} unknown to {against} (its classes: "
                         f"{_some(its)})")
    return list(labels)


def shared_videos(train: Sequence[str | Path], held_out: Sequence[str | Path]) -> list[str]:
    """The items of ``held_out`` (paths, in its order, repeats kept) whose video file is also
    in ``train``: the same file after resolving relative parts and links. A score on them is
    not a held-out score."""
    seen = {Path(path).resolve() for path in train}
    return [str(path) for path in held_out if Path(path).resolve() in seen]


def warn_shared_videos(train: Sequence[str | Path], held_out: Sequence[str | Path],
                       train_name: str, held_out_name: str) -> int:
    """Log a warning when ``held_out`` has videos of ``train`` (:func:`shared_videos`);
    returns how many of its items do."""
    shared = shared_videos(train, held_out)
    if shared:
        log.warning("%s: %d of %d videos are also in %s (e.g. %s): their accuracy is not "
                    "held out", held_out_name, len(shared), len(held_out), train_name,
                    shared[0])
    return len(shared)


def _classes(names: Sequence[str]) -> str:
    return f"class{'es' if len(names) > 1 else ''} {_some([repr(n) for n in names])}"


def _some(items: Sequence[object]) -> str:
    shown = ", ".join(str(item) for item in items[:NAMES_SHOWN])
    more = len(items) - NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "") if items else "none"


def read_list_text(path: Path) -> str:
    """The text of a list, class or annotation file (UTF-8, a BOM dropped).

    Raises:
        ListFormatError: the file is not UTF-8 text (a binary file, another encoding); the
            message names the file and the first offending byte.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ListFormatError(
            f"{path}: not a UTF-8 text file (byte 0x{data[error.start]:02x} at offset "
            f"{error.start}); a list is text, one video per line") from None

"""What a video list holds: entries (path, label) and their class names.

Below both readers of lists: the list-file parser (:mod:`motionmae.data.lists`) and the
dataset-format readers (:mod:`motionmae.data.formats`) build these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from motionmae.errors import DataError

__all__ = ["ListFormatError", "VideoEntry", "VideoList"]


class ListFormatError(DataError, ValueError):
    """A list file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class VideoEntry:
    """One video: its absolute ``path`` and integer ``label`` (``None`` when unlabelled)."""

    path: Path
    label: int | None = None


@dataclass
class VideoList:
    """Entries in file order; ``classes[label]`` is the class name when labels were names."""

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

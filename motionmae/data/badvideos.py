"""The bad-video policy of a training run: ``RUN/bad_videos.tsv`` and when to stop.

With ``data.on_error: skip`` (the default) a video that cannot be read is replaced by another
(:class:`~motionmae.data.dataset.VideoDataset`); each replacement names the file and the
reason in the sample's ``bad_files`` entry. :class:`BadVideoLog` collects them in the training
process: every bad video once, with its reason, in ``RUN/bad_videos.tsv`` (``path<TAB>reason``,
kept and extended by ``--resume``), and stops the run with :class:`~motionmae.errors.DataError`
when

    bad > data.bad_videos_tolerated  and  bad > data.max_bad_fraction * seen

where ``bad`` counts the distinct bad videos of the current list and ``seen`` the distinct
videos the run has drawn (every video after the first epoch). The first condition keeps a
run from stopping on the first bad file or two (1 bad among the first 3 videos is 33 %); the
second is the rate that matters on a large dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from motionmae.errors import DataError
from motionmae.fileio import StorageError, append_text, cannot_write

logger = logging.getLogger(__name__)

FILE_NAME = "bad_videos.tsv"


class BadVideoLog:
    """Bad videos met by a training run, written by the main process, checked against the
    policy at each flush.

    Args:
        path: the TSV file (read if present: a resumed run keeps its list).
        videos: paths of the run's list (only those count towards the fraction, so a list
            cleaned of its bad files resumes).
        max_fraction, tolerated: the stop rule of the module docstring.
        write: whether this process writes the file (rank 0).
    """

    def __init__(self, path: Path, videos: list[str], max_fraction: float, tolerated: int,
                 write: bool) -> None:
        self.path = path
        self.videos = set(videos)
        self.max_fraction = max_fraction
        self.tolerated = tolerated
        self.write = write
        self.known: dict[str, str] = read_bad_videos(path) if path.is_file() else {}
        self.pending: dict[str, str] = {}

    @classmethod
    def for_run(cls, out_dir: Path, dataset: Any, write: bool) -> BadVideoLog | None:
        """The log of a run over ``dataset`` (a ``VideoDataset`` skipping bad videos), else
        ``None`` (the dataset raises on a bad video, or is not made of video files)."""
        config = getattr(dataset, "config", None)
        videos = getattr(dataset, "videos", None)
        if config is None or videos is None or getattr(config, "on_error", None) != "skip":
            return None
        return cls(Path(out_dir) / FILE_NAME, [str(e.path) for e in videos.entries],
                   config.max_bad_fraction, config.bad_videos_tolerated, write)

    @property
    def bad(self) -> int:
        """Distinct bad videos of the current list met so far (all processes, after the last
        :meth:`flush`)."""
        return sum(1 for path in self.known if path in self.videos)

    def add(self, entries: Any) -> None:
        """Take a batch's ``bad_files`` (a str or a list of str of ``path<TAB>reason`` lines)."""
        if entries is None:
            return
        for text in [entries] if isinstance(entries, str) else entries:
            for line in text.splitlines():
                path, _, reason = line.partition("\t")
                if path and path not in self.known:
                    self.pending.setdefault(path, reason)

    def flush(self, seen: int, distributed: bool = False) -> None:
        """Merge every process's new bad videos (a collective when ``distributed``), append
        them to the file, and apply the stop rule to ``seen`` distinct videos drawn.

        Raises:
            DataError: too many bad videos; the message gives the fraction and the file.
            StorageError: the file cannot be appended to (disk full).
        """
        new = dict(self.pending)
        self.pending.clear()
        if distributed and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, new)
            new = {k: v for part in gathered for k, v in part.items()}
        new = {k: v for k, v in new.items() if k not in self.known}
        if new and self.write:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                append_text(self.path, "".join(f"{path}\t{reason}\n"
                                               for path, reason in new.items()))
            except OSError as error:  # disk full: the file is as it was
                raise StorageError(cannot_write(self.path, error)) from error
        self.known.update(new)
        bad = self.bad
        seen = max(seen, bad)
        if bad > self.tolerated and bad > self.max_fraction * seen:
            raise DataError(
                f"{bad} of the {seen} videos seen so far are bad ({bad / seen:.1%} > "
                f"data.max_bad_fraction={self.max_fraction:g}); each is listed with its "
                f"reason in {self.path}. Fix them and continue with --resume, or continue "
                "without them: `motionmae check-data LIST --out DIR` writes a clean list, "
                "then --resume --data DIR/clean.txt --set run.resume_with_other_videos=true "
                "(or raise data.max_bad_fraction)")


def read_bad_videos(path: Path) -> dict[str, str]:
    """``{path: reason}`` of a ``bad_videos.tsv`` (first reason of a path wins)."""
    found: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        video, _, reason = line.partition("\t")
        if video:
            found.setdefault(video, reason)
    return found

"""How many of the package's files one training step passes through, in the default mode
(``--targets pixel,tracks --masking motion``): from fetching the batch (the dataset's
``__getitem__``, the sample hooks, collate; ``data.workers=0`` so the loader's work runs in
this process) to the optimizer step. Fewer files on the path is a step that is easier to
read; ``docs/architecture.md`` walks the same path file by file."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import motionmae
from motionmae.config import PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.train import loop
from motionmae.train.pretrain import pretrain

PACKAGE = Path(motionmae.__file__).resolve().parent
DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
# What this branch measures; lower it as the path shortens.
MAX_FILES = 15


def _traced_step(monkeypatch) -> set[str]:
    """The package files whose functions run during the second step of a run (the first
    imports what it needs lazily), relative to the package folder."""
    touched: set[str] = set()
    calls = {"n": 0}
    inner = loop.Trainer._step

    def profile(frame, event, arg):
        if event == "call":
            touched.add(frame.f_code.co_filename)

    def step(self):
        calls["n"] += 1
        if calls["n"] != 2:
            return inner(self)
        sys.setprofile(profile)
        try:
            return inner(self)
        finally:
            sys.setprofile(None)

    monkeypatch.setattr(loop.Trainer, "_step", step)
    return touched


def _package_files(touched: set[str]) -> list[str]:
    files = []
    for name in touched:
        path = Path(name).resolve()
        if path.is_relative_to(PACKAGE):
            files.append(path.relative_to(PACKAGE).as_posix())
    return sorted(files)


def doc_walk(text: str) -> tuple[int, list[str]]:
    """The walk of "## One training step, file by file": the count its prose states and the
    files its code block lists (a line indented by two spaces, starting with the path)."""
    section = text.split("## One training step, file by file", 1)[1]
    stated = re.search(r"passes these (\d+) package files", section)
    assert stated, "the walk states no count"
    block = section.split("```", 2)[1]
    return int(stated.group(1)), re.findall(r"^  (\S+\.py) ", block, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def step_files(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("step-path")
    videos = make_synthetic_dataset(root, num_train=4, num_val=0, frames=8, size=32, seed=0)
    cfg = load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={root / 'run'}",
        "targets.names=[pixel,tracks]", "masking.kind=motion", "data.frames=4",
        "data.stride=2", "data.size=32", "data.workers=0", "model.depth=1", "model.decoder_depth=1",
        "run.batch_size=2", "run.steps=2", "run.log_every=2"])
    with pytest.MonkeyPatch.context() as monkeypatch:
        touched = _traced_step(monkeypatch)
        pretrain(cfg)
    return _package_files(touched)


def test_default_step_passes_few_package_files(step_files):
    files = step_files
    print(f"\n{len(files)} package files on one training step:\n  " + "\n  ".join(files))
    assert "data/dataset.py" in files  # the loader's work was traced (workers=0)
    assert "train/step.py" in files  # up to the optimizer step
    assert len(files) <= MAX_FILES, files


def test_the_architecture_doc_walks_the_traced_files(step_files):
    stated, walked = doc_walk(DOC.read_text())
    assert len(walked) == len(set(walked)), walked
    assert sorted(walked) == step_files, (sorted(set(walked) - set(step_files)),
                                          sorted(set(step_files) - set(walked)))
    assert stated == len(step_files)


def test_the_walk_is_read_as_written():
    text = ("## One training step, file by file\n\nThe mode passes these 2 package files.\n\n"
            "```\nloader worker\n  data/dataset.py   VideoDataset[i]: decode\n"
            "                    and crop (see data/hooks.py)\n  tokens.py   TokenGrid\n```\n"
            "Then motion/lk.py.\n")
    assert doc_walk(text) == (2, ["data/dataset.py", "tokens.py"])

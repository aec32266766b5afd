"""One home per concept: a name is imported from the module that defines it (no re-export
facade, no module kept only for its old name), imports are absolute, and the command's exit
statuses are the named ones of ``motionmae.errors``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "motionmae"


def test_no_module_uses_a_relative_import():
    relative = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                for path in sorted(PACKAGE.rglob("*.py"))
                for node in ast.walk(ast.parse(path.read_text(), str(path)))
                if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == []


@pytest.mark.parametrize("old, home", [
    ("evaluate.py", "eval/__init__.py"),
    ("train/probing.py", "eval/probing.py"),
    ("train/checkpointing.py", "train/save_resume.py"),
    ("data/video.py", "data/video_reader.py"),
])
def test_a_concept_has_one_home(old, home):
    # Files, not import specs: an editable install of another checkout would find the old
    # module there.
    assert not (PACKAGE / old).exists(), f"{old} is back beside {home}"
    assert (PACKAGE / home).is_file()


def test_names_come_from_their_defining_modules():
    import motionmae.data as data
    import motionmae.eval as evaluation
    from motionmae.data import video_info, video_reader, video_writer
    from motionmae.eval import clips, features, probing

    assert data.probe_video is video_reader.probe_video
    assert data.read_frames is video_reader.read_frames
    assert data.VideoReadError is video_info.VideoReadError
    assert data.write_video is video_writer.write_video
    assert evaluation.eval_data_config is clips.eval_data_config
    assert evaluation.list_features is features.list_features
    assert evaluation.run_probe is probing.run_probe
    assert evaluation.TrainingProbe is probing.TrainingProbe


def test_cli_modules_return_no_exit_status_literal():
    """A command returns 0 or a status named in ``motionmae.errors`` (DATA, PREEMPTED, ...),
    never a bare number that could drift from the documented table."""
    literals = [f"{path.name}:{node.lineno}"
                for path in sorted((PACKAGE / "cli").glob("*.py"))
                for node in ast.walk(ast.parse(path.read_text(), str(path)))
                if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, int) and not isinstance(node.value.value, bool)
                and node.value.value != 0]
    assert literals == []

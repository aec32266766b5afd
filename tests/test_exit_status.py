"""The exit statuses the command gives are the named ones of ``motionmae.errors``."""

from __future__ import annotations

import signal

import pytest

from motionmae import errors
from motionmae.cli import finetune as finetune_cli
from motionmae.cli import main
from motionmae.cli import pretrain as pretrain_cli


def test_preempted_is_128_plus_sigterm():
    assert errors.PREEMPTED == 128 + signal.SIGTERM == 143


@pytest.mark.parametrize("module, command", [
    (pretrain_cli, ["pretrain", "--out", "run"]),
    (finetune_cli, ["finetune", "--scratch", "--model", "tiny", "--out", "run"]),
])
def test_a_preempted_training_command_exits_with_preempted(module, command, tmp_path,
                                                             monkeypatch):
    """A run stopped by SIGTERM (``run_training`` returns None once its checkpoint is saved)
    exits with :data:`~motionmae.errors.PREEMPTED`."""
    videos = tmp_path / "train.txt"
    videos.write_text("a.mp4 0\n")
    flag = "--data" if command[0] == "pretrain" else "--train"
    monkeypatch.setattr(module, "run_training", lambda *args: None)
    monkeypatch.chdir(tmp_path)
    assert main([*command, flag, str(videos)]) == errors.PREEMPTED

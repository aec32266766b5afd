"""The writers of motionmae.fileio report a full disk as OSError and leave no torn file."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from motionmae import fileio
from motionmae.errors import ENVIRONMENT, classify


def test_a_real_failed_write_is_an_oserror_and_leaves_the_checkpoints_as_they_were(tmp_path):
    """A file-size limit makes the kernel refuse the write of a big state.pt (EFBIG), as a
    full disk would (ENOSPC); torch.save would raise RuntimeError for it."""
    script = """
import resource, signal, sys, torch
from pathlib import Path
from motionmae.checkpoints.format import save_checkpoint
root = Path(sys.argv[1])
save_checkpoint(root, 1, {"w": torch.zeros(4)}, {}, {"train_state": {}})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    save_checkpoint(root, 2, {"w": torch.zeros(4)}, {}, {"big": torch.zeros(1_000_000)})
except OSError as error:
    print(error.errno)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == str(errno.EFBIG), done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000001"]
    assert (tmp_path / "latest").read_text() == "step_00000001\n"


def test_a_failed_append_is_undone(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    fileio.append_text(path, '{"step": 1}\n')
    real = os.write

    def fills_up(fd, data):  # a few bytes land, then the disk is full
        if len(data) > 4:
            real(fd, bytes(data[:4]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(fileio.os, "write", fills_up)
    with pytest.raises(OSError, match="No space left"):
        fileio.append_text(path, '{"step": 2}\n')
    monkeypatch.undo()
    assert path.read_text() == '{"step": 1}\n'


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "latest"
    fileio.atomic_write_text(path, "step_00000001\n")
    monkeypatch.setattr(fileio.os, "fsync",
                        lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError, match="full"):
        fileio.atomic_write_text(path, "step_00000002\n")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]
    assert path.read_text() == "step_00000001\n"


def test_storage_errors_are_environment_errors_in_one_line(tmp_path):
    error = fileio.StorageError(fileio.cannot_write(
        tmp_path / "x", OSError(errno.ENOSPC, "No space left on device")))
    assert classify(error) == (ENVIRONMENT, f"could not write {tmp_path / 'x'}: No space left "
                                            "on device")

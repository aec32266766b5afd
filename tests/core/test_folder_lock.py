"""The folder lock (``motionmae.fileio.exclusive``) that ``prepare`` and the training runs hold:
one holder at a time, named by PID and host; released on any exit; a killed holder's lock is
taken over with a warning."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from motionmae.errors import USAGE
from motionmae.fileio import FolderInUseError, exclusive, lock_holder

HOLDER = """
import sys, time
from pathlib import Path
from motionmae.fileio import exclusive
with exclusive(Path(sys.argv[1]), "busy"):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold(lock: Path) -> subprocess.Popen:
    """Another process holding ``lock`` (until killed)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], env=env,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_held_lock_is_refused_naming_the_holder_and_freed_when_it_ends(tmp_path):
    lock = tmp_path / "run" / ".lock"
    holder = _hold(lock)
    try:
        expected = (rf"^{tmp_path / 'run'}: busy \(PID {holder.pid} on "
                    rf"{socket.gethostname()} since .*\); wait$")
        with pytest.raises(FolderInUseError, match=expected) as caught, \
                exclusive(lock, "busy", "wait"):
            pass
        assert caught.value.exit_code == USAGE
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with exclusive(lock, "busy"):
        assert f'"pid": {os.getpid()}' in lock.read_text()
    assert lock.read_text() == ""  # a clean exit leaves no holder behind


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_warning(tmp_path, caplog):
    lock = tmp_path / ".lock"
    holder = _hold(lock)
    holder.send_signal(signal.SIGKILL)  # no cleanup: the record stays, the OS frees the lock
    holder.wait(timeout=30)
    assert f'"pid": {holder.pid}' in lock.read_text()
    with caplog.at_level(logging.WARNING), exclusive(lock, "busy"):
        pass
    assert f"taking over the lock of PID {holder.pid} on {socket.gethostname()}" in caplog.text
    assert "ended without releasing it" in caplog.text


def test_lock_holder_names_a_live_holder_and_writes_nothing(tmp_path):
    lock = tmp_path / "run" / ".lock"
    assert lock_holder(lock) is None  # no lock file: nobody
    holder = _hold(lock)
    try:
        record = lock.read_bytes()
        assert lock_holder(lock).startswith(f"PID {holder.pid} on {socket.gethostname()}")
        assert lock.read_bytes() == record
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(lock) is None  # released with its process

"""The chaos check's fast subset (``benchmarks/chaos.py --quick``): one SIGKILL during a
checkpoint write then ``--resume``, one damaged checkpoint, one full disk, two writers, one
pickle payload, each a row that must pass; and the check's own parts (the payloads are live,
the full-disk wrapper refuses exactly the matching writes, the kill schedule)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import chaos  # noqa: E402
from chaos_inputs import payload_control  # noqa: E402
from chaos_runs import Bench, child_env  # noqa: E402
from chaos_training import kill_schedule  # noqa: E402

QUICK_ROWS = ["sigkill during a checkpoint write", "damaged checkpoint", "full disk",
              "two writers", "pickle payload"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Bench:
    return Bench(tmp_path_factory.mktemp("chaos"), seed=0)


def _assert_pass(rows: list) -> None:
    assert rows, "no rows"
    assert all(row.passed for row in rows), "\n".join(
        f"{row.scenario}: {row.observed}" for row in rows if not row.passed)


@pytest.mark.parametrize("name", QUICK_ROWS)
def test_quick_row(bench: Bench, name: str) -> None:
    _assert_pass(chaos.QUICK[name](bench))


def test_payloads_run_their_code_when_loaded_unsafely(bench: Bench) -> None:
    """The control: a missing marker in a payload row means the file was refused."""
    _assert_pass(payload_control(bench))


WRITES = """
import os, sys, tempfile
import torch
import chaos_enospc as e

folder = sys.argv[1]
e.install(e.FullDisk(sys.argv[2], after=1))
from safetensors.torch import save_file  # bound after the patch, as the library's import is
def attempt(name, write):
    try:
        write()
        print(name, "ok")
    except OSError as error:
        print(name, os.strerror(error.errno), os.path.getsize(error.filename))
path = os.path.join(folder, "target.txt")
attempt("open 1", lambda: open(path, "w").write("0123456789"))
attempt("open 2", lambda: open(path, "a").write("0123456789"))
attempt("other", lambda: open(os.path.join(folder, "other.txt"), "w").write("x"))
def mkstemp():
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".target.txt.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(b"0123456789")
attempt("mkstemp", mkstemp)
attempt("torch.save", lambda: torch.save({"x": torch.zeros(100)},
                                         os.path.join(folder, "target.txt.pt")))
attempt("save_file", lambda: save_file({"x": torch.zeros(100)},
                                       os.path.join(folder, "target.txt.safetensors")))
"""


def test_enospc_wrapper_refuses_the_matching_writes_after_the_first(tmp_path: Path) -> None:
    """Python opens, mkstemp + fdopen and the native writers all hit the full disk once the
    first matching write has passed, leaving half a file; other names are written."""
    env = child_env()
    env["PYTHONPATH"] += os.pathsep + str(BENCHMARKS)
    done = subprocess.run([sys.executable, "-c", WRITES, str(tmp_path), r"^\.?target\.txt"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == ["open 1 ok", "open 2 No space left on device 15",
                         "other ok", "mkstemp No space left on device 5"]
    assert lines[4].startswith("torch.save No space left on device ")
    assert lines[5].startswith("save_file No space left on device ")
    assert (tmp_path / "target.txt").read_text() == "0123456789" + "01234"


def test_kill_schedule_is_seeded_and_starts_after_a_checkpoint() -> None:
    kinds = kill_schedule(random.Random(0), 20)
    assert kinds == kill_schedule(random.Random(0), 20)
    assert len(kinds) == 20 and kinds[0] != "start"
    assert kinds.count("write") == 8 and kinds.count("start") == 5

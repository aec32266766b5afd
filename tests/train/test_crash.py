"""Crashes and preemption: SIGKILL and SIGTERM mid-run, then the README's ``--resume`` line
(``--data``, ``--out``, ``--resume``: the rest from the run's config.yaml), with the weights and
the records of an uninterrupted run (also when the checkpoint falls between two records); a
second process on the folder of a running run; non-finite losses."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from motionmae.checkpoints.format import latest_checkpoint
from motionmae.cli import main
from motionmae.config import PretrainConfig, load_config
from motionmae.errors import USAGE, NonFiniteLossError
from motionmae.train.loop import TrainingInterrupted
from motionmae.train.pretrain import PretrainTask, pretrain
from motionmae.train.records import WALL_CLOCK_FIELDS

STEPS = 8

# The CLI in a subprocess, each step slowed down (numerics unchanged) so the test can act
# mid-run whatever the machine's speed.
CHILD = """
import os, sys, time
from motionmae.cli import main
from motionmae.train.pretrain import PretrainTask
inner = PretrainTask.loss
def slow(self, *args):
    if os.environ.get("IN_STEP"):  # one line per step, as the step's sleep starts
        with open(os.environ["IN_STEP"], "a") as marks:
            marks.write("step\\n")
    time.sleep(float(os.environ.get("STEP_SLEEP", "0.25")))
    return inner(self, *args)
PretrainTask.loss = slow
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from motionmae.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("crash-videos")
    return make_synthetic_dataset(root, num_train=8, num_val=2, frames=8, size=32, seed=3)


SETTINGS = ["data.frames=4", "data.stride=2", "data.size=32", "data.flip=false",
            "data.workers=0", "model.depth=1", "model.decoder_depth=1", "run.batch_size=2",
            "run.log_every=1", "optim.lr=1e-3", "optim.warmup_fraction=0.0",
            f"run.steps={STEPS}"]


def _config(videos, out, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={out}", *SETTINGS, *extra])


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    """The uninterrupted run's loss per step."""
    out = tmp_path_factory.mktemp("reference")
    pretrain(_config(videos, out))
    return _losses(out)


def _losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), steps  # each step logged once
    return {r["step"]: r["loss"] for r in records}


def _start(videos, out: Path, *extra: str, step_sleep: float = 0.25,
           in_step: Path | None = None) -> subprocess.Popen:
    """The CLI in its own process group (a terminal's Ctrl-C reaches the whole group), each
    step slowed by ``step_sleep`` seconds; with ``in_step``, a line is added to that file as
    each step's sleep starts."""
    sets = [arg for item in [*SETTINGS, *extra] for arg in ("--set", item)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEP_SLEEP": str(step_sleep),
           "IN_STEP": str(in_step or ""),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, "pretrain", "--data", str(videos.train_list),
         "--out", str(out), *sets],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=_as_in_a_terminal)


def _as_in_a_terminal() -> None:
    """Ctrl-C as a terminal's foreground job has it. A shell starts background jobs (``cmd
    &``, ``nohup``) with SIGINT ignored, which the run rightly keeps; pytest itself may run
    as one."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_until(condition, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended early: {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.02)


def _latest_step(out: Path) -> int:
    checkpoint = latest_checkpoint(out / "checkpoints") if (out / "checkpoints").exists() else None
    return checkpoint.step if checkpoint is not None else 0


def _assert_resume_matches(videos, out: Path, reference: dict[int, float]) -> None:
    assert main(["pretrain", "--data", str(videos.train_list), "--out", str(out),
                 "--resume"]) == 0
    assert _latest_step(out) == STEPS
    assert not list((out / "checkpoints").glob(".*.tmp"))  # a killed write's leftovers
    losses = _losses(out)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step, loss in reference.items():
        assert losses[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), step


def test_sigkill_then_resume_matches_uninterrupted_run(videos, tmp_path, reference, caplog):
    out = tmp_path / "killed"
    process = _start(videos, out, "run.ckpt_every=1")
    _wait_until(lambda: _latest_step(out) >= 2, process)
    process.kill()  # SIGKILL: no handler, no cleanup
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert 2 <= _latest_step(out) < STEPS
    with caplog.at_level(logging.WARNING):
        _assert_resume_matches(videos, out, reference)
    # The killed run's lock file still named it: taken over, with a warning.
    assert f"taking over the lock of PID {process.pid} on {socket.gethostname()}" in caplog.text


def test_a_second_process_is_refused_then_a_requeue_before_any_checkpoint_starts_over(
        videos, tmp_path, reference, capsys):
    """Two processes on one run folder: the second exits 2 naming the first's PID. The first,
    killed before its first checkpoint, is continued by the same --resume command: from step
    0 with its config, each step recorded once."""
    out = tmp_path / "busy"
    process = _start(videos, out, "run.ckpt_every=100")
    metrics = out / "metrics.jsonl"
    _wait_until(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 2,
                process)
    capsys.readouterr()
    assert main(["pretrain", "--data", str(videos.train_list), "--out", str(out)]) == USAGE
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"motionmae pretrain: error: {out}: another training run is "
                            f"writing here (PID {process.pid} on {socket.gethostname()} "), error
    assert error.endswith("wait for it to end, or train into another --out")
    assert process.poll() is None  # the first run goes on
    process.kill()
    process.wait(timeout=30)
    assert _latest_step(out) == 0 and len(metrics.read_text().splitlines()) >= 2
    _assert_resume_matches(videos, out, reference)


def test_sigterm_saves_a_checkpoint_and_resume_continues(videos, tmp_path, reference):
    out = tmp_path / "preempted"
    process = _start(videos, out, "run.ckpt_every=100")
    metrics = out / "metrics.jsonl"
    _wait_until(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 2,
                process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143, stderr[-3000:]
    assert "interrupted by SIGTERM" in stderr
    stopped = _latest_step(out)  # only the SIGTERM checkpoint can exist (ckpt_every=100)
    assert 2 <= stopped < STEPS
    assert len(metrics.read_text().splitlines()) == stopped
    _assert_resume_matches(videos, out, reference)


@pytest.mark.parametrize(("signum", "code", "name"), [
    (signal.SIGINT, 130, "Ctrl-C (SIGINT)"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_to_the_whole_process_group_saves_and_resumes_with_loader_workers(
        videos, tmp_path, reference, signum, code, name):
    """Ctrl-C in a terminal, ``timeout``, ``kill -TERM -- -PGID`` and Slurm signal every
    process of the job, loader workers included: the workers keep serving, the run finishes
    its step, saves, stops its workers and exits 128 + signal without a traceback;
    ``--resume`` continues."""
    out = tmp_path / "run"
    marks = tmp_path / "in-step"
    # Inside the second of eight 1 s steps, so that the signal lands while the run trains
    # however loaded the machine.
    process = _start(videos, out, "run.ckpt_every=100", "data.workers=1", step_sleep=1.0,
                     in_step=marks)
    _wait_until(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 2, process)
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr[-3000:]
    assert f"interrupted by {name}: checkpoint saved at step" in stderr
    assert "Traceback" not in stderr
    stopped = _latest_step(out)
    assert 2 <= stopped < STEPS
    _assert_resume_matches(videos, out, reference)


def test_a_second_ctrl_c_quits_at_once_without_a_traceback(videos, tmp_path):
    out = tmp_path / "ctrl-c-twice"
    marks = tmp_path / "in-step"
    process = _start(videos, out, "run.ckpt_every=100", step_sleep=5.0, in_step=marks)
    # Inside the second step's 5 s, not between steps: a first Ctrl-C between two steps
    # stops the run before the second arrives (a loaded machine loads the batch slowly).
    _wait_until(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 2, process)
    os.killpg(process.pid, signal.SIGINT)  # early in a 5 s step
    time.sleep(0.5)  # the first is handled, the step goes on
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.rstrip().endswith("motionmae pretrain: interrupted")
    assert "Traceback" not in stderr


def test_non_finite_losses_stop_the_run_naming_the_step(videos, tmp_path, monkeypatch):
    calls = []
    inner = PretrainTask.loss

    def nan_from_step_3(self, model, batch, generator):
        calls.append(1)
        loss, parts = inner(self, model, batch, generator)
        return (loss * torch.nan if len(calls) >= 3 else loss), parts

    monkeypatch.setattr(PretrainTask, "loss", nan_from_step_3)
    before = signal.getsignal(signal.SIGTERM)
    cfg = _config(videos, tmp_path / "nan", "run.max_bad_steps=2")
    with pytest.raises(NonFiniteLossError, match=r"steps 3 to 4\).*held videos \[\d+, \d+\]"):
        pretrain(cfg)
    assert signal.getsignal(signal.SIGTERM) is before  # the loop's handler was removed
    records = [json.loads(x) for x in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in records] == [0, 0, 1, 2]


# Records every third step; the checkpoints a run resumes from fall between them.
WINDOWED = ["run.log_every=3", f"run.steps={STEPS}"]


def _records(run_dir: Path) -> list[dict]:
    """The run's records without the wall-clock fields."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK_FIELDS}
            for line in lines]


@pytest.fixture(scope="module")
def windowed_reference(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("windowed-reference")
    pretrain(_config(videos, out, *WINDOWED, "run.ckpt_every=100"))
    assert [r["step"] for r in _records(out)] == [3, 6, 8]
    return out


def _interrupt_at_step(monkeypatch, step: int, interrupt) -> None:
    inner = PretrainTask.loss
    calls = []

    def loss(self, *args):
        calls.append(1)
        if len(calls) == step:
            interrupt()
        return inner(self, *args)

    monkeypatch.setattr(PretrainTask, "loss", loss)


def test_sigterm_between_records_resumes_with_the_same_records(videos, tmp_path, monkeypatch,
                                                               windowed_reference):
    out = tmp_path / "run"
    cfg = _config(videos, out, *WINDOWED, "run.ckpt_every=100")
    _interrupt_at_step(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(TrainingInterrupted):
        pretrain(cfg)  # finishes step 5, saves it, stops: steps 4 and 5 not yet logged
    monkeypatch.undo()
    assert latest_checkpoint(out / "checkpoints").step == 5
    assert [r["step"] for r in _records(out)] == [3]
    pretrain(cfg, resume=True)
    assert _records(out) == _records(windowed_reference)


def test_crash_after_a_checkpoint_between_records_resumes_with_the_same_records(
        videos, tmp_path, monkeypatch, windowed_reference):
    out = tmp_path / "run"
    cfg = _config(videos, out, *WINDOWED, "run.ckpt_every=2")  # 2 does not divide 3

    def crash() -> None:
        raise KeyboardInterrupt  # like SIGKILL: nothing saved on the way out

    _interrupt_at_step(monkeypatch, 5, crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg)
    monkeypatch.undo()
    assert latest_checkpoint(out / "checkpoints").step == 4
    pretrain(cfg, resume=True)
    assert _records(out) == _records(windowed_reference)
    final = latest_checkpoint(out / "checkpoints").weights()
    for key, value in latest_checkpoint(windowed_reference / "checkpoints").weights().items():
        assert torch.equal(final[key], value), key

"""The chaos check's machinery (``benchmarks/chaos.py``): the ``motionmae`` command in a child
process, one sandbox folder per scenario, the uninterrupted reference runs, and the checks the
scenarios share: one error line, weights and metrics equal to the uninterrupted run, no
temporary leftovers, nothing written outside ``--out``.

Every run is tiny (depth-1 model, 4 frames of 32 px, batch 2, a checkpoint every step) and
deterministic (one OpenMP thread per child), so an interrupted run can be compared with the
uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENOSPC_WRAPPER = Path(__file__).with_name("chaos_enospc.py")

TINY = ["--frames", "4", "--size", "32", "--batch-size", "2",
        "--set", "model.depth=1", "--set", "model.decoder_depth=1", "--set", "data.workers=0",
        "--set", "data.stride=2", "--set", "run.ckpt_every=1"]
SHORT_STEPS = 12  # the runs of the damage, full-disk and two-writer scenarios
# Record fields measured by the wall clock: the only ones two equal runs may disagree on.
_WALL_CLOCK = re.compile(r"^time$|_per_s$|seconds|elapsed")
_TMP = re.compile(r"\.tmp$|^\.write-test$")


@dataclass
class Row:
    """One line of the table; ``passed`` is None for a scenario this machine cannot run."""

    scenario: str
    expected: str
    observed: str
    passed: bool | None


@dataclass
class Check:
    """What one scenario observed, in order; an unmet expectation is marked and fails it."""

    notes: list[str] = field(default_factory=list)
    failed: bool = False

    def expect(self, ok: bool, observed: str) -> bool:
        self.note(observed if ok else f"✗ {observed}")
        self.failed |= not ok
        return ok

    def note(self, observed: str) -> None:
        self.notes.append(" ".join(observed.split()))  # one line: a table cell

    def row(self, scenario: str, expected: str) -> Row:
        return Row(scenario, expected, "; ".join(self.notes), not self.failed)


@dataclass
class Done:
    """A finished command: exit status (None: timed out and killed) and its output."""

    code: int | None
    stdout: str
    stderr: str


def child_env() -> dict[str, str]:
    """The children's environment: this checkout's package, one thread, no progress bars, the
    one-line error messages (no debug tracebacks)."""
    env = {k: v for k, v in os.environ.items() if k != "MOTIONMAE_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    return env


def command(args: list[str], enospc: tuple[str, int] | None = None) -> list[str]:
    """The ``motionmae`` command line; with ``enospc=(pattern, after)`` through the full-disk
    wrapper."""
    if enospc is None:
        return [sys.executable, "-m", "motionmae", *args]
    pattern, after = enospc
    return [sys.executable, str(ENOSPC_WRAPPER), pattern, "--after", str(after), "--", *args]


def run(args: list[str], cwd: Path, enospc: tuple[str, int] | None = None,
        timeout: float = 300) -> Done:
    """Run one command to its end (killed after ``timeout`` seconds)."""
    try:
        done = subprocess.run(command(args, enospc), cwd=cwd, env=child_env(), text=True,
                              errors="replace", capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        return Done(None, _text(expired.stdout), _text(expired.stderr))
    return Done(done.returncode, done.stdout, done.stderr)


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start one command in the background, its stderr into ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as stderr:
        return subprocess.Popen(command(args), cwd=cwd, env=child_env(),
                                stdout=subprocess.DEVNULL, stderr=stderr)


def wait_until(condition: Callable[[], bool], process: subprocess.Popen,
               timeout: float = 120, poll: float = 0.01) -> int | None:
    """Poll until ``condition()``; returns None then, or the exit status if the process ended
    first (``TimeoutError`` after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        code = process.poll()
        if code is not None:
            return code
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise TimeoutError(f"waited {timeout:.0f} s for the run")
        time.sleep(poll)
    return None


def stop(process: subprocess.Popen, signum: int = signal.SIGKILL, timeout: float = 60) -> int:
    """Send ``signum`` and wait for the process; its exit status."""
    process.send_signal(signum)
    return process.wait(timeout=timeout)


# -- the run folder --------------------------------------------------------------------------


def latest_name(out: Path) -> str | None:
    """What ``RUN/checkpoints/latest`` names (None: no pointer, or not text)."""
    try:
        return (out / "checkpoints" / "latest").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def latest_step(out: Path) -> int:
    """The step ``latest`` names (0 without one)."""
    match = re.fullmatch(r"step_(\d+)", latest_name(out) or "")
    return int(match.group(1)) if match else 0


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step_{step:08d}"


def temporary_leftovers(out: Path) -> list[str]:
    """Temporary files and folders under ``out`` (a killed writer's, or a failed one's)."""
    if not out.exists():
        return []
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if _TMP.search(p.name))


def is_complete(folder: Path) -> bool:
    """Whether a checkpoint folder matches its manifest (sizes and sha256)."""
    from motionmae.checkpoints.format import CheckpointError, verify

    try:
        verify(folder)
    except (CheckpointError, OSError, ValueError, KeyError):
        return False
    return True


def metric_rows(out: Path) -> list[dict] | None:
    """``metrics.jsonl`` without the wall-clock fields (None if missing or not JSON lines)."""
    try:
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        return None
    return [{k: v for k, v in r.items() if not _WALL_CLOCK.search(k)} for r in records]


def weights_differ(a: Path, b: Path) -> str | None:
    """Why two ``model.safetensors`` files hold different tensors, or None when bit-identical."""
    import torch
    from safetensors.torch import load_file

    first, second = load_file(str(a)), load_file(str(b))
    if first.keys() != second.keys():
        return "other tensor names"
    changed = [k for k in first if not torch.equal(first[k], second[k])]
    return f"{len(changed)} of {len(first)} tensors differ" if changed else None


def expect_same_run(check: Check, out: Path, reference: Path, steps: int,
                    metrics: bool = True) -> None:
    """The run in ``out`` reached ``steps`` with the reference's final weights (bit for bit),
    its metrics step for step (wall-clock fields aside) and no temporary leftovers."""
    final = checkpoint_dir(out, steps) / "model.safetensors"
    if not check.expect(final.is_file(), f"{'reached' if final.is_file() else 'no'} "
                                         f"step {steps}"):
        return
    differ = weights_differ(final, checkpoint_dir(reference, steps) / "model.safetensors")
    check.expect(differ is None, "weights equal" if differ is None else f"weights: {differ}")
    if metrics:
        ours, theirs = metric_rows(out), metric_rows(reference)
        if ours == theirs:
            check.expect(True, "metrics equal")
        else:
            check.expect(False, f"metrics differ: {_first_difference(ours, theirs)}")
    leftovers = temporary_leftovers(out)
    check.expect(not leftovers, f"{len(leftovers)} .tmp leftover(s)" if leftovers
                 else "no .tmp")


def _first_difference(ours: list[dict] | None, theirs: list[dict] | None) -> str:
    if ours is None:
        return "metrics.jsonl missing or torn"
    steps = [r.get("step") for r in ours]
    if steps != [r.get("step") for r in theirs or []]:
        return f"steps {_ranges(steps)}"
    for mine, reference in zip(ours, theirs or [], strict=False):
        keys = sorted(k for k in mine.keys() | reference.keys() if mine.get(k) != reference.get(k))
        if keys:
            return f"step {mine.get('step')}: {', '.join(keys)}"
    return "?"


def _ranges(steps: list) -> str:
    """``[1, 2, 3, 3, 4]`` as ``1-3,3-4``: where a sequence repeats or skips."""
    parts, begin = [], 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or steps[i] != steps[i - 1] + 1:
            parts.append(f"{steps[begin]}-{steps[i - 1]}" if i - 1 > begin else f"{steps[begin]}")
            begin = i
    return ",".join(parts)


def expect_one_error_line(check: Check, done: Done, command_name: str,
                          codes: tuple[int, ...]) -> None:
    """Exit status in ``codes``, and stderr says it in exactly one
    ``motionmae COMMAND: error: ...`` line, without a traceback."""
    if done.code is None:
        check.expect(False, "timed out")
        return
    check.expect(done.code in codes, f"exit {done.code}")
    lines = [line for line in done.stderr.splitlines()
             if line.startswith(f"motionmae {command_name}: error:")]
    traceback = "Traceback (most recent call last)" in done.stderr
    if traceback:
        last = [line for line in done.stderr.splitlines() if line.strip()]
        check.expect(False, f"traceback ({_short(last[-1] if last else '')})")
    elif len(lines) == 1:
        check.expect(True, f"one line: {_short(lines[0].split(': error: ', 1)[1])}")
    else:
        check.expect(False, f"{len(lines)} error lines")


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- sandboxes -------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """One scenario's folder: its inputs, its ``out`` (the only place a command may write),
    and the working folder of its commands."""

    path: Path
    watched: tuple[Path, ...]  # also checked for writes: the shared inputs
    out: Path = Path()  # default: path/out

    def __post_init__(self) -> None:
        if self.out == Path():
            self.out = self.path / "out"

    def snapshot(self) -> dict[str, tuple[int, int] | None]:
        """Every file and folder outside ``out``: (size, mtime) of files, None of folders."""
        state: dict[str, tuple[int, int] | None] = {}
        for root in (self.path, *self.watched):
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                if here == self.out:
                    dirnames.clear()
                    continue
                state[str(here)] = None
                for name in filenames:
                    info = (here / name).lstat()
                    state[str(here / name)] = (info.st_size, info.st_mtime_ns)
        return state

    def expect_nothing_outside(self, check: Check, before: dict) -> None:
        after = self.snapshot()
        changed = sorted(p for p in before.keys() | after.keys()
                         if before.get(p, 0) != after.get(p, 0))
        shown = ", ".join(os.path.relpath(p, self.path) for p in changed[:3])
        check.expect(not changed, f"wrote outside --out: {shown}" if changed
                     else "nothing outside --out")


class Bench:
    """Shared inputs of one chaos check under ``root``: the videos, the uninterrupted
    reference runs, a run stopped midway; and the sandboxes."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        from motionmae.data import make_synthetic_dataset

        self.root = root
        self.seed = seed
        videos = make_synthetic_dataset(root / "data", num_train=10, num_val=2, frames=8,
                                        size=32, seed=seed)
        self.train_list = videos.train_list
        self._references: dict[tuple[int, int], Path] = {}
        self._stopped: Path | None = None
        self._count = 0

    def sandbox(self, name: str) -> Sandbox:
        self._count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
        path = self.root / "sandboxes" / f"{self._count:02d}-{slug}"
        path.mkdir(parents=True)
        return Sandbox(path, (self.root / "data",))

    def flags(self, steps: int, log_every: int = 1) -> list[str]:
        return [*TINY, "--steps", str(steps), "--set", f"run.log_every={log_every}",
                "--set", f"run.seed={self.seed}"]

    def pretrain(self, out: Path, steps: int = SHORT_STEPS, log_every: int = 1,
                 resume: bool = False, data: Path | None = None) -> list[str]:
        """``pretrain`` arguments of a run: the first command, or its ``--resume``; a resume on
        another list (``data``) says so, as the README asks (else it is refused)."""
        head = ["pretrain", "--data", str(data or self.train_list), "--out", str(out)]
        if not resume:
            return head + self.flags(steps, log_every)
        if data is not None:
            head += ["--set", "run.resume_with_other_videos=true"]
        return [*head, "--resume"]  # as the README says: the rest from the run's config.yaml

    def reference(self, steps: int = SHORT_STEPS, log_every: int = 1) -> Path:
        """The uninterrupted run (made once)."""
        key = (steps, log_every)
        if key not in self._references:
            out = self.root / "references" / f"steps{steps}-log{log_every}"
            done = run(self.pretrain(out, steps, log_every), self.root)
            if done.code != 0:
                raise RuntimeError(f"the reference run failed: {done.stderr[-2000:]}")
            self._references[key] = out
        return self._references[key]

    def stopped_run(self) -> Path:
        """A short run stopped by SIGTERM after its third checkpoint (made once): copy it
        into a sandbox's ``out`` to continue it."""
        if self._stopped is None:
            out = self.root / "stopped"
            process = start(self.pretrain(out), self.root, self.root / "logs" / "stopped.log")
            ended = wait_until(lambda: latest_step(out) >= 3, process, poll=0.005)
            code = ended if ended is not None else stop(process, signal.SIGTERM)
            if code != 143 or latest_name(out) is None:
                raise RuntimeError(f"could not stop the run midway (exit {code})")
            self._stopped = out
        return self._stopped

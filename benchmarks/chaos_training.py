"""The chaos check's training scenarios (``benchmarks/chaos.py``): SIGKILL at random moments,
a damaged newest checkpoint, a full disk at each write path, two writers on one run folder,
and a second run into an existing one. Each returns table rows; each works in its own sandbox
and ends by checking that nothing was written outside its ``--out``."""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from chaos_runs import (
    SHORT_STEPS,
    Bench,
    Check,
    Done,
    Row,
    checkpoint_dir,
    expect_one_error_line,
    expect_same_run,
    is_complete,
    latest_name,
    latest_step,
    run,
    start,
    stop,
    wait_until,
)

KILL_LOG_EVERY = 3  # resumes land between logged steps: the metrics windows must survive


# -- SIGKILL ---------------------------------------------------------------------------------


def kill_schedule(rng: random.Random, kills: int) -> list[str]:
    """When each kill lands: ``write`` (while a checkpoint is being written), ``step`` (a
    random moment after a new checkpoint) or ``start`` (a random moment from the process start:
    imports, resume, the first steps). The first kill needs a complete checkpoint before it, so
    it is never ``start``."""
    writes, starts = max(1, 2 * kills // 5), kills // 4
    kinds = ["write"] * writes + ["start"] * starts + ["step"] * (kills - writes - starts)
    rng.shuffle(kinds)
    if kinds[0] == "start":
        first_step = kinds.index("step")
        kinds[0], kinds[first_step] = "step", "start"
    return kinds


def _temporary_checkpoints(out: Path) -> set[str]:
    try:
        return {p.name for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")}
    except OSError:
        return set()


def _kill_trigger(kind: str, out: Path, rng: random.Random,
                  process: subprocess.Popen) -> int | None:
    """Wait for the moment of a ``kind`` kill; None then, or the exit status if the run ended
    first."""
    if kind == "start":  # ~3 s from spawn to the first step on an idle 2-core machine
        return _sleep(process, rng.uniform(0.2, 2.5))
    if kind == "write":  # a checkpoint folder being written, after a complete one exists
        before, first = _temporary_checkpoints(out), latest_step(out)
        # Two new checkpoints without a temporary folder seen: written some other way; kill.
        ended = wait_until(lambda: latest_step(out) > 0 and (bool(
            _temporary_checkpoints(out) - before) or latest_step(out) > first + 1), process,
            poll=0.002)
        return ended if ended is not None else _sleep(process, rng.uniform(0, 0.02))
    first = latest_step(out)
    ended = wait_until(lambda: latest_step(out) > first, process, poll=0.005)
    return ended if ended is not None else _sleep(process, rng.uniform(0, 0.2))


def _sleep(process: subprocess.Popen, seconds: float) -> int | None:
    """Sleep ``seconds`` unless the process ends first (its exit status then)."""
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def sigkill(bench: Bench, kills: int, kinds: list[str] | None = None) -> list[Row]:
    """SIGKILL a run ``kills`` times at seeded random moments, resuming after each, then let
    it finish: weights and metrics equal the uninterrupted run's, no temporary leftovers."""
    rng = random.Random(bench.seed)
    kinds = kinds or kill_schedule(rng, kills)
    steps = 4 * len(kinds) + 10  # room for every kill: a `step` kill lets a few steps pass
    reference = bench.reference(steps, KILL_LOG_EVERY)
    box = bench.sandbox(f"sigkill {len(kinds)}")
    before = box.snapshot()
    check = Check()
    killed, in_write = 0, 0
    for episode, kind in enumerate(kinds):
        args = bench.pretrain(box.out, steps, KILL_LOG_EVERY, resume=episode > 0)
        earlier = _temporary_checkpoints(box.out)  # left by earlier kills
        process = start(args, box.path, bench.root / "logs" / f"kill{episode:02d}.log")
        ended = _kill_trigger(kind, box.out, rng, process)
        if ended is not None:
            log = (bench.root / "logs" / f"kill{episode:02d}.log").read_text().splitlines()
            reason = "the run finished" if ended == 0 else f"exit {ended}: {log[-1] if log else ''}"
            check.expect(False, f"kill {episode + 1} ({kind}) never landed: {reason}")
            break
        writing = _temporary_checkpoints(box.out) - earlier
        stop(process)
        killed += 1
        # A SIGKILLed writer cannot clean up: a temporary folder it was writing stays.
        in_write += bool(writing & _temporary_checkpoints(box.out))
    check.expect(killed == len(kinds), f"{killed} kills ({in_write} during checkpoint writes, "
                                       f"{kinds.count('start')} near process start)")
    final = run(bench.pretrain(box.out, steps, KILL_LOG_EVERY, resume=True), box.path)
    if check.expect(final.code == 0, f"final --resume exit {final.code}"):
        expect_same_run(check, box.out, reference, steps)
    box.expect_nothing_outside(check, before)
    return [check.row(f"SIGKILL x{len(kinds)}, then --resume (seed {bench.seed})",
                      "each --resume continues; weights bit-identical and metrics equal to "
                      "the uninterrupted run; no .tmp left")]


# -- a damaged newest checkpoint -------------------------------------------------------------


def _truncate(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _flip(name: str) -> Callable[[Path], None]:
    def flip(folder: Path) -> None:
        data = bytearray((folder / name).read_bytes())
        middle = len(data) // 2
        data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
        (folder / name).write_bytes(bytes(data))

    return flip


def _latest(text: bytes) -> Callable[[Path], None]:
    def point(folder: Path) -> None:
        (folder.parent / "latest").write_bytes(text)

    return point


# name -> (damage of the newest checkpoint folder, whether that folder is the damaged thing)
DAMAGES: dict[str, tuple[Callable[[Path], None], bool]] = {
    "truncated weights": (_truncate, True),
    "flipped bytes in the weights": (_flip("model.safetensors"), True),
    "flipped bytes in state.pt": (_flip("state.pt"), True),
    "missing manifest": (lambda folder: (folder / "manifest.json").unlink(), True),
    "`latest` names a missing folder": (_latest(b"step_99999999\n"), False),
    "`latest` is binary garbage": (_latest(b"\xff\xfe\x00\x9c garbage \x80\n"), False),
}


def damaged_checkpoint(bench: Bench, names: list[str] | None = None) -> list[Row]:
    """Damage the newest checkpoint of a stopped run, then ``--resume``: it falls back to the
    previous complete checkpoint (a warning names the damaged one) and ends equal to the
    uninterrupted run."""
    rows = []
    reference, stopped = bench.reference(), bench.stopped_run()
    for name in names or list(DAMAGES):
        damage, folder_damaged = DAMAGES[name]
        box = bench.sandbox(f"damaged {name}")
        shutil.copytree(stopped, box.out)
        newest = box.out / "checkpoints" / latest_name(stopped)
        damage(newest)
        before = box.snapshot()
        check = Check()
        done = run(bench.pretrain(box.out, resume=True), box.path)
        if folder_damaged:
            warned = any(newest.name in line and "WARNING" in line
                         for line in done.stderr.splitlines())
            check.expect(warned, f"{'a' if warned else 'no'} warning naming {newest.name}")
        if check.expect(done.code == 0, f"exit {done.code}"):
            expect_same_run(check, box.out, reference, SHORT_STEPS)
        else:
            check.note(_last_line(done.stderr))
        box.expect_nothing_outside(check, before)
        rows.append(check.row(f"damaged newest checkpoint: {name}",
                              "--resume falls back to the previous complete checkpoint"
                              + (" (a warning names the damaged one)" if folder_damaged else "")
                              + " and ends equal to the uninterrupted run"))
    return rows


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1][:120] if lines else ""


# -- a full disk -----------------------------------------------------------------------------

# write path -> (file-name pattern, also matching a same-folder temporary file of that name;
# how the failing run starts: continuing the stopped run, a fresh run, or continuing it over
# a list whose video copy is broken)
WRITE_PATHS: dict[str, tuple[str, str]] = {
    "weights (model.safetensors)": (r"model\.safetensors", "resume"),
    "training state (state.pt)": (r"state\.pt", "resume"),
    "manifest.json": (r"manifest\.json", "resume"),
    "`latest` pointer": (r"latest", "resume"),
    "metrics.jsonl": (r"metrics\.jsonl", "resume"),
    "env.json": (r"env\.json", "resume"),
    "bad_videos.tsv": (r"bad_videos\.tsv", "bad video"),
    "config.yaml (fresh run)": (r"config\.yaml", "fresh"),
}


def full_disk(bench: Bench, paths: list[str] | None = None) -> list[Row]:
    """ENOSPC injected at each write path (``chaos_enospc.py``): exit 4 with one line, ``latest``
    still names the previous checkpoint, and after freeing space ``--resume`` completes."""
    rows = []
    reference, stopped = bench.reference(), bench.stopped_run()
    for name in paths or list(WRITE_PATHS):
        pattern, begin = WRITE_PATHS[name]
        box = bench.sandbox(f"enospc {name}")
        data = None
        if begin != "fresh":
            shutil.copytree(stopped, box.out)
        if begin == "bad video":
            data = _list_with_a_broken_copy(bench, box.path)
        previous = latest_name(box.out)
        before = box.snapshot()
        check = Check()
        args = bench.pretrain(box.out, resume=begin != "fresh", data=data)
        done = run(args, box.path, enospc=(pattern, 0))
        refused = re.search(r"^chaos-enospc: refused (\d+)", done.stderr, re.M)
        hit = refused is not None and int(refused.group(1)) > 0
        check.expect(hit, "the write was reached" if hit else "the write was never reached")
        expect_one_error_line(check, done, "pretrain", (4,))
        _expect_latest(check, box.out, previous, exact=begin == "resume")
        # Space freed: the same command continues. A run that never saved its config is
        # continued by its own command line plus --resume (a requeued job's).
        again = [*args, "--resume"] if begin == "fresh" else args
        final = run(again, box.path)
        if check.expect(final.code == 0, f"after freeing space: exit {final.code}"):
            if begin == "bad video":  # another list: only the end is known
                done_step = checkpoint_dir(box.out, SHORT_STEPS).is_dir()
                check.expect(done_step, f"{'reached' if done_step else 'no'} step {SHORT_STEPS}")
            else:
                expect_same_run(check, box.out, reference, SHORT_STEPS)
        else:
            check.note(_last_line(final.stderr))
        box.expect_nothing_outside(check, before)
        rows.append(check.row(f"full disk (injected ENOSPC): {name}",
                              "exit 4, one line; `latest` still names the previous "
                              "checkpoint; after freeing space --resume completes"
                              + ("" if begin == "bad video" else " equal to the "
                                 "uninterrupted run")))
    return rows


def _list_with_a_broken_copy(bench: Bench, folder: Path) -> Path:
    """The training list over copies of its videos in ``folder``, the last one broken: the
    continued run meets it in its next epoch and writes bad_videos.tsv."""
    from motionmae.data import read_video_list, write_video_list

    videos = read_video_list(bench.train_list)
    entries = []
    for entry in videos.entries:
        copy = folder / "videos" / Path(entry.path).name
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(entry.path, copy)
        entries.append(type(entry)(path=copy, label=entry.label))
    broken = entries[-1].path
    broken.write_bytes(broken.read_bytes()[:200])
    listing = folder / "train.txt"
    write_video_list(listing, entries, videos.classes)
    return listing


def _expect_latest(check: Check, out: Path, previous: str | None, exact: bool) -> None:
    """``latest`` still names ``previous`` (``exact``), or at least a complete checkpoint."""
    now = latest_name(out)
    if exact:
        check.expect(now == previous, f"latest: {now}")
    elif now is None:
        check.note("no checkpoint yet")
    else:
        complete = is_complete(out / "checkpoints" / now)
        check.expect(complete, f"latest: {now}{'' if complete else ' (incomplete)'}")


def tmpfs_full_disk(bench: Bench) -> list[Row]:
    """A real full disk: the run folder on a size-limited tmpfs, filled by another file while
    the run trains. Needs root and a kernel that allows the mount; otherwise the row says so
    (the injected rows cover every write path)."""
    scenario = "full disk (64 MB tmpfs filled during the run)"
    expected = ("exit 4, one line; `latest` names a complete checkpoint; after freeing space "
                "--resume completes equal to the uninterrupted run")
    reference = bench.reference()
    box = bench.sandbox("tmpfs")
    disk = box.path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        return [Row(scenario, expected, f"not run: cannot mount a tmpfs here "
                    f"({mounted.stderr.strip() or mounted.returncode})", None)]
    try:
        out = box.out = disk / "run"
        ballast = disk / "ballast"  # the harness's own file: gone before the last snapshot
        before = box.snapshot()
        check = Check()
        process = start(bench.pretrain(out), box.path, bench.root / "logs" / "tmpfs.log")
        ended = wait_until(lambda: latest_step(out) >= 1, process, poll=0.005)
        if ended is None:
            _fill(ballast)
            ended = _sleep(process, 300)
            if ended is None:  # still running on a full disk: stop it before the unmount
                ended = stop(process)
        log = (bench.root / "logs" / "tmpfs.log").read_text()
        expect_one_error_line(check, Done(ended, "", log), "pretrain", (4,))
        _expect_latest(check, out, None, exact=False)
        ballast.unlink(missing_ok=True)
        final = run(bench.pretrain(out, resume=True), box.path)
        if check.expect(final.code == 0, f"after freeing space: exit {final.code}"):
            expect_same_run(check, out, reference, SHORT_STEPS)
        else:
            check.note(_last_line(final.stderr))
        box.expect_nothing_outside(check, before)
        return [check.row(scenario, expected)]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    block = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as handle:
        for size in (len(block), 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(block[:size])


# -- who owns a run folder -------------------------------------------------------------------


def two_writers(bench: Bench, modes: tuple[str, ...] = ("--resume", "--overwrite")) -> list[Row]:
    """A second ``pretrain`` on the folder of a running one (paused, so it surely holds the
    folder): it exits 2 naming the holder's PID; the first completes unharmed."""
    rows = []
    reference = bench.reference()
    for mode in modes:
        box = bench.sandbox(f"two writers {mode}")
        before = box.snapshot()
        check = Check()
        first = start(bench.pretrain(box.out), box.path, bench.root / "logs" / "writer1.log")
        ended = wait_until(lambda out=box.out: latest_step(out) >= 1, first, poll=0.005)
        if ended is None:
            first.send_signal(signal.SIGSTOP)
            try:
                args = (bench.pretrain(box.out, resume=True) if mode == "--resume"
                        else [*bench.pretrain(box.out), mode])
                second = run(args, box.path, timeout=120)
            finally:
                first.send_signal(signal.SIGCONT)
            expect_one_error_line(check, second, "pretrain", (2,))
            named = str(first.pid) in second.stderr
            check.expect(named, f"{'names' if named else 'does not name'} PID {first.pid}")
            ended = first.wait(timeout=300)
            if check.expect(ended == 0, f"first run: exit {ended}"):
                expect_same_run(check, box.out, reference, SHORT_STEPS)
        else:
            check.expect(False, f"the first run ended early (exit {ended})")
        box.expect_nothing_outside(check, before)
        rows.append(check.row(f"two writers: a second pretrain {mode} on a running run",
                              "the second exits 2, one line naming the first's PID; the first "
                              "completes equal to the uninterrupted run"))
    return rows


def existing_folder(bench: Bench) -> list[Row]:
    """``pretrain`` again into a finished run's folder without ``--resume``: refused naming
    ``--resume`` and ``--overwrite``, the folder untouched."""
    box = bench.sandbox("existing run folder")
    shutil.copytree(bench.reference(), box.out)
    outside = box.snapshot()
    before = {str(p): p.stat().st_mtime_ns for p in box.out.rglob("*")}
    check = Check()
    done = run(bench.pretrain(box.out), box.path)
    expect_one_error_line(check, done, "pretrain", (2,))
    line = next((x for x in done.stderr.splitlines() if "pretrain: error:" in x), "")
    names = "--resume" in line and "--overwrite" in line
    check.expect(names, f"{'names' if names else 'does not name'} --resume and --overwrite")
    after = {str(p): p.stat().st_mtime_ns for p in box.out.rglob("*")}
    check.expect(after == before, "run folder untouched" if after == before
                 else "run folder changed")
    box.expect_nothing_outside(check, outside)
    return [check.row("pretrain into an existing run folder without --resume",
                      "exit 2, one line naming --resume and --overwrite; the folder untouched")]

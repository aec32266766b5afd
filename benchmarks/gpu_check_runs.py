"""The device check's whole-run sections (``benchmarks/gpu_check.py``): ``motionmae pretrain``
in child processes, in the default mode (``--targets pixel,tracks --masking motion``) on
decoded synthetic videos.

* :func:`tracking_modes`: clips/s of one run per place tracks come from: loader workers
  (``--set tracking.where=workers``), the training step on the model's device
  (``tracking.where=step``), the track cache (``motionmae extract-tracks``, then
  ``--set cache.path=...``).
* :func:`resume`: a 1-process ``torchrun`` run (NCCL on a GPU, gloo on the CPU) stopped by
  SIGTERM after its first checkpoint, resumed with ``--resume`` to its last step, and compared
  with an uninterrupted run of the same command (final weights, logged metrics).

clips/s is the logged ``clips_per_s`` (clips over wall time of a logging window) averaged
over the windows after the first, which holds the start-up (as ``benchmarks/scaling.py``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from chaos_runs import checkpoint_dir, latest_step, metric_rows, weights_differ

from motionmae.data import make_synthetic_dataset

log = logging.getLogger("gpu_check")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODE = ["--targets", "pixel,tracks", "--masking", "motion"]


@dataclass(frozen=True)
class RunPlan:
    """The pretraining runs' sizes: model, clip, batch, length, loader and data."""

    model: str
    frames: int
    size: int
    stride: int
    batch: int
    steps: int
    log_every: int
    workers: int
    videos: int  # synthetic training videos
    video_size: int  # their side, pixels
    resume_steps: int
    resume_ckpt_every: int
    overrides: tuple[str, ...] = ()  # more KEY=VALUE for every run (a smaller model)

    @property
    def video_frames(self) -> int:
        """Frames per synthetic video: one clip's span and a margin for random starts."""
        return self.frames * self.stride + 8

    def settings(self, device: str) -> list[str]:
        """``--set`` pairs every command of the check shares (extraction too: the cache's
        key holds the clip geometry)."""
        pairs = [f"data.frames={self.frames}", f"data.size={self.size}",
                 f"data.stride={self.stride}", f"data.workers={self.workers}",
                 f"run.device={device}", f"model.size={self.model}", *self.overrides]
        return [arg for pair in pairs for arg in ("--set", pair)]


def child_env(threads: int) -> dict[str, str]:
    """The children's environment: this checkout's package first, ``threads`` OpenMP threads
    (set, not inherited: a benchmark module imported earlier may have set 1), no progress
    bars, gloo on the loopback interface."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(OMP_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def motionmae(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "motionmae", *args]


def torchrun(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "1", "-m", "motionmae", *args]


@dataclass
class Finished:
    """A child process's end: exit status (None: killed at the deadline), wall seconds and
    the tail of its stderr."""

    code: int | None
    seconds: float
    stderr: str

    def failure(self, what: str) -> str | None:
        """Why the run counts as failed (None: it exited 0)."""
        if self.code is None:
            return f"failed: {what} timed out after {self.seconds:.0f} s (section budget)"
        if self.code != 0:
            lines = [line for line in self.stderr.splitlines() if line.strip()]
            return f"failed: {what} exit {self.code}: {lines[-1] if lines else ''}"
        return None


def run_child(command: list[str], env: dict[str, str], deadline: float) -> Finished:
    """Run ``command`` to its end, or kill it at ``deadline`` (``time.monotonic()``)."""
    start = time.monotonic()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              errors="replace", timeout=max(1.0, deadline - start))
    except subprocess.TimeoutExpired as expired:
        tail = expired.stderr.decode(errors="replace") if expired.stderr else ""
        return Finished(None, time.monotonic() - start, tail[-4000:])
    return Finished(done.returncode, time.monotonic() - start, done.stderr[-4000:])


def training_videos(plan: RunPlan, out: Path) -> Path:
    """The list file of the synthetic training videos (written once under ``out/data``)."""
    return make_synthetic_dataset(out / "data", num_train=plan.videos, num_val=0,
                                  frames=plan.video_frames, size=plan.video_size).train_list


def throughput(run_dir: Path) -> dict[str, float]:
    """The run's mean logged clips/s after its first window, and its last logged loss."""
    records = [json.loads(line)
               for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    windows = [r["clips_per_s"] for r in records]
    measured = windows[1:] or windows
    return {"clips_per_s": sum(measured) / len(measured), "windows": len(measured),
            "final_loss": records[-1]["loss"]}


def tracking_modes(plan: RunPlan, device: str, threads: int, out: Path,
                   deadline: float) -> list[dict]:
    """Rows of section b: one pretraining run per place the tracks come from."""
    videos = training_videos(plan, out)
    env = child_env(threads)
    common = ["--data", str(videos), *DEFAULT_MODE, "--steps", str(plan.steps),
              "--batch-size", str(plan.batch), *plan.settings(device),
              "--set", f"run.log_every={plan.log_every}", "--set", f"run.ckpt_every={plan.steps}"]
    cache = out / "runs" / "track_cache"
    modes = {
        "workers": ["--set", "tracking.where=workers"],
        "step": ["--set", "tracking.where=step"],
        "cached": ["--set", f"cache.path={cache}"],
    }
    rows = []
    for mode, extra in modes.items():
        row: dict = {"row": mode, "videos": plan.videos, "batch": plan.batch,
                     "clip": f"{plan.frames}x{plan.size}", "model": plan.model}
        rows.append(row)
        if time.monotonic() >= deadline:
            row["status"] = "skipped: the section's budget is spent"
            continue
        if mode == "cached":
            shutil.rmtree(cache, ignore_errors=True)
            extract = run_child(motionmae([
                "extract-tracks", "--data", str(videos), "--cache", str(cache),
                "--workers", str(max(1, plan.workers)), *plan.settings(device),
                "--set", "targets.names=[pixel,tracks]", "--set", "masking.kind=motion"]),
                env, deadline)
            row["extract_seconds"] = extract.seconds
            row["extract_videos_per_s"] = plan.videos / extract.seconds
            failure = extract.failure("extract-tracks")
            if failure:
                row["status"] = failure
                continue
        run_dir = out / "runs" / f"modes_{mode}"
        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("b. pretraining with tracks from %s (%d steps)", mode, plan.steps)
        finished = run_child(motionmae(["pretrain", *common, "--out", str(run_dir), *extra]),
                             env, deadline)
        row["seconds"] = finished.seconds
        row["status"] = finished.failure("pretrain") or "ok"
        if row["status"] == "ok":
            row.update(throughput(run_dir))
    return rows


def _wait_for_checkpoint(process: subprocess.Popen, run_dir: Path, step: int,
                         deadline: float) -> None:
    """Poll until ``run_dir`` has a checkpoint at ``step`` or later, the process ends, or the
    deadline passes."""
    while (latest_step(run_dir) < step and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.005)


def resume(plan: RunPlan, device: str, threads: int, out: Path, deadline: float) -> list[dict]:
    """The row of section d: interrupted + resumed vs uninterrupted ``torchrun`` runs."""
    videos = training_videos(plan, out)
    env = child_env(threads)
    steps = plan.resume_steps
    args = ["pretrain", "--data", str(videos), *DEFAULT_MODE, "--steps", str(steps),
            "--batch-size", str(plan.batch), *plan.settings(device),
            "--set", f"run.log_every={plan.resume_ckpt_every}",
            "--set", f"run.ckpt_every={plan.resume_ckpt_every}"]
    backend = "nccl" if device.startswith("cuda") else "gloo"
    row: dict = {"row": f"torchrun, 1 process ({backend})", "steps": steps}
    interrupted, reference = out / "runs" / "resume_interrupted", out / "runs" / "resume_reference"
    for folder in (interrupted, reference):
        shutil.rmtree(folder, ignore_errors=True)

    log.info("d. torchrun pretraining, stopped by SIGTERM after its first checkpoint")
    start = time.monotonic()
    with (out / "runs" / "resume_interrupted.log").open("w") as stderr:
        process = subprocess.Popen(torchrun([*args, "--out", str(interrupted)]), env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        _wait_for_checkpoint(process, interrupted, plan.resume_ckpt_every, deadline)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # torchrun forwards it: save, then stop
        try:
            row["interrupted_exit"] = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            row["status"] = "failed: the interrupted run did not stop within the budget"
            return [row]
    row["stopped_at"] = latest_step(interrupted)
    if not 0 < row["stopped_at"] < steps:
        row["status"] = (f"failed: the run was not stopped part way (checkpoint at step "
                         f"{row['stopped_at']} of {steps}, exit {row['interrupted_exit']})")
        return [row]

    log.info("d. resuming from step %d", row["stopped_at"])
    finished = run_child(torchrun([*args, "--out", str(interrupted), "--resume"]), env,
                         deadline)
    row["final_step"] = latest_step(interrupted)
    row["seconds"] = time.monotonic() - start
    failure = finished.failure("the resumed run")
    if failure or row["final_step"] != steps:
        row["status"] = failure or f"failed: resumed run ended at step {row['final_step']}"
        return [row]
    log.info("d. the uninterrupted run, for comparison")
    finished = run_child(torchrun([*args, "--out", str(reference)]), env, deadline)
    failure = finished.failure("the uninterrupted run")
    if failure:
        row["status"] = failure
        return [row]
    ours = checkpoint_dir(interrupted, steps) / "model.safetensors"
    theirs = checkpoint_dir(reference, steps) / "model.safetensors"
    differ = weights_differ(ours, theirs)
    row["weights_equal"] = differ is None
    row["max_abs_weight_diff"] = max_abs_difference(ours, theirs)
    row["metrics_equal"] = metric_rows(interrupted) == metric_rows(reference)
    # On a GPU some kernels (atomics in backward passes) are not bitwise reproducible even
    # between two uninterrupted runs; on the CPU the runs must agree exactly.
    exact = row["weights_equal"] and row["metrics_equal"]
    row["status"] = ("ok" if exact or backend == "nccl" else
                     f"failed: resumed != uninterrupted ({differ or 'metrics differ'})")
    return [row]


def max_abs_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between two ``model.safetensors`` files' tensors."""
    from safetensors.torch import load_file

    first, second = load_file(str(a)), load_file(str(b))
    shared = first.keys() & second.keys()
    return max((float((first[k].double() - second[k].double()).abs().max()) for k in shared),
               default=float("nan"))

"""The device check: one command that measures, on a machine with one GPU within 8 minutes,
what the paper estimates of docs/benchmarks.md ("Device check") predict.

Sections (``--sections``, default all; each prints a table and appends one JSON line per row
to ``OUT/gpu_check.jsonl``, after an ``environment`` line):

a. ``step``: the pretraining step's clips/s, peak memory and achieved FLOP/s against
   Hugging Face ``VideoMAEForPreTraining``, fp32 and bf16 (``benchmarks/throughput.py``'s
   :func:`~throughput.measure`: alternating runs, the same clip, mask and optimizer);
b. ``modes``: clips/s of whole ``motionmae pretrain`` runs in the default mode (``--targets
   pixel,tracks --masking motion``) on decoded videos, with the tracks made in the loader
   workers, in the training step on the device, or read from the track cache
   (:func:`gpu_check_runs.tracking_modes`);
c. ``tracker``: the device tracker (``torch_lk``) in batches as a training step calls it: ms
   per clip, and its accuracy on ``benchmarks/tracking.py``'s known-motion clips (real frames
   translated, rotated, zoomed, with and without an occluder), next to OpenCV's ``lk``;
d. ``resume``: a 1-process ``torchrun`` run stopped part way by SIGTERM and resumed with
   ``--resume`` to its last step, compared with an uninterrupted run
   (:func:`gpu_check_runs.resume`).

Every section has a time budget; a row that would start after it is written as skipped, a
run still going at its end is killed and its row failed. Rows carry ``status``: ``ok``,
``skipped: ...`` or ``failed: ...``; the exit status is 1
when a row failed. ``--fast`` shrinks every size and run (what the test suite runs on the
CPU, well under a minute); without it the sizes are those of the estimates (16 frames at 224
and 112 px, batch 8).

Run: ``benchmarks/gpu_check.sh --out gpu_check/`` on a GPU machine;
``benchmarks/gpu_check.sh --device cpu --fast --out /tmp/gpu_check`` anywhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from gpu_check_runs import RunPlan, resume, tracking_modes

log = logging.getLogger("gpu_check")

SECTIONS = ("step", "modes", "tracker", "resume")


@dataclass(frozen=True)
class Plan:
    """Sizes, repetitions and time budgets (seconds per section) of one check."""

    step_rows: tuple[str, ...]  # throughput.py rows, SIZE-FRAMESxRESOLUTION
    step_batch: int
    step_rounds: int
    step_steps: int
    memory_precisions: tuple[str, ...]  # precisions whose peak memory is measured
    matmul_size: int  # side of the matmuls that measure the device's peak FLOP/s
    tracker_frames: int
    tracker_size: int
    tracker_grid: int
    tracker_batch: int
    tracker_repeats: int
    tracker_sources: dict[str, tuple[int, ...]] | None  # None: all of tracking.py's
    runs: RunPlan
    budgets: dict[str, float] = field(default_factory=dict)


def full_plan(cores: int) -> Plan:
    """The sizes the estimates are made for; fits 8 minutes on one A100-class GPU."""
    return Plan(
        step_rows=("tiny-16x112", "tiny-16x224", "base-16x112", "base-16x224"), step_batch=8,
        step_rounds=3, step_steps=5, memory_precisions=("fp32", "bf16"), matmul_size=8192,
        tracker_frames=16, tracker_size=224, tracker_grid=14, tracker_batch=8,
        tracker_repeats=2, tracker_sources=None,
        runs=RunPlan(model="tiny", frames=16, size=224, stride=4, batch=8, steps=60,
                     log_every=10, workers=max(1, min(8, cores - 1)), videos=16,
                     video_size=256, resume_steps=40, resume_ckpt_every=5),
        budgets={"step": 140, "modes": 150, "tracker": 60, "resume": 90})


def fast_plan(cores: int) -> Plan:
    """Tiny sizes and few steps: every code path in well under a minute on 2 CPU cores."""
    return Plan(
        step_rows=("tiny-4x32",), step_batch=2, step_rounds=1, step_steps=1,
        memory_precisions=("fp32",), matmul_size=256,
        tracker_frames=8, tracker_size=64, tracker_grid=4, tracker_batch=3,
        tracker_repeats=1, tracker_sources={"carphone_pristine.mp4": (0,)},
        runs=RunPlan(model="tiny", frames=8, size=64, stride=1, batch=4, steps=6, log_every=2,
                     workers=1, videos=8, video_size=64, resume_steps=6, resume_ckpt_every=2,
                     overrides=("model.patch_size=8", "model.depth=2",
                                "model.decoder_depth=1")),
        budgets={"step": 60, "modes": 60, "tracker": 30, "resume": 60})


class Report:
    """The rows so far: one JSON line each in ``path``, a table per section on stdout."""

    def __init__(self, path: Path, common: dict) -> None:
        self.path, self.common, self.failed = path, common, 0
        path.write_text("")

    def write(self, section: str, rows: list[dict]) -> None:
        with self.path.open("a") as handle:
            for row in rows:
                record = {"section": section, **self.common, **row}
                # strict JSON: a figure not measured (nan) is null
                record = {k: None if isinstance(v, float) and math.isnan(v) else v
                          for k, v in record.items()}
                handle.write(json.dumps(record, allow_nan=False) + "\n")
                self.failed += str(row.get("status", "ok")).startswith("failed")

    def table(self, title: str, columns: list[tuple[str, str, str]], rows: list[dict]) -> None:
        """Print ``rows`` under ``title``: ``columns`` are ``(header, key, format)``; a row's
        status other than ok follows its figures."""
        cells = [[h for h, _, _ in columns] + ["status"]]
        for row in rows:
            cells.append([_cell(row.get(key), fmt) for _, key, fmt in columns]
                         + [str(row.get("status", "ok"))])
        print(f"\n{title}")
        print("| " + " | ".join(cells[0]) + " |")
        print("|" + "---|" * len(cells[0]))
        for line in cells[1:]:
            print("| " + " | ".join(line) + " |")


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, fmt)


def step_section(plan: Plan, device: str, threads: int, report: Report, deadline: float) -> None:
    """a. The training step against Hugging Face VideoMAE, fp32 and bf16."""
    import throughput

    precisions = ["fp32", "bf16"]
    peaks = {p: throughput.matmul_peak(dtype, n=plan.matmul_size, repeats=3, device=device)
             for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    rows = []
    for spec in plan.step_rows:
        for precision in precisions:
            case = throughput.Case.parse(spec, plan.step_batch, precision, device=device)
            row = {"row": case.name, "model": case.size, "clip": spec.split("-")[1],
                   "batch": case.batch, "precision": precision}
            rows.append(row)
            if precision == "bf16" and device.startswith("cuda") and not (
                    torch.cuda.is_bf16_supported()):
                row["status"] = "not supported by this GPU"
                continue
            if time.monotonic() >= deadline:
                row["status"] = "skipped: the section's budget is spent"
                continue
            try:
                result = throughput.measure(case, plan.step_rounds, plan.step_steps, threads,
                                            memory=precision in plan.memory_precisions)
            except torch.OutOfMemoryError:
                row["status"] = "failed: out of memory"
                continue
            speed, peak_mb = result.clips_per_s, result.peak_mb
            # the faster of fp32 and bf16 for bf16 rows: autocast leaves some work in fp32
            peak = max(peaks.values()) if precision == "bf16" else peaks["fp32"]
            row.update(
                clips_per_s_mm=speed["motionmae"], clips_per_s_hf=speed["videomae"],
                speed_ratio=speed["motionmae"] / speed["videomae"],
                peak_mb_mm=peak_mb["motionmae"], peak_mb_hf=peak_mb["videomae"],
                memory_ratio=peak_mb["motionmae"] / peak_mb["videomae"],
                gflop_per_clip_mm=result.flops["motionmae"] / case.batch / 1e9,
                gflop_per_clip_hf=result.flops["videomae"] / case.batch / 1e9,
                status="ok")
            row["gflop_per_s_mm"] = row["gflop_per_clip_mm"] * speed["motionmae"]
            row["peak_fraction_mm"] = row["gflop_per_s_mm"] / peak
    report.write("step", rows)
    report.table(
        f"a. training step vs Hugging Face VideoMAE on {device} (tube mask 0.9, pixel target; "
        f"matmul peak {peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} bf16)",
        [("row", "row", "s"), ("clips/s mm", "clips_per_s_mm", ".2f"),
         ("clips/s hf", "clips_per_s_hf", ".2f"), ("ratio", "speed_ratio", ".2f"),
         ("peak MB mm", "peak_mb_mm", ".0f"), ("peak MB hf", "peak_mb_hf", ".0f"),
         ("ratio", "memory_ratio", ".2f"), ("GFLOP/clip mm", "gflop_per_clip_mm", ".3g"),
         ("GFLOP/s mm", "gflop_per_s_mm", ".1f"), ("of peak", "peak_fraction_mm", ".0%")],
        rows)


def tracker_section(plan: Plan, device: str, threads: int, report: Report,
                    deadline: float) -> None:
    """c. The device tracker's ms per clip in batches and its accuracy, next to OpenCV's."""
    import tracking

    from motionmae.motion import grid_queries, make_tracker
    from motionmae.motion.torch_lk import TorchLKConfig

    size = plan.tracker_size
    images = tracking.load_base_images(sources=plan.tracker_sources)
    cases = tracking.make_cases(images, np.random.default_rng(0), plan.tracker_frames, size)
    queries = grid_queries(size, size, plan.tracker_grid)
    frames = [clip.frames for _, _, clip in cases]
    config = TorchLKConfig(device=device)
    geometry = {"clip": f"{plan.tracker_frames}x{size}", "points": len(queries),
                "clips": len(cases)}
    log.info("c. torch_lk on %s: %d clips of %s, batches of %d", device, len(cases),
             geometry["clip"], plan.tracker_batch)
    tracking.track_in_batches(config, frames[:plan.tracker_batch], queries, plan.tracker_batch,
                              1, device)  # warm-up: device start-up, allocator
    ms, tracks, visible = tracking.track_in_batches(config, frames, queries, plan.tracker_batch,
                                                    plan.tracker_repeats, device)
    rows = [{"row": f"torch_lk on {device}, batches of {plan.tracker_batch}",
             "ms_per_clip": ms, **geometry,
             **_accuracy(cases, tracks, visible, queries, tracking.score)}]
    if time.monotonic() < deadline:
        lk = make_tracker("lk")
        start, found = time.perf_counter(), [lk.track(f, queries) for f in frames]
        rows.append({"row": "lk (OpenCV) on the CPU, one clip per call",
                     "ms_per_clip": 1000 * (time.perf_counter() - start) / len(frames),
                     **geometry, **_accuracy(cases, np.stack([t for t, _ in found]),
                                             np.stack([v for _, v in found]), queries,
                                             tracking.score)})
    else:
        rows.append({"row": "lk (OpenCV) on the CPU", "status": "skipped: budget spent"})
    report.write("tracker", rows)
    report.table(
        f"c. the device tracker (torch_lk: window {config.window}, {config.levels} levels, "
        f"{config.iterations} iterations), {len(cases)} known-motion clips of "
        f"{geometry['clip']}, {len(queries)} points",
        [("row", "row", "s"), ("ms/clip", "ms_per_clip", ".1f"),
         ("delta_avg", "delta_avg", ".4f"), ("occlusion acc", "occlusion_accuracy", ".4f"),
         ("median EPE px", "median_epe", ".3f"), ("AJ", "average_jaccard", ".3f"),
         ("delta_avg translation", "delta_avg_translation", ".3f")], rows)


def _accuracy(cases: list, tracks: np.ndarray, visible: np.ndarray, queries: np.ndarray,
              score: Callable[..., dict[str, float]]) -> dict:
    """Mean TAP-Vid metrics over the clips, delta_avg per motion kind, and status ok."""
    scores = [score(clip, t, v, queries) for (_, _, clip), t, v in zip(cases, tracks, visible,
                                                                        strict=True)]
    result: dict = {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
    for kind in dict.fromkeys(kind for _, kind, _ in cases):
        result[f"delta_avg_{kind}"] = float(np.mean(
            [s["delta_avg"] for (_, k, _), s in zip(cases, scores, strict=True) if k == kind]))
    return {**result, "status": "ok"}


def modes_section(plan: Plan, device: str, threads: int, report: Report,
                  deadline: float, out: Path) -> None:
    """b. The default mode's clips/s with tracks from workers, the step, or the cache."""
    rows = tracking_modes(plan.runs, device, threads, out, deadline)
    report.write("modes", rows)
    runs = plan.runs
    report.table(
        f"b. motionmae pretrain, default mode (pixel,tracks; motion masking), {runs.model} "
        f"{runs.frames}x{runs.size}, batch {runs.batch}, {runs.steps} steps, "
        f"{runs.workers} loader worker(s), {runs.videos} decoded synthetic videos",
        [("tracks from", "row", "s"), ("clips/s", "clips_per_s", ".2f"),
         ("run s", "seconds", ".1f"), ("extraction s", "extract_seconds", ".1f"),
         ("final loss", "final_loss", ".3f")], rows)
    for row in rows:
        if "note" in row:
            log.info("b. %s: %s", row["row"], row["note"])


def resume_section(plan: Plan, device: str, threads: int, report: Report,
                   deadline: float, out: Path) -> None:
    """d. A 1-process torchrun run stopped part way and resumed."""
    rows = resume(plan.runs, device, threads, out, deadline)
    report.write("resume", rows)
    report.table(
        "d. torchrun pretraining stopped by SIGTERM after its first checkpoint, then --resume",
        [("run", "row", "s"), ("steps", "steps", "d"), ("stopped at", "stopped_at", "d"),
         ("final step", "final_step", "d"), ("weights = uninterrupted", "weights_equal", ""),
         ("max abs diff", "max_abs_weight_diff", ".2e"),
         ("metrics = uninterrupted", "metrics_equal", "")], rows)


def environment(device: str, threads: int, fast: bool) -> dict:
    """What the figures were measured on."""
    values = {"device": device, "fast": fast, "torch": torch.__version__,
              "python": platform.python_version(), "cpu_cores": os.cpu_count(),
              "torch_threads": threads}
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(device)
        values.update(gpu=properties.name, gpu_memory_gb=properties.total_memory / 2**30,
                      cuda=torch.version.cuda)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--fast", action="store_true",
                        help="tiny sizes and few steps (the test suite's run on the CPU)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"),
                        help="folder for gpu_check.jsonl, the runs and their data")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads here and OpenMP threads of the child runs")
    args = parser.parse_args(argv)
    sections = args.sections.split(",")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda: torch {torch.__version__} sees no CUDA device "
                     f"(built with CUDA {torch.version.cuda or 'none'}); on a machine without "
                     "a GPU run --device cpu (with --fast for the quick check)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%X")
    torch.set_num_threads(args.threads)
    plan = (fast_plan if args.fast else full_plan)(os.cpu_count() or 1)
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(args.device, args.threads, args.fast)
    report = Report(args.out / "gpu_check.jsonl", {"device": args.device, "fast": args.fast})
    report.write("environment", [{"row": "environment", **env, "status": "ok"}])
    log.info("device check on %s (%s), budgets %s s", env.get("gpu", args.device),
             "fast" if args.fast else "full", plan.budgets)
    runners: dict[str, Callable[[float], None]] = {
        "step": lambda d: step_section(plan, args.device, args.threads, report, d),
        "modes": lambda d: modes_section(plan, args.device, args.threads, report, d, args.out),
        "tracker": lambda d: tracker_section(plan, args.device, args.threads, report, d),
        "resume": lambda d: resume_section(plan, args.device, args.threads, report, d,
                                           args.out),
    }
    begin = time.monotonic()
    for name in sections:
        start = time.monotonic()
        try:
            runners[name](start + plan.budgets[name])
        except Exception as error:  # one broken section must not hide the others' figures
            log.error("section %s failed:\n%s", name, traceback.format_exc())
            report.write(name, [{"row": name, "status": f"failed: {error!r}"}])
        log.info("section %s: %.0f s (budget %.0f s)", name, time.monotonic() - start,
                 plan.budgets[name])
    log.info("device check: %.0f s, %d failed row(s); rows in %s", time.monotonic() - begin,
             report.failed, report.path)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())

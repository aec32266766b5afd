"""Pretraining-step throughput and peak memory: motionmae against transformers' VideoMAE.

Both models are built from the same configuration (no weights loaded) and trained on the same
clip with the same tube mask (ratio 0.9) and the same optimizer (AdamW, fused where the build has
it). One step = forward (including the norm-pix pixel target and the masked MSE) + backward +
optimizer step; generating the mask is the data pipeline's job and is not timed for either.

Method:
- clips/s: both models live in this process with the same thread count; runs alternate
  (A, B, then B, A, ...) and each row reports the median over ``--rounds`` runs of ``--steps``
  steps, after 2 warm-up steps each.
- peak memory on the CPU: each (model, row, precision) runs in a fresh subprocess: a miniature step
  first (so lazy imports and kernel set-up are not counted), then the RSS high-water mark is
  reset (``/proc/self/clear_refs``) and the model is built and trained for 2 steps; peak =
  ``VmHWM`` minus the RSS before building. Parameters, gradients, optimizer state, the batch
  and activations are included; glibc's mmap threshold is set to 64 KiB in these processes so
  that freed tensors are returned to the OS and the RSS follows live memory, not heap slack.
  On a GPU (``--device cuda``): in this process, the peak of the caching allocator's
  allocated bytes (live tensors, not cached blocks) over building the model and 2 steps,
  above what was allocated before.
- GFLOP/s: FLOPs of one forward + backward counted by ``torch.utils.flop_counter`` with SDPA
  forced to its math backend (the counter does not see the CPU flash kernel), divided by the
  measured step time; "% peak" relates that to the best of a few large 4096^2 matmuls on
  this machine (fp32 for fp32 rows; the faster of fp32 and bf16 for bf16 rows, since autocast
  leaves some work in fp32).

On a GPU every timed run ends with ``torch.cuda.synchronize()`` (and starts after one), so
the clock sees the work, not its queueing. fp32 is plain fp32 there (TF32 is not enabled).

Run: ``python benchmarks/throughput.py`` (defaults: rows small-16x224 and tiny-16x112, batch 4,
fp32 and bf16; several minutes on 2 CPU cores). ``--explain`` also reports torch.compile graph
breaks of the motionmae step.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from motionmae.config import IMAGENET_MEAN, IMAGENET_STD, MaskingConfig
from motionmae.masking import build_mask_generator
from motionmae.models import create_model
from motionmae.targets import PixelTarget, PixelTargetConfig, masked_mse
from motionmae.tokens import TokenGrid, mask_to_indices

log = logging.getLogger("throughput")

IMPLS = ("motionmae", "videomae")
MASK_RATIO = 0.9


@dataclass(frozen=True)
class Case:
    """One benchmark row: model size, clip shape, batch and precision."""

    size: str
    frames: int
    resolution: int
    batch: int
    precision: str
    compile: bool = False
    device: str = "cpu"

    @classmethod
    def parse(cls, row: str, batch: int, precision: str, compile: bool = False,
              device: str = "cpu") -> Case:
        """``"small-16x224"`` -> ``Case("small", 16, 224, ...)``."""
        size, shape = row.split("-")
        frames, resolution = shape.split("x")
        return cls(size, int(frames), int(resolution), batch, precision, compile, device)

    @property
    def name(self) -> str:
        name = f"{self.size}-{self.frames}x{self.resolution} b{self.batch} {self.precision}"
        return name + (" compiled" if self.compile else "")

    @property
    def grid(self) -> TokenGrid:
        return TokenGrid(self.frames, self.resolution, self.resolution)

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        synchronize(self.device)


def synchronize(device: str) -> None:
    """Wait for the work queued on a GPU (nothing to wait for on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW, fused when this build has a fused kernel for the parameters' device."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=1.5e-4, weight_decay=0.05, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(model.parameters(), lr=1.5e-4, weight_decay=0.05)


class Runner:
    """A model, its optimizer and one fixed batch; ``step()`` is one training step."""

    def __init__(self, case: Case) -> None:
        self.case = case
        grid = case.grid
        generator = torch.Generator().manual_seed(0)
        self.clip = torch.randn(case.batch, 3, grid.frames, grid.height, grid.width,
                                generator=generator)
        masking = build_mask_generator(MaskingConfig(kind="tube", ratio=MASK_RATIO), grid)
        self.num_visible = masking.num_visible
        self.mask = masking({"clip": self.clip}, generator).to(case.device)
        self.clip = self.clip.to(case.device)
        self.model: torch.nn.Module
        self.optimizer: torch.optim.Optimizer

    def maybe_compile(self) -> None:
        """``model.compile()`` in place when the case asks for it (as the trainer does)."""
        if self.case.compile:
            self.model.compile()

    def loss(self) -> torch.Tensor:
        raise NotImplementedError

    def step(self) -> None:
        with self.case.autocast():
            loss = self.loss()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class MotionMAERunner(Runner):
    def __init__(self, case: Case) -> None:
        super().__init__(case)
        torch.manual_seed(0)
        self.model = create_model(case.size, case.grid).to(case.device)
        self.target = PixelTarget(PixelTargetConfig(norm_pix=True), case.grid,
                                  IMAGENET_MEAN, IMAGENET_STD)
        self.optimizer = make_optimizer(self.model)
        self.maybe_compile()

    def loss(self) -> torch.Tensor:
        visible_idx, masked_idx = mask_to_indices(self.mask, self.num_visible)
        pred = self.model(self.clip, visible_idx, masked_idx)["pixel"]
        with torch.no_grad(), torch.autocast(self.case.device_type, enabled=False):
            values, weight = self.target({"clip": self.clip})
        return masked_mse(pred.float(), values, masked_idx, weight)


class VideoMAERunner(Runner):
    def __init__(self, case: Case) -> None:
        super().__init__(case)
        from transformers import VideoMAEConfig, VideoMAEForPreTraining

        cfg = create_model(case.size, case.grid).cfg
        config = VideoMAEConfig(
            image_size=case.resolution, patch_size=16, num_frames=case.frames, tubelet_size=2,
            hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth,
            num_attention_heads=cfg.num_heads, intermediate_size=int(cfg.embed_dim * 4),
            decoder_hidden_size=cfg.decoder_dim, decoder_num_hidden_layers=cfg.decoder_depth,
            decoder_num_attention_heads=cfg.decoder_heads,
            decoder_intermediate_size=int(cfg.decoder_dim * 4),
            norm_pix_loss=True, use_mean_pooling=False, qkv_bias=True,
        )
        torch.manual_seed(0)
        self.model = VideoMAEForPreTraining(config).to(case.device)
        self.attn_implementation = self.model.config._attn_implementation
        self.pixel_values = self.clip.transpose(1, 2).contiguous()  # VideoMAE takes [B,T,C,H,W]
        del self.clip  # one copy of the batch per model
        self.optimizer = make_optimizer(self.model)
        self.maybe_compile()

    def loss(self) -> torch.Tensor:
        return self.model(self.pixel_values, bool_masked_pos=self.mask).loss


RUNNERS: dict[str, Callable[[Case], Runner]] = {
    "motionmae": MotionMAERunner,
    "videomae": VideoMAERunner,
}


def time_steps(runner: Runner, steps: int) -> float:
    """Clips per second over ``steps`` consecutive steps."""
    runner.case.sync()
    start = time.perf_counter()
    for _ in range(steps):
        runner.step()
    runner.case.sync()
    return steps * runner.case.batch / (time.perf_counter() - start)


def alternating_throughput(runners: dict[str, Runner], rounds: int, steps: int
                           ) -> dict[str, list[float]]:
    """Warm up each runner (2 steps), then time them in alternating order; clips/s per run."""
    for runner in runners.values():
        for _ in range(2):
            runner.step()
    results: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            results[name].append(time_steps(runners[name], steps))
    return results


def count_flops(runner: Runner) -> float:
    """FLOPs of one forward + backward (fp32, math attention so the counter sees it)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        runner.loss().backward()
    runner.optimizer.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, n: int = 4096, repeats: int = 5,
                device: str = "cpu") -> float:
    """Best GFLOP/s of an ``n x n`` matmul in ``dtype`` on ``device``."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_high_water_mark() -> int:
    """Peak resident set size since the last :func:`reset_high_water_mark`, in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_high_water_mark() -> None:
    """Set the peak RSS to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def memory_worker(impl: str, case: Case) -> dict[str, float]:
    """Peak RSS growth (MB) of building ``impl`` and running 2 training steps, measured in a
    fresh process: a miniature run first loads every lazily imported module and kernel, then
    the high-water mark is reset and the real run measured against the RSS at that point."""
    miniature = RUNNERS[impl](dataclasses.replace(case, frames=4, resolution=32, batch=1))
    miniature.step()
    del miniature
    gc.collect()
    baseline = current_rss()
    reset_high_water_mark()
    runner = RUNNERS[impl](case)
    for _ in range(2):
        runner.step()
    return {"peak_mb": (rss_high_water_mark() - baseline) / 2**20}


def cuda_peak_memory(impl: str, case: Case) -> float:
    """Peak CUDA memory (MB) of building ``impl`` and running 2 training steps: the caching
    allocator's allocated bytes (live tensors) above those allocated before."""
    gc.collect()
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated(case.device)
    torch.cuda.reset_peak_memory_stats(case.device)
    runner = RUNNERS[impl](case)
    for _ in range(2):
        runner.step()
    peak = torch.cuda.max_memory_allocated(case.device)
    del runner
    gc.collect()
    torch.cuda.empty_cache()
    return (peak - baseline) / 2**20


def peak_memory(impl: str, case: Case, threads: int) -> float:
    """Peak memory (MB) of a training step of ``impl``: on a GPU the allocator's peak
    (:func:`cuda_peak_memory`), on the CPU the RSS growth measured in a fresh subprocess."""
    if case.device_type == "cuda":
        return cuda_peak_memory(impl, case)
    command = [
        sys.executable, __file__, "--memory-worker", impl,
        "--rows", f"{case.size}-{case.frames}x{case.resolution}", "--batch", str(case.batch),
        "--precision", case.precision, "--threads", str(threads),
    ] + (["--compile"] if case.compile else [])
    # glibc keeps freed heap chunks below its mmap threshold in the process; with a low
    # threshold freed tensors leave the RSS, so the high-water mark tracks live memory.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


def step_flops(case: Case) -> dict[str, float]:
    """FLOPs of one forward + backward of each implementation, counted eagerly in fp32 (the
    same for every precision and for compiled runs of the row: counted once)."""
    return _eager_flops(dataclasses.replace(case, precision="fp32", compile=False))


@functools.cache
def _eager_flops(case: Case) -> dict[str, float]:
    return {name: count_flops(RUNNERS[name](case)) for name in IMPLS}


@dataclass
class Measured:
    """One row's figures per implementation: clips/s (median of the alternating runs, and
    every run), peak memory in MB (nan when not measured) and FLOPs per step."""

    clips_per_s: dict[str, float]
    runs: dict[str, list[float]]
    peak_mb: dict[str, float]
    flops: dict[str, float]


def measure(case: Case, rounds: int, steps: int, threads: int, memory: bool = True) -> Measured:
    """Time both implementations on ``case`` (alternating), then their peak memory."""
    flops = step_flops(case)
    runners = {name: RUNNERS[name](case) for name in IMPLS}
    log.info("%s: timing (%d rounds x %d steps), reference attention: %s", case.name,
             rounds, steps, runners["videomae"].attn_implementation)
    runs = alternating_throughput(runners, rounds, steps)
    del runners
    gc.collect()
    peak = {name: float("nan") for name in IMPLS}
    if memory:
        peak = {name: peak_memory(name, case, threads) for name in IMPLS}
    return Measured({name: statistics.median(values) for name, values in runs.items()},
                    runs, peak, flops)


def explain(case: Case) -> str:
    """torch.compile (dynamo) graph and graph-break count of the motionmae training loss."""
    import torch._dynamo

    runner = MotionMAERunner(dataclasses.replace(case, compile=False))
    result = torch._dynamo.explain(runner.loss)()
    return (f"dynamo explain ({case.name}): {result.graph_count} graph(s), "
            f"{result.graph_break_count} graph break(s) {result.break_reasons or ''}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="small-16x224,tiny-16x112",
                        help="comma-separated SIZE-FRAMESxRESOLUTION")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precision", default="fp32,bf16", help="fp32, bf16 or both")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs per model and row")
    parser.add_argument("--steps", type=int, default=0,
                        help="steps per timed run (0: 2 for 224 px rows, 6 otherwise)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--explain", action="store_true", help="report compile graph breaks")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile both models (model.compile(), as the trainer does)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:i")
    parser.add_argument("--memory-worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cases = [Case.parse(row, args.batch, precision, args.compile, args.device)
             for row in args.rows.split(",") for precision in args.precision.split(",")]

    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, cases[0])))
        return

    peaks = {"fp32": matmul_peak(torch.float32, device=args.device)}
    if "bf16" in args.precision:
        peaks["bf16"] = matmul_peak(torch.bfloat16, device=args.device)
    log.info("torch %s, %s, %d threads; matmul peak: %s", torch.__version__, args.device,
             args.threads,
             ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peaks.items()))
    if args.explain:
        log.info(explain(cases[0]))

    header = (f"{'row':<26}{'clips/s mm':>11}{'clips/s hf':>11}{'ratio':>7}"
              f"{'peak MB mm':>11}{'peak MB hf':>11}{'ratio':>7}"
              f"{'GFLOP/step mm/hf':>18}{'GFLOP/s mm (peak%)':>20}{'GFLOP/s hf (peak%)':>20}")
    lines = [header, "-" * len(header)]
    for case in cases:
        steps = args.steps or (2 if case.resolution >= 224 else 6)
        result = measure(case, args.rounds, steps, args.threads, memory=not args.no_memory)
        speed, memory = result.clips_per_s, result.peak_mb
        log.info("  clips/s runs: %s",
                 {n: [round(v, 2) for v in vs] for n, vs in result.runs.items()})
        gflops = {name: result.flops[name] / 1e9 for name in IMPLS}
        achieved = {name: gflops[name] * speed[name] / case.batch for name in IMPLS}
        peak = max(peaks.values()) if case.precision == "bf16" else peaks["fp32"]
        lines.append(
            f"{case.name:<26}{speed['motionmae']:>11.2f}{speed['videomae']:>11.2f}"
            f"{speed['motionmae'] / speed['videomae']:>7.2f}"
            f"{memory['motionmae']:>11.0f}{memory['videomae']:>11.0f}"
            f"{memory['motionmae'] / memory['videomae']:>7.2f}"
            f"{gflops['motionmae']:>9.0f}/{gflops['videomae']:<8.0f}"
            + "".join(f"{achieved[n]:>12.1f} ({100 * achieved[n] / peak:>4.0f}%)" for n in IMPLS)
        )
        log.info(lines[-1])
    print("\n".join(["", *lines]))


if __name__ == "__main__":
    main()

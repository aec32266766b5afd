"""Paper estimates of what the device check (``benchmarks/gpu_check.py``) measures on a GPU:
FLOPs per clip of the pretraining step and of the device tracker, bytes per clip moved from
host to device, and the clips/s they predict on an A100-class GPU at a stated utilisation.

Step FLOPs (multiply-add = 2) from the model config: the tubelet embedding and the encoder
over the ``V`` visible tokens (the default masking ratio: 0.9 from 1,568 tokens up, else
0.75, tube-rounded), each target's decoder over all ``L`` tokens, its head over the ``M``
hidden ones. A block of width ``d`` over ``N`` tokens costs ``24 N d^2`` (qkv, projection,
4x MLP) + ``4 N^2 d`` (scores and weighted sum). Forward + backward = 3x forward, less one
forward of the tubelet embedding (the clip needs no gradient); once per step, the embedding
kernel is folded from the frame-difference basis (``model.difference_gain``: a ``tubelet x
tubelet`` mix of each kernel row, and its gradient). Norms, softmax, GELU and the
optimizer are left out (element-wise: memory-bound, a few % of the time on a GPU at these
widths). ``--verify`` compares with ``torch.utils.flop_counter`` on the real models.

Tracker FLOPs: the batched pyramidal LK (:mod:`motionmae.motion.batched_lk`) runs every
iteration of every level for every point (converged points are masked, not skipped), so
its work is fixed: per point, pair of frames and LK call (a step, then its backward check)
and level, the template (3 bilinear channels of ``w^2`` samples, gradient matrix and gain:
``60 w^2``) and ``iterations`` x (one bilinear channel and the update: ``18 w^2``); grey
levels, pyramids and gradients add ~40 FLOPs per pixel and frame. The tracker is small
element-wise kernels, so its time on a GPU is set by their number: counted here by running
one call on the CPU under a dispatch counter.

Run: ``python benchmarks/gpu_estimates.py [--verify]`` (seconds; ``--verify`` a minute).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from motionmae.config import ModelConfig
from motionmae.masking import default_mask_ratio
from motionmae.motion.lk import LKConfig
from motionmae.tokens import TokenGrid

# A100 (SXM) dense peaks, TFLOP/s: plain fp32 (TF32 is not enabled) and bf16 tensor cores.
A100_PEAK = {"fp32": 19.5, "bf16": 312.0}
# Assumed share of that peak a step sustains: tiny's 192-wide matmuls and 3-head attention
# cannot fill the GPU, base's 768-wide ones come closer.
UTILISATION = {"tiny": 0.15, "base": 0.40}
BATCH = 8  # clips per step: the check's
LAUNCH_US = 6.0  # assumed GPU time of one small kernel (launch + a few microseconds of work)
TARGET_DIMS = {"pixel": None, "tracks": 8}  # None: the tubelet's pixels; tracks: 2x2 points


@dataclass(frozen=True)
class Geometry:
    """A clip's token counts at the default masking ratio."""

    grid: TokenGrid
    ratio: float

    @classmethod
    def of(cls, frames: int, size: int, ratio: float | None = None) -> Geometry:
        grid = TokenGrid(frames, size, size)
        return cls(grid, default_mask_ratio(grid.num_tokens) if ratio is None else ratio)

    @property
    def visible(self) -> int:
        return self.grid.num_visible(self.ratio)

    @property
    def hidden(self) -> int:
        return self.grid.num_tokens - self.visible


def block_flops(tokens: int, width: int) -> float:
    """Forward FLOPs of one pre-norm transformer block (MLP ratio 4)."""
    return 24 * tokens * width**2 + 4 * tokens**2 * width


def step_flops(size: str, geometry: Geometry, targets: tuple[str, ...], batch: int = 1
               ) -> float:
    """Forward + backward FLOPs of the pretraining step on ``batch`` clips."""
    cfg = ModelConfig(size=size).resolved(num_decoders=len(targets))
    grid, v, m = geometry.grid, geometry.visible, geometry.hidden
    fold = 0.0
    if cfg.difference_gain > 0 and grid.tubelet > 1:  # forward and weight gradient
        fold = 2 * 2 * cfg.embed_dim * grid.patch_dim * grid.tubelet
    embed = 2 * v * grid.patch_dim * cfg.embed_dim
    forward = embed + cfg.depth * block_flops(v, cfg.embed_dim)
    for name in targets:
        out = TARGET_DIMS[name] or grid.patch_dim
        forward += (2 * v * cfg.embed_dim * cfg.decoder_dim
                    + cfg.decoder_depth * block_flops(grid.num_tokens, cfg.decoder_dim)
                    + 2 * m * cfg.decoder_dim * out)
    return batch * (3 * forward - embed) + fold


def counted_step_flops(size: str, geometry: Geometry, targets: tuple[str, ...]) -> float:
    """The same, counted by ``FlopCounterMode`` on the real model (one clip, math attention)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from motionmae.models import create_model
    from motionmae.tokens import mask_to_indices

    grid = geometry.grid
    dims = {name: TARGET_DIMS[name] or grid.patch_dim for name in targets}
    model = create_model(size, grid, dims)
    clip = torch.randn(1, 3, grid.frames, grid.height, grid.width)
    mask = torch.ones(1, grid.num_tokens, dtype=torch.bool)
    mask[0, torch.randperm(grid.num_tokens)[:geometry.visible]] = False
    visible_idx, masked_idx = mask_to_indices(mask, geometry.visible)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        out = model(clip, visible_idx, masked_idx)
        sum(value.square().mean() for value in out.values()).backward()
    return float(counter.get_total_flops())


def tracker_flops(frames: int, size: int, points: int, cfg: LKConfig) -> float:
    """FLOPs of the batched LK tracker for one clip, queries at frame 0 (one sweep)."""
    from motionmae.motion.batched_lk import pyramid_depth

    levels = pyramid_depth(size, size, cfg.window, cfg.levels) + 1
    window = cfg.window**2
    per_call = levels * (60 * window + cfg.iterations * 18 * window)
    per_pair = 2 * per_call + 2 * 14 * cfg.patch**2 + 5 * points  # + appearance, neighbours
    return (frames - 1) * points * per_pair + frames * 40 * size * size


def tracker_kernels(frames: int, size: int, grid: int, batch: int = 1) -> tuple[int, int]:
    """``(operators, views among them)`` one ``track_lk_batched`` call dispatches, counted on
    the CPU; the same for any batch size. Each operator costs the host its dispatch; each
    one that is not a view (a reshape, slice, expand) is about one GPU kernel."""
    import numpy as np
    from torch.utils._python_dispatch import TorchDispatchMode

    from motionmae.motion import grid_queries, track_lk_batched

    class Count(TorchDispatchMode):
        calls = views = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            Count.views += func.is_view
            return func(*args, **(kwargs or {}))

    clip = torch.randint(0, 255, (batch, frames, size, size, 3), dtype=torch.uint8)
    queries = torch.from_numpy(np.stack([grid_queries(size, size, grid)] * batch))
    with Count():
        track_lk_batched(clip, queries)
    return Count.calls, Count.views


def host_bytes(frames: int, size: int, points: int) -> dict[str, int]:
    """Bytes per clip the loader hands to the device: the normalised float32 clip, the tracks
    (float32 x, y) with their visibility, and the uint8 frames a step tracker would read if
    it did not take its grey levels from the clip already there."""
    return {"clip": 3 * frames * size * size * 4, "tracks": frames * points * (2 * 4 + 1),
            "uint8 frames": 3 * frames * size * size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verify", action="store_true",
                        help="also count the step's FLOPs on the real models (CPU)")
    args = parser.parse_args()
    print("| model | clip | hidden | tokens L / visible V | targets | GFLOP per clip "
          "(fwd+bwd) | A100 fp32 clips/s | A100 bf16 clips/s |"
          + (" counted GFLOP |" if args.verify else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if args.verify else ""))
    for size in ("tiny", "base"):
        for frames, px, ratio in ((16, 224, None), (16, 112, None), (16, 112, 0.9)):
            geometry = Geometry.of(frames, px, ratio)
            # the default ratio: both targets (the default mode); 0.9 at 112 px: the pixel
            # target only, as the check's comparison with VideoMAE runs it
            for targets in (("pixel",), ("pixel", "tracks"))[:1 if ratio else 2]:
                flops = step_flops(size, geometry, targets, BATCH) / BATCH
                rate = {p: UTILISATION[size] * peak * 1e12 / flops
                        for p, peak in A100_PEAK.items()}
                counted = (f" {counted_step_flops(size, geometry, targets) / 1e9:.1f} |"
                           if args.verify else "")
                print(f"| {size} | {frames}x{px} | {geometry.ratio} | "
                      f"{geometry.grid.num_tokens} / {geometry.visible} | {','.join(targets)} "
                      f"| {flops / 1e9:.1f} | {rate['fp32']:.0f} | {rate['bf16']:.0f} |"
                      f"{counted}")
    cfg = LKConfig()
    print("\n| tracker clip | points | GFLOP per clip | operators per call (views) | "
          f"launch-bound ms per call ({LAUNCH_US:.0f} us per kernel) |")
    print("|---|---|---|---|---|")
    for frames, px, grid in ((16, 224, 14), (16, 112, 7)):
        calls, views = tracker_kernels(frames, px, grid)
        print(f"| {frames}x{px} | {grid * grid} | "
              f"{tracker_flops(frames, px, grid * grid, cfg) / 1e9:.2f} | {calls} ({views}) | "
              f"{(calls - views) * LAUNCH_US / 1e3:.0f} |")
    print("\n| clip | points | clip MB | tracks KB | uint8 frames MB |")
    print("|---|---|---|---|---|")
    for frames, px, grid in ((16, 224, 14), (16, 112, 7)):
        sizes = host_bytes(frames, px, grid * grid)
        print(f"| {frames}x{px} | {grid * grid} | {sizes['clip'] / 1e6:.2f} | "
              f"{sizes['tracks'] / 1e3:.1f} | {sizes['uint8 frames'] / 1e6:.2f} |")


if __name__ == "__main__":
    main()

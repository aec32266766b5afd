"""The learning-rate schedule shared by training and the attentive probe: linear warmup, then
a half cosine (a pure function of the step, so a resumed run continues the same curve), and
what a changed run length does to it on resume."""

from __future__ import annotations

import math

import numpy as np


def lr_at(step: int, total_steps: int, peak_lr: float, min_lr: float, warmup_steps: int) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warmup from 0 over
    ``warmup_steps``, then half-cosine from ``peak_lr`` to ``min_lr`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def lr_table(total_steps: int, peak_lr: float, min_lr: float, warmup_steps: int) -> np.ndarray:
    """``[total_steps]`` float64: :func:`lr_at` of every step, made once before training so
    that a step reads its rate by index (VideoMAE's ``lr_schedule_values[it]``)."""
    return np.array([lr_at(step, total_steps, peak_lr, min_lr, warmup_steps)
                     for step in range(total_steps)], dtype=np.float64)


def resumed_length_warning(step: int, planned: int, total: int, peak_lr: float, min_lr: float,
                           warmup_fraction: float) -> str | None:
    """What resuming after ``step`` steps a run planned as ``planned`` steps and now ``total``
    long does to the schedule, in one line (None when the length is the same): the schedule
    is a function of the run's length, so a longer run's lr jumps at the resumed step (back
    up, late in a cosine) and decays over the new length. Steps are counted from 1 in the
    text, as ``metrics.jsonl`` counts them."""
    if step >= total:
        return (f"the checkpoint is at step {step} and the run is {total} steps long: nothing "
                "is left to train (a longer --steps continues it)")
    if planned == total:
        return None
    before = lr_at(step, planned, peak_lr, min_lr, int(planned * warmup_fraction))
    after = lr_at(step, total, peak_lr, min_lr, int(total * warmup_fraction))
    return (f"the run is now {total} steps long (it was planned as {planned}): the warmup + "
            f"cosine lr schedule is recomputed over {total} steps, so the lr of step "
            f"{step + 1} {'rises' if after > before else 'falls'} from {before:.2e} to "
            f"{after:.2e} and then decays to optim.min_lr by step {total}")

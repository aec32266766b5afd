"""The learning-rate schedule shared by training and the attentive probe: linear warmup, then
a half cosine (a pure function of the step, so a resumed run continues the same curve)."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak_lr: float, min_lr: float, warmup_steps: int) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warmup from 0 over
    ``warmup_steps``, then half-cosine from ``peak_lr`` to ``min_lr`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + math.cos(math.pi * progress))

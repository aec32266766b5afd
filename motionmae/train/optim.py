"""AdamW with the usual ViT parameter groups, each at its share (``lr_scale``) of the rate.

The schedule is :func:`motionmae.schedule.lr_at`; the training loop applies it to every group,
scaled by the group's ``lr_scale``, before each step."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import torch
from torch import nn

from motionmae.config import OptimConfig

log = logging.getLogger(__name__)


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    layer_of: Callable[[str], int] | None = None,
    num_layers: int = 0,
    layer_decay: float = 1.0,
) -> list[dict]:
    """Split parameters into groups: no weight decay on norms, biases and embeddings' tokens
    (every parameter with ndim <= 1, and names ending in ``token``), optional layer-wise lr decay.

    Args:
        layer_of: maps a parameter name to its depth in ``[0, num_layers + 1]`` (0 = embedding,
            ``num_layers + 1`` = head); each group gets ``lr_scale = layer_decay ** (num_layers
            + 1 - depth)``. None disables layer-wise decay.

    Returns:
        Groups with ``params``, ``weight_decay`` and ``lr_scale``.
    """
    groups: dict[tuple[bool, int], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith("token") or name.endswith("pos_embed")
        depth = layer_of(name) if layer_of is not None else num_layers + 1
        key = (no_decay, depth)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": layer_decay ** (num_layers + 1 - depth),
            }
        groups[key]["params"].append(param)
    return list(groups.values())


def build_optimizer(groups: list[dict], cfg: OptimConfig, lr: float) -> torch.optim.AdamW:
    """AdamW (betas from config), each group at ``lr * lr_scale`` (``lr`` without a scale);
    the fused kernel where this torch build has it for the parameters' device (on CPU it cuts
    a small model's optimizer step ~4x)."""
    groups = [{**group, "lr": lr * group.get("lr_scale", 1.0)} for group in groups]
    kwargs = {"lr": lr, "betas": tuple(cfg.betas), "weight_decay": cfg.weight_decay}
    if cfg.fused and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except RuntimeError as error:  # e.g. a device without a fused kernel
            log.info("fused AdamW unavailable (%s); using the foreach implementation", error)
    return torch.optim.AdamW(groups, **kwargs)


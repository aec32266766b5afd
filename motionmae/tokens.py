"""The token grid of a clip, the index operations every stage shares, and the noise token
masks are drawn from.

Tokens are ordered ``(t, h, w)`` row-major with ``t`` over tubelets. Masks are bool ``[B, L]``
with ``True`` = hidden. Visible/hidden tokens are selected by index (``gather``), never by
boolean indexing, which would call ``nonzero`` and synchronise the host. The mask kinds that
rank or pick tokens on the device (random, tube, motion-aware, the decoders' subset, the
learned sampler's draw) take their noise from :func:`uniform_noise`.

The reconstruction loss every target shares is over the hidden tokens, picked by index
(:func:`masked_mse`). A decoder that outputs one constant per channel, the mean of the target
over the tokens it is scored on, reaches the target's (weighted) variance (:func:`trivial_mse`);
a loss at that value says the model predicts the mean and has learned nothing of the target.
``explained = 1 - loss / trivial`` is the fraction of that variance the model accounts for (0:
nothing, 1: all). The mean is the batch's own, so the trivial loss is the least any constant
reaches on this batch (a model cannot know the batch mean: ``explained`` errs low, never high).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

WEIGHT_SUM_EPS = 1e-6
TRIVIAL_EPS = 1e-12
"""A trivial loss below this (a constant target) has nothing to explain: ``explained`` 0."""


@dataclass(frozen=True)
class TokenGrid:
    """Geometry of the tubelet grid for clips of ``frames x height x width`` pixels."""

    frames: int
    height: int
    width: int
    tubelet: int = 2
    patch: int = 16
    channels: int = 3

    def __post_init__(self) -> None:
        if self.frames % self.tubelet:
            raise ValueError(f"frames {self.frames} is not a multiple of tubelet {self.tubelet}")
        if self.height % self.patch or self.width % self.patch:
            raise ValueError(
                f"frame size {self.height}x{self.width} is not a multiple of patch {self.patch}"
            )

    @property
    def t(self) -> int:
        return self.frames // self.tubelet

    @property
    def h(self) -> int:
        return self.height // self.patch

    @property
    def w(self) -> int:
        return self.width // self.patch

    @property
    def spatial(self) -> int:
        """Tokens per tubelet slice (``h * w``)."""
        return self.h * self.w

    @property
    def num_tokens(self) -> int:
        return self.t * self.h * self.w

    @property
    def patch_dim(self) -> int:
        """Values in one tubelet: ``tubelet * patch * patch * channels``."""
        return self.tubelet * self.patch * self.patch * self.channels

    def num_visible(self, mask_ratio: float) -> int:
        """Visible tokens per clip for a hidden fraction ``mask_ratio`` (same for every clip).

        Tube-shaped masks hide whole spatial columns, so the count is rounded per slice.
        """
        return self.t * self.num_visible_spatial(mask_ratio)

    def num_visible_spatial(self, mask_ratio: float) -> int:
        """Visible spatial positions per tubelet slice, at least one."""
        return max(1, round(self.spatial * (1.0 - mask_ratio)))


def patchify(clip: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, L, tubelet*patch*patch*C]`` in token order (t, h, w).

    Within a token the values are ordered (tubelet frame, row, column, channel).
    """
    return rearrange(
        clip,
        "b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)",
        pt=grid.tubelet,
        ph=grid.patch,
        pw=grid.patch,
    )


def unpatchify(tokens: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, L, patch_dim]`` -> ``[B, C, T, H, W]``."""
    return rearrange(
        tokens,
        "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
        t=grid.t,
        h=grid.h,
        w=grid.w,
        pt=grid.tubelet,
        ph=grid.patch,
        pw=grid.patch,
        c=grid.channels,
    )


def mask_to_indices(mask: torch.Tensor, num_visible: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a mask into index tensors without a host sync.

    Args:
        mask: ``[B, L]`` bool, True = hidden, exactly ``L - num_visible`` True per row.
        num_visible: visible tokens per row (a Python int known from the config).

    Returns:
        ``visible_idx [B, num_visible]`` and ``masked_idx [B, L - num_visible]`` (int64), each
        sorted ascending so the token order (t, h, w) is kept.
    """
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    return order[:, :num_visible], order[:, num_visible:]


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens [B, L, D]``, ``index [B, K]`` -> ``[B, K, D]``."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def uniform_noise(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str | None,
) -> torch.Tensor:
    """Uniform ``[0, 1)`` noise of ``shape`` drawn on the generator's device (a generator can
    only draw there), then moved to ``device``; a CPU-to-CUDA move goes through pinned memory
    without blocking the host. Without a generator, the noise is drawn on ``device`` from its
    default generator."""
    if generator is None:
        return torch.rand(shape, device=device)
    noise = torch.rand(shape, generator=generator, device=generator.device)
    if device is None or torch.device(device) == noise.device:
        return noise
    if noise.device.type == "cpu" and torch.device(device).type == "cuda":
        noise = noise.pin_memory()
    return noise.to(device, non_blocking=True)


# The loss on hidden tokens


def per_token_error(
    pred: torch.Tensor, target: torch.Tensor, masked_idx: torch.Tensor
) -> torch.Tensor:
    """Squared error per hidden token, averaged over the target's values.

    Args:
        pred: ``[B, M, D]`` predictions in ``masked_idx`` order.
        target: ``[B, L, D]`` targets for all tokens.
        masked_idx: ``[B, M]`` int64 hidden token indices.

    Returns:
        ``[B, M]`` in the wider of the two dtypes (differentiable; ``.detach()`` it to use
        as a reward).
    """
    dtype = torch.promote_types(pred.dtype, target.dtype)  # bf16 predictions: fp32 loss
    target = gather_tokens(target, masked_idx).to(dtype)
    # mse_loss keeps one [B, M, D] temporary where (pred - target).square() makes two
    return F.mse_loss(pred.to(dtype), target, reduction="none").mean(dim=-1)


def masked_mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    masked_idx: torch.Tensor,
    token_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error over the hidden tokens.

    Args:
        pred: ``[B, M, D]`` predictions in ``masked_idx`` order.
        target: ``[B, L, D]`` targets for all tokens.
        masked_idx: ``[B, M]`` int64 hidden token indices.
        token_weight: ``[B, L]`` per-token loss weights, or ``None`` for all ones.

    Returns:
        Scalar: the mean of :func:`per_token_error` over the ``B * M`` hidden tokens, or with
        ``token_weight`` its weighted mean ``sum(w * e) / max(sum(w), 1e-6)`` (0 when every
        weight is 0). No host synchronisation.
    """
    error = per_token_error(pred, target, masked_idx)
    if token_weight is None:
        return error.mean()
    weight = torch.gather(token_weight.to(error.dtype), 1, masked_idx)
    return (error * weight).sum() / weight.sum().clamp_min(WEIGHT_SUM_EPS)


def trivial_mse(
    target: torch.Tensor,
    masked_idx: torch.Tensor,
    token_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The masked MSE of the best constant prediction: the weighted batch mean per channel.

    Args:
        target: ``[B, L, D]`` targets for all tokens.
        masked_idx: ``[B, M]`` int64 indices of the scored (hidden) tokens.
        token_weight: ``[B, L]`` per-token loss weights, or ``None`` for all ones.

    Returns:
        Scalar float32: ``sum(w * mean_D((v - mu)^2)) / sum(w)`` over the ``B * M`` scored
        tokens, ``mu [D] = sum(w * v) / sum(w)``; the same weighting as :func:`masked_mse`,
        so the two compare directly. 0 when every weight is 0. No host synchronisation.
    """
    values = gather_tokens(target, masked_idx).float()  # [B, M, D]
    if token_weight is None:
        weight = torch.ones(masked_idx.shape, device=values.device)
    else:
        weight = torch.gather(token_weight.float(), 1, masked_idx)  # [B, M]
    total = weight.sum().clamp_min(WEIGHT_SUM_EPS)
    mean = (weight[..., None] * values).sum(dim=(0, 1)) / total  # [D]
    error = (values - mean).square().mean(dim=-1)  # [B, M]
    return (weight * error).sum() / total


def explained_fraction(loss: torch.Tensor, trivial: torch.Tensor) -> torch.Tensor:
    """``1 - loss / trivial`` (scalar tensors in, scalar out); 0 where ``trivial`` is below
    :data:`TRIVIAL_EPS` (a constant target: nothing to explain). Negative when the model does
    worse than the constant. No host synchronisation."""
    safe = trivial.clamp_min(TRIVIAL_EPS)
    return torch.where(trivial > TRIVIAL_EPS, 1 - loss / safe, torch.zeros_like(loss))

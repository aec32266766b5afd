"""Drawing ``k`` of ``n`` items without replacement, and the exact log-probability of the draw.

Sequential sampling without replacement from ``softmax(logits)`` (draw one item, renormalise
over the rest, repeat) is the Plackett-Luce distribution over orderings. The Gumbel top-k
trick draws from it in one pass: perturb every logit with independent Gumbel(0, 1) noise and
sort; the first ``k`` items of the sorted order are distributed exactly like ``k`` sequential
draws, in the order drawn (Kool, van Hoof and Welling, 2019). So for the drawn order
``i_1 .. i_k``

    log P(i_1 .. i_k) = sum_j [ logits[i_j] - logsumexp(logits over the items not yet drawn) ]

is the log-probability of the random object the sampler actually produced (the ordered draw),
and its score function gives an unbiased policy gradient for any reward of the drawn *set*
(the set is a function of the ordered draw). The order inside the set only adds variance,
which is why the draw should be the smaller side (the visible tokens, not the hidden ones).

Everything is sort / gather / cumulative ops: no host synchronisation.
"""

from __future__ import annotations

import torch

from motionmae.tokens import uniform_noise

__all__ = ["first_draw_entropy", "gumbel_order", "plackett_luce_log_prob"]

_TINY = 1e-10


def gumbel_order(
    logits: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random ordering of the items of every row, distributed as sequential sampling
    without replacement from ``softmax(logits)`` (Gumbel top-k).

    Args:
        logits: ``[B, N]`` float.
        generator: source of the noise (drawn on its device, then moved to ``logits``').

    Returns:
        ``[B, N]`` int64, a permutation per row: the first ``k`` entries are a draw of ``k``
        items, in the order drawn, for every ``k``.
    """
    uniform = uniform_noise(tuple(logits.shape), generator, logits.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(_TINY, 1.0 - 1e-7)))
    return torch.argsort(logits.detach().float() + gumbel, dim=1, descending=True)


def plackett_luce_log_prob(logits: torch.Tensor, order: torch.Tensor, k: int) -> torch.Tensor:
    """Log-probability of drawing ``order[:, :k]`` in that order, without replacement, from
    ``softmax(logits)``.

    Args:
        logits: ``[B, N]`` float (differentiable).
        order: ``[B, N]`` int64 permutation per row; only the set of ``order[:, k:]`` matters
            (the items not drawn), not their order.
        k: number of drawn items, ``1 <= k <= N``.

    Returns:
        ``[B]`` float32. The denominators are reverse cumulative log-sum-exps over the
        permuted logits, so no probability is subtracted from a total (stable when the drawn
        items hold almost all of the mass).
    """
    z = torch.gather(logits.float(), 1, order)
    remaining = torch.logcumsumexp(z.flip(1), dim=1).flip(1)  # logsumexp(z[:, j:])
    return (z[:, :k] - remaining[:, :k]).sum(dim=1)


def first_draw_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)``, the distribution of the first draw: ``[B, N]`` ->
    ``[B]``. Its maximum ``log N`` is the uniform policy. (The entropy of the whole ``k``-item
    draw has no closed form; this one is the usual tractable stand-in for a bonus.)"""
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)

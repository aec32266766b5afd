"""A learned token sampler trained with the autoencoder: TATS (PPO) and AdaMAE (REINFORCE).

**Policy** (:class:`SamplerPolicy`): the per-token inputs of
:mod:`motionmae.masking.sampler_inputs` (tubelet thumbnail, frame-difference energy, and
when the batch has tracks the motion of the tracked points at the token's place and time) are
embedded by one linear layer, the fixed sin-cos position table is added, and one pre-norm
transformer block mixes them. The actor head gives one logit per decision unit (a token, or
with ``tube`` a spatial position, its tokens averaged over time); the critic head (TATS only)
gives one value per clip from the mean token. The actor starts at zero: the untrained sampler
is uniform random masking.

**Sampling**: the visible units are ``V`` draws without replacement from ``softmax(logits)``
(Gumbel top-k, :func:`~motionmae.masking.plackett_luce.gumbel_order`), so a high logit means
"likely visible" and every clip keeps exactly ``num_visible`` tokens (``V`` units, times
``t`` with ``tube``). The log-probability of the action is the Plackett-Luce probability of
the ``V`` visible units *in the order drawn*: exactly the distribution Gumbel top-k samples
from, so it is the consistent log-probability for the policy gradient and for PPO's ratios
(:mod:`motionmae.masking.plackett_luce`). The visible side is drawn, not the hidden side,
because the order inside the drawn set only adds variance: ``log V!`` nats of it for the
``V`` visible tokens against ``log M!`` for the ``M >> V`` hidden ones.

**Reward**: the autoencoder's reconstruction error of the hidden tokens it decoded (detached;
``sum_k lambda_k * weight_k * error_k`` per token over the targets), averaged per clip. The
sampler is paid for hiding what is hard to reconstruct, so it learns to hide motion-rich
tokens (the TATS objective); the autoencoder, which minimises the same error, is unaffected
by the sampler's loss (the mask is discrete and the reward detached).

**TATS / PPO** (``policy: tats``): advantage ``A = reward - value`` of the clip, normalised
over the batch (when it has more than one clip), fixed at rollout time with the old value.
Loss per rollout: the clipped surrogate ``-mean(min(r A, clip(r, 1-eps, 1+eps) A))`` with
``r = exp(log p_new - log p_old)``, plus ``value_coef * mean((value - reward)^2)``, minus
``entropy_coef`` times the entropy of the first draw. The autoencoder and the sampler share
the training loop's one optimizer step, so PPO's epochs run across steps: every rollout (the
parameter-free inputs, the drawn order, the old log-probability, advantage and reward) is kept
for ``ppo_epochs`` consecutive loss calls (micro-batches), and each call's sampler loss is the
mean over the kept rollouts, so every rollout is optimised ``ppo_epochs`` times against its
stored old log-probability, the first time on-policy (``r = 1``). How stale the reused
rollouts are is logged: ``sampler/clip_fraction`` is the fraction of reused clips whose ratio
is outside ``1 +- clip`` (past the clip, a clip's surrogate stops pulling the policy further
its advantage's way), ``sampler/clip_fraction_reuse{k}`` the same at the ``k``-th reuse.

**AdaMAE / REINFORCE** (``policy: adamae``): no critic, no kept rollouts; loss
``-mean over decoded hidden units of log p(unit) * error(unit)`` with ``p = softmax(-logits)``,
the sampler's *hiding* distribution (per-unit error: the mean over the unit's decoded
tokens). That is AdaMAE's per-token surrogate: it treats each hidden unit as an independent
draw rather than using the probability of the drawn set. AdaMAE draws its *visible* tokens from
``p``, so there the loss makes hard tokens visible; here ``p`` is where the sampler hides, so
minimising the same loss moves hiding probability onto hard tokens, as TATS does.

**State**: the sampler is a module of the pretraining model (``sampler.*`` in the weights,
ignored by :func:`motionmae.load_encoder`); the kept rollouts travel in its ``state_dict``
as extra state (one packed tensor), so ``--resume`` continues exactly. Under data parallelism
each rank keeps its own rollouts and a checkpoint stores rank 0's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from motionmae.config_loading import check
from motionmae.masking.plackett_luce import (
    first_draw_entropy,
    gumbel_order,
    plackett_luce_log_prob,
)
from motionmae.masking.registry import register_masking
from motionmae.masking.sampler_inputs import input_dim, sampler_inputs
from motionmae.models.tables import sinusoid_position_embedding
from motionmae.models.vit import LAYER_NORM_EPS, Block, init_weights
from motionmae.tokens import TokenGrid

__all__ = ["Draw", "LearnedMask", "LearnedSampler", "Rollout", "SamplerPolicy"]

SAMPLER_POLICIES = ("tats", "adamae")


@dataclass
class LearnedMaskingConfig:
    """The learned token sampler of ``masking.kind = learned`` (``motionmae.masking.learned``).

    ``policy``: ``tats`` (actor + critic trained with PPO: clipped surrogate ``clip``, value
    loss ``value_coef``, entropy bonus ``entropy_coef``, each rollout optimised in
    ``ppo_epochs`` consecutive steps; 4 keeps the reused rollouts near on-policy, see
    docs/benchmarks.md) or ``adamae`` (REINFORCE, no critic). ``tube``: one
    decision per spatial position, repeated over time. ``lr``: the sampler's peak learning
    rate (its own parameter group; it follows the run's warmup + cosine schedule).
    ``use_tracks``: make the loader compute point tracks so that the sampler sees, per token,
    the motion of the tracked points at its patch when its tubelet starts (it uses tracks
    whenever a batch has them). PPO's reuse is logged as ``sampler/clip_fraction`` (and per
    reuse epoch, ``sampler/clip_fraction_reuse{k}``). ``loss_weight``: the
    sampler's loss enters the joint loss at this weight; AdamW makes the sampler's own
    updates independent of it, while a small weight keeps the sampler's gradients (its early
    value loss especially) from dominating the joint norm that ``optim.clip_grad`` clips.
    """

    policy: str = "tats"
    tube: bool = False
    dim: int = 64
    heads: int = 2
    lr: float = 1e-3
    ppo_epochs: int = 4
    clip: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    use_tracks: bool = False
    loss_weight: float = 0.01

    def validate(self, key: str = "masking.learned") -> None:
        check(self.policy in SAMPLER_POLICIES, f"{key}.policy",
               f"must be one of {list(SAMPLER_POLICIES)}, got {self.policy!r}")
        check(self.dim >= 1, f"{key}.dim", f"must be >= 1, got {self.dim}")
        check(self.heads >= 1 and self.dim % self.heads == 0, f"{key}.heads",
               f"must be >= 1 and divide dim {self.dim}, got {self.heads}")
        check(self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        check(self.ppo_epochs >= 1, f"{key}.ppo_epochs", f"must be >= 1, got {self.ppo_epochs}")
        check(0.0 < self.clip < 1.0, f"{key}.clip", f"must be in (0, 1), got {self.clip}")
        check(self.value_coef >= 0, f"{key}.value_coef", "must be >= 0")
        check(self.entropy_coef >= 0, f"{key}.entropy_coef", "must be >= 0")
        check(self.loss_weight > 0, f"{key}.loss_weight", "must be > 0")


_ADV_EPS = 1e-8
_MAX_LOG_RATIO = 20.0
_PACKED_SCALARS = 3  # old log-probability, advantage, reward


@dataclass
class Draw:
    """One sampled mask with what the sampler's update needs.

    Attributes:
        mask: ``[B, L]`` bool, True = hidden, ``num_visible`` False per row.
        inputs: ``[B, L, F]`` the policy's parameter-free inputs.
        order: ``[B, U]`` int64 units (tokens, or positions with ``tube``): the ``V`` visible
            ones first, in the order drawn, then the hidden ones.
        logits: ``[B, U]`` float32 actor logits (differentiable).
        value: ``[B]`` float32 critic values (differentiable), ``None`` without a critic.
        log_prob: ``[B]`` float32 log-probability of the draw (differentiable).
    """

    mask: torch.Tensor
    inputs: torch.Tensor
    order: torch.Tensor
    logits: torch.Tensor
    value: torch.Tensor | None
    log_prob: torch.Tensor


@dataclass
class Rollout:
    """A past draw kept for later PPO epochs (all ``[B, ...]`` and detached)."""

    inputs: torch.Tensor
    order: torch.Tensor
    old_log_prob: torch.Tensor
    advantage: torch.Tensor
    reward: torch.Tensor


class SamplerPolicy(nn.Module):
    """Inputs ``[B, L, F]`` -> actor logits ``[B, U]`` and critic values ``[B]`` (or None)."""

    def __init__(self, grid: TokenGrid, dim: int, heads: int, tube: bool, critic: bool) -> None:
        super().__init__()
        self.grid = grid
        self.tube = tube
        self.embed = nn.Linear(input_dim(grid), dim)
        self.register_buffer("pos_embed", sinusoid_position_embedding(grid, dim).unsqueeze(0),
                             persistent=False)
        self.block = Block(dim, heads)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.actor = nn.Linear(dim, 1)
        self.critic = (nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))
                       if critic else None)
        self.apply(init_weights)
        # A zero actor is the uniform policy: training starts from random masking.
        nn.init.zeros_(self.actor.weight)
        nn.init.zeros_(self.actor.bias)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, L, F]`` -> ``(logits [B, U] float32, value [B] float32 | None)``."""
        x = self.norm(self.block(self.embed(inputs) + self.pos_embed))
        units = x.unflatten(1, (self.grid.t, self.grid.spatial)).mean(dim=1) if self.tube else x
        logits = self.actor(units).squeeze(-1).float()
        value = None if self.critic is None else self.critic(x.mean(dim=1)).squeeze(-1).float()
        return logits, value


def _normalise(advantage: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the batch; a batch of one clip is left as it is."""
    if advantage.shape[0] < 2:
        return advantage
    std, mean = torch.std_mean(advantage, correction=0)
    return (advantage - mean) / (std + _ADV_EPS)


class LearnedSampler(nn.Module):
    """The learned mask generator of ``masking.kind = learned`` (module docstring).

    ``sampler(batch, generator)`` draws a :class:`Draw`; ``sampler.loss(draw, error, index)``
    turns the autoencoder's per-token errors into the sampler's loss and logged parts.
    """

    def __init__(self, cfg: LearnedMaskingConfig, grid: TokenGrid, ratio: float) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = grid
        self.policy = SamplerPolicy(grid, cfg.dim, cfg.heads, cfg.tube,
                                    critic=cfg.policy == "tats")
        self.num_units = grid.spatial if cfg.tube else grid.num_tokens
        self.num_visible_units = (grid.num_visible_spatial(ratio) if cfg.tube
                                  else grid.num_visible(ratio))
        self.num_visible = grid.num_visible(ratio)
        self._rollouts: list[Rollout] = []

    # ---------------------------------------------------------------------------- sampling

    def units_to_mask(self, visible_units: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` visible unit indices -> ``[B, L]`` bool mask, True = hidden."""
        b = visible_units.shape[0]
        hidden = torch.ones(b, self.num_units, dtype=torch.bool, device=visible_units.device)
        hidden = hidden.scatter(1, visible_units, False)
        if not self.cfg.tube:
            return hidden
        return hidden.unsqueeze(1).expand(-1, self.grid.t, -1).reshape(b, self.grid.num_tokens)

    def forward(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> Draw:
        """Draw the mask of a batch (``batch["clip"] [B, C, T, H, W]``, tracks if present)."""
        inputs = sampler_inputs(batch, self.grid)
        logits, value = self.policy(inputs)
        order = gumbel_order(logits, generator)
        log_prob = plackett_luce_log_prob(logits, order, self.num_visible_units)
        mask = self.units_to_mask(order[:, : self.num_visible_units])
        return Draw(mask, inputs, order, logits, value, log_prob)

    @torch.no_grad()
    def visible_probability(
        self, batch: dict[str, torch.Tensor], samples: int = 256,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Monte Carlo estimate of each token's probability of staying visible: ``[B, L]``
        float32 (``samples`` draws per clip; rows sum to ``num_visible``)."""
        logits, _ = self.policy(sampler_inputs(batch, self.grid))
        b = logits.shape[0]
        order = gumbel_order(logits.repeat_interleave(samples, dim=0), generator)
        visible = ~self.units_to_mask(order[:, : self.num_visible_units])
        return visible.view(b, samples, -1).float().mean(dim=1)

    # ---------------------------------------------------------------------------- learning

    def loss(
        self, draw: Draw, token_error: torch.Tensor, token_index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The sampler's loss for a draw and the autoencoder's errors on it.

        Args:
            draw: this micro-batch's :class:`Draw`.
            token_error: ``[B, K]`` reconstruction error of hidden tokens (detached here).
            token_index: ``[B, K]`` int64 token indices of ``token_error`` (hidden tokens).

        Returns:
            ``(loss, parts)``: a scalar to add to the autoencoder's loss and detached
            ``sampler/*`` scalars to log (reward, entropy, policy_loss, and for TATS
            value_loss and the clip fractions of the reused rollouts, see
            :meth:`_clip_fractions`). With ``tats`` the draw is kept for the next
            ``ppo_epochs - 1`` calls.
        """
        token_error = token_error.detach().float()
        reward = token_error.mean(dim=1)
        entropy = first_draw_entropy(draw.logits).mean()
        parts = {"sampler/reward": reward.mean().detach(), "sampler/entropy": entropy.detach()}
        if self.cfg.policy == "adamae":
            policy_loss = self._reinforce(draw.logits, token_error, token_index)
            parts["sampler/policy_loss"] = policy_loss.detach()
            return policy_loss, parts
        assert draw.value is not None
        current = Rollout(draw.inputs, draw.order, draw.log_prob.detach(),
                          _normalise(reward - draw.value.detach()), reward)
        terms = [self._ppo_terms(draw.logits, draw.value, current)]
        for rollout in self._rollouts:
            logits, value = self.policy(rollout.inputs)
            assert value is not None
            terms.append(self._ppo_terms(logits, value, rollout))
        keep = self.cfg.ppo_epochs - 1
        self._rollouts = [*self._rollouts, current][-keep:] if keep else []
        policy_loss, value_loss, entropies = (torch.stack(t).mean()
                                              for t in list(zip(*terms, strict=True))[:3])
        loss = (policy_loss + self.cfg.value_coef * value_loss
                - self.cfg.entropy_coef * entropies)
        parts.update({"sampler/policy_loss": policy_loss.detach(),
                      "sampler/value_loss": value_loss.detach()})
        parts.update(self._clip_fractions([t[3] for t in reversed(terms[1:])]))
        return loss, parts

    def _clip_fractions(self, by_reuse: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The logged clip fractions, from those of the kept rollouts in this call, newest
        first (so by reuse epoch 1, 2, ...): ``sampler/clip_fraction`` over all reused clips
        and ``sampler/clip_fraction_reuse{k}`` per reuse epoch ``k < ppo_epochs``. Always the
        same keys (0 while a reuse epoch has no rollout yet), so every step logs alike."""
        zero = torch.zeros((), device=self.policy.actor.weight.device)
        parts = {"sampler/clip_fraction": torch.stack(by_reuse).mean() if by_reuse else zero}
        for k in range(1, self.cfg.ppo_epochs):
            parts[f"sampler/clip_fraction_reuse{k}"] = (by_reuse[k - 1] if k <= len(by_reuse)
                                                        else zero)
        return {name: value.detach() for name, value in parts.items()}

    def _ppo_terms(
        self, logits: torch.Tensor, value: torch.Tensor, rollout: Rollout
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clipped surrogate, value loss, entropy and clipped fraction (of the clips whose
        ratio is outside ``1 +- clip``) of one rollout."""
        log_prob = plackett_luce_log_prob(logits, rollout.order, self.num_visible_units)
        # Bounded so that a stale rollout can make the step large but never infinite.
        ratio = torch.exp((log_prob - rollout.old_log_prob).clamp(-_MAX_LOG_RATIO,
                                                                    _MAX_LOG_RATIO))
        clip = self.cfg.clip
        surrogate = torch.minimum(ratio * rollout.advantage,
                                  ratio.clamp(1.0 - clip, 1.0 + clip) * rollout.advantage)
        clipped = ((ratio - 1.0).abs() > clip).float().mean()
        return (-surrogate.mean(), (value - rollout.reward).square().mean(),
                first_draw_entropy(logits).mean(), clipped)

    def _reinforce(
        self, logits: torch.Tensor, token_error: torch.Tensor, token_index: torch.Tensor
    ) -> torch.Tensor:
        """AdaMAE: ``-mean(log p_hide(unit) * error(unit))`` over the units with errors."""
        units = token_index % self.grid.spatial if self.cfg.tube else token_index
        total = torch.zeros_like(logits).scatter_add(1, units, token_error)
        count = torch.zeros_like(logits).scatter_add(1, units, torch.ones_like(token_error))
        has_error = (count > 0).float()
        error = total / count.clamp_min(1.0)
        log_hide = torch.log_softmax(-logits, dim=1)
        return -(log_hide * error * has_error).sum() / has_error.sum().clamp_min(1.0)

    # ---------------------------------------------------------------------------- state

    def get_extra_state(self) -> torch.Tensor:
        """The kept rollouts packed into one float32 tensor ``[R, B, L, F + 1 + 3]`` (inputs,
        the order padded to ``L``, then old log-probability, advantage and reward broadcast
        along ``L``), or an empty tensor: safetensors stores tensors only."""
        if not self._rollouts:
            return torch.zeros(0)
        packed = []
        for r in self._rollouts:
            b, length = r.inputs.shape[:2]
            order = torch.zeros(b, length, device=r.inputs.device)
            order[:, : r.order.shape[1]] = r.order.float()  # exact below 2**24 tokens
            scalars = torch.stack([r.old_log_prob, r.advantage, r.reward], dim=-1)
            packed.append(torch.cat([r.inputs, order.unsqueeze(-1),
                                     scalars.unsqueeze(1).expand(-1, length, -1)], dim=-1))
        return torch.stack(packed)

    def set_extra_state(self, state: torch.Tensor) -> None:
        """Restore the rollouts :meth:`get_extra_state` packed."""
        self._rollouts = []
        for packed in state if state.numel() else []:
            features = packed.shape[-1] - 1 - _PACKED_SCALARS
            scalars = packed[:, 0, features + 1:]
            self._rollouts.append(Rollout(
                inputs=packed[..., :features].contiguous(),
                order=packed[:, : self.num_units, features].round().long(),
                old_log_prob=scalars[:, 0].contiguous(),
                advantage=scalars[:, 1].contiguous(),
                reward=scalars[:, 2].contiguous(),
            ))


class LearnedMask:
    """A :class:`~motionmae.masking.MaskGenerator` view of a :class:`LearnedSampler`: draws
    with the current policy, without gradients (visualisation, evaluation of a mask)."""

    def __init__(self, sampler: LearnedSampler) -> None:
        self.sampler = sampler
        self.num_visible = sampler.num_visible

    def __call__(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``batch`` -> ``mask [B, L]`` bool on the clip's device."""
        with torch.no_grad():
            return self.sampler(batch, generator).mask

    def __repr__(self) -> str:
        return f"LearnedMask({self.sampler.cfg.policy}, visible={self.num_visible})"


@register_masking("learned", LearnedMaskingConfig,
                  needs_tracks=lambda cfg: cfg.use_tracks, trainable=True)
def build_learned_mask(cfg: LearnedMaskingConfig, grid: TokenGrid, ratio: float) -> LearnedMask:
    """A fresh sampler's view: the pretraining task trains ``mask.sampler`` with the model."""
    return LearnedMask(LearnedSampler(cfg, grid, ratio))

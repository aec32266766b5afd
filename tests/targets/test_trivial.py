"""The trivial predictor's loss and the fraction explained, logged beside every target loss."""

import pytest
import torch

from motionmae.tokens import explained_fraction, masked_mse, trivial_mse


def _setup(seed=0, batch=3, tokens=10, dim=4, hidden=6):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, tokens, dim, generator=generator) * torch.tensor([1, 2, 3, 4.0])
    masked_idx = torch.stack([torch.randperm(tokens, generator=generator)[:hidden]
                              for _ in range(batch)])
    return target, masked_idx


def _scored(target, masked_idx):
    return torch.gather(target, 1, masked_idx[..., None].expand(-1, -1, target.shape[-1]))


def test_predicting_the_batch_mean_explains_nothing():
    target, masked_idx = _setup()
    scored = _scored(target, masked_idx)
    mean = scored.mean(dim=(0, 1))  # per channel, over the scored tokens only
    pred = mean.expand_as(scored)
    loss = masked_mse(pred, target, masked_idx)
    trivial = trivial_mse(target, masked_idx)
    # The trivial loss is the per-channel (population) variance averaged over channels.
    assert trivial == pytest.approx(scored.var(dim=(0, 1), unbiased=False).mean().item())
    assert trivial == pytest.approx(loss.item(), rel=1e-6)
    assert explained_fraction(loss, trivial) == pytest.approx(0.0, abs=1e-6)
    # Any other constant does worse: explained < 0.
    worse = masked_mse(pred + 0.3, target, masked_idx)
    assert explained_fraction(worse, trivial) < 0


def test_a_perfect_prediction_explains_everything():
    target, masked_idx = _setup(seed=1)
    loss = masked_mse(_scored(target, masked_idx), target, masked_idx)
    assert explained_fraction(loss, trivial_mse(target, masked_idx)) == pytest.approx(1.0)


def test_token_weights_set_the_mean_and_the_loss():
    # Two scored tokens of one channel, values 0 and 4, weights 3 and 1: the weighted mean is
    # 1, the weighted squared error (3 * 1 + 1 * 9) / 4 = 3. A weight-0 token (value 100)
    # counts for nothing; an unscored token (value -50, weight 1) neither.
    target = torch.tensor([[[0.0], [4.0], [100.0], [-50.0]]])
    weight = torch.tensor([[3.0, 1.0, 0.0, 1.0]])
    masked_idx = torch.tensor([[0, 1, 2]])
    assert trivial_mse(target, masked_idx, weight) == pytest.approx(3.0)
    # The constant 1 is the weighted masked_mse's best constant: explained 0 exactly.
    pred = torch.ones(1, 3, 1)
    loss = masked_mse(pred, target, masked_idx, weight)
    assert loss == pytest.approx(3.0)
    assert explained_fraction(loss, trivial_mse(target, masked_idx, weight)) == pytest.approx(0)


def test_a_constant_target_gives_zero_not_nan():
    target = torch.full((2, 5, 3), 0.7)
    masked_idx = torch.tensor([[0, 1, 2], [2, 3, 4]])
    trivial = trivial_mse(target, masked_idx)
    assert trivial == pytest.approx(0.0, abs=1e-12)
    for loss in (torch.tensor(0.0), torch.tensor(0.5)):
        explained = explained_fraction(loss, trivial)
        assert torch.isfinite(explained) and explained == 0
    # Every weight 0 (e.g. no visible track): 0 too, not 0/0.
    zero = trivial_mse(torch.randn(2, 5, 3), masked_idx, torch.zeros(2, 5))
    assert zero == 0 and explained_fraction(torch.tensor(0.0), zero) == 0


def test_bf16_targets_are_scored_in_float32():
    target, masked_idx = _setup(seed=2)
    trivial = trivial_mse(target.bfloat16(), masked_idx)
    assert trivial.dtype == torch.float32
    assert trivial == pytest.approx(trivial_mse(target, masked_idx).item(), rel=2e-2)

"""The learned token sampler: exact draw probabilities, invariants, learning a rigged reward,
kept rollouts and their state."""

import itertools
import math

import pytest
import torch

from motionmae.config import ConfigError, MaskingConfig, PretrainConfig, load_config
from motionmae.masking import LearnedMask, LearnedMaskingConfig, LearnedSampler
from motionmae.masking.learned import Rollout
from motionmae.masking.plackett_luce import (
    first_draw_entropy,
    gumbel_order,
    plackett_luce_log_prob,
)
from motionmae.masking.sampler_inputs import NUM_TRACK_FEATURES, sampler_inputs, track_statistics
from motionmae.tokens import TokenGrid, mask_to_indices

GRID = TokenGrid(frames=4, height=64, width=64)  # t=2, h=w=4: L=32, 16 positions


@pytest.fixture
def one_thread():
    # These tests run many tiny steps: one thread avoids contention on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _sampler(ratio=0.75, seed=0, **cfg):
    torch.manual_seed(seed)
    return LearnedSampler(LearnedMaskingConfig(**cfg), GRID, ratio)


def _clip(batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, GRID.frames, GRID.height, GRID.width, generator=g)


# ------------------------------------------------------------------ track inputs


def _centre(j):
    return GRID.patch * j + GRID.patch / 2 - 0.5


def test_tokens_get_the_motion_of_their_own_place_and_time():
    """An object starts at patch A = (1, 0) and moves right 1 patch per frame: at frame 2,
    where tubelet 1 starts, it is at B = (1, 2). The background points it passes over are
    occluded in turn. Token (1, B) moves, token (1, A) has nothing left to track."""
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    start = torch.stack([_centre(cols), _centre(rows)], dim=-1).reshape(16, 2).float()
    tracks = start.expand(GRID.frames, -1, -1).clone()  # [T, 16, 2], a static background
    visible = torch.ones(GRID.frames, 16, dtype=torch.bool)
    a = 4  # point and position (1, 0)
    tracks[:, a, 0] = _centre(torch.arange(4).float())  # x of columns 0, 1, 2, 3 by frame
    for frame, covered in ((1, 5), (2, 6), (3, 7)):  # background points under the object
        visible[frame, covered] = False
    stats = track_statistics(tracks[None], visible[None], GRID)[0]  # [L, 6]

    # (dx, dy, log1p mean length, log1p largest, visible steps, coverage)
    moving = torch.tensor([1.0, 0.0, math.log(2), math.log(2), 1.0, 1.0])
    expected = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0]).repeat(GRID.num_tokens, 1)
    expected[0 * 16 + 4] = moving  # (0, A): the object is there when tubelet 0 starts
    expected[0 * 16 + 5] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # occluded at frame 1
    expected[0 * 16 + 6, 4] = 0.5  # its step 1 -> 2 ends under the object
    expected[1 * 16 + 4] = 0.0  # (1, A): the object has left, no point is there
    expected[1 * 16 + 6] = moving  # (1, B): the object, not the occluded background point
    expected[1 * 16 + 7] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # occluded at frame 3
    torch.testing.assert_close(stats, expected)

    batch = {"clip": _clip(1), "tracks": tracks[None], "track_visible": visible[None]}
    inputs = sampler_inputs(batch, GRID)
    torch.testing.assert_close(inputs[0, :, -1 - NUM_TRACK_FEATURES:-1], expected)
    assert torch.all(inputs[..., -1] == 1)
    no_tracks = sampler_inputs({"clip": batch["clip"]}, GRID)
    assert torch.all(no_tracks[..., -1 - NUM_TRACK_FEATURES:] == 0)
    torch.testing.assert_close(no_tracks[..., :-1 - NUM_TRACK_FEATURES],
                               inputs[..., :-1 - NUM_TRACK_FEATURES])


def test_track_points_are_splatted_bilinearly_and_invisible_ones_ignored():
    frames = torch.arange(GRID.frames).float()
    tracks = torch.zeros(1, GRID.frames, 4, 2)
    # Between the centres of (0, 0) and (0, 1), moving down a quarter patch per frame: at
    # frame 2 it is also between rows 0 and 1.
    tracks[0, :, 0] = torch.stack([torch.full_like(frames, 15.5), 7.5 + 4 * frames], dim=-1)
    tracks[0, :, 1] = float("nan")  # never visible: whatever the tracker left there
    tracks[0, :, 2] = torch.tensor([-20.0, 7.5])  # outside the frame
    # On the centre of (2, 2), moving left half a patch per frame: (2, 1) at frame 2.
    tracks[0, :, 3] = torch.stack([_centre(2) - 8 * frames, torch.full_like(frames, _centre(2))],
                                  dim=-1)
    visible = torch.ones(1, GRID.frames, 4, dtype=torch.bool)
    visible[0, :, 1] = False
    stats = track_statistics(tracks, visible, GRID)[0].view(GRID.t, GRID.h, GRID.w, 6)

    down = [0.0, 0.25, math.log1p(0.25), math.log1p(0.25), 1.0]
    left = [-0.5, 0.0, math.log1p(0.5), math.log1p(0.5), 1.0, 1.0]
    expected = torch.zeros(GRID.t, GRID.h, GRID.w, 6)
    expected[0, 0, 0] = expected[0, 0, 1] = torch.tensor([*down, 0.5])
    expected[0, 2, 2] = torch.tensor(left)
    expected[1, :2, :2] = torch.tensor([*down, 0.25])
    expected[1, 2, 1] = torch.tensor(left)
    torch.testing.assert_close(stats, expected)
    assert torch.isfinite(stats).all()


def test_track_statistics_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"batch\['tracks'\]: expected \[B, 4, N, 2\]"):
        track_statistics(torch.zeros(1, 3, 16, 2), None, GRID)


# ------------------------------------------------------------------ Plackett-Luce draws


def test_log_prob_matches_enumeration_and_gumbel_frequencies():
    logits = torch.tensor([[1.0, -0.5, 0.3, 2.0]])
    n, k = 4, 2
    p = torch.softmax(logits[0].double(), 0)
    total = 0.0
    exact = {}
    for pair in itertools.permutations(range(n), k):
        rest = [i for i in range(n) if i not in pair]
        order = torch.tensor([[*pair, *rest]])
        log_prob = float(plackett_luce_log_prob(logits, order, k))
        # sequential draws without replacement, written out
        i, j = pair
        expected = float(p[i] * p[j] / (1 - p[i]))
        assert math.exp(log_prob) == pytest.approx(expected, rel=1e-5)
        exact[pair] = expected
        total += expected
    assert total == pytest.approx(1.0, abs=1e-6)

    draws = 40_000
    order = gumbel_order(logits.expand(draws, -1), torch.Generator().manual_seed(0))
    pairs = order[:, :k]
    for pair, probability in exact.items():
        frequency = float(((pairs[:, 0] == pair[0]) & (pairs[:, 1] == pair[1])).float().mean())
        assert frequency == pytest.approx(probability, abs=0.01), pair


def test_log_prob_ignores_the_order_of_the_items_not_drawn():
    logits = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    order = gumbel_order(logits, torch.Generator().manual_seed(2))
    shuffled = torch.cat([order[:, :3], order[:, 3:].flip(1)], dim=1)
    torch.testing.assert_close(plackett_luce_log_prob(logits, order, 3),
                               plackett_luce_log_prob(logits, shuffled, 3))


def test_log_prob_is_stable_when_the_draw_holds_all_the_mass():
    logits = torch.tensor([[60.0, 50.0, -40.0, -50.0]])
    order = torch.tensor([[0, 1, 2, 3]])
    log_prob = plackett_luce_log_prob(logits, order, 2)
    assert torch.isfinite(log_prob) and float(log_prob) == pytest.approx(0.0, abs=1e-4)


# ------------------------------------------------------------------ draws and invariants


@pytest.mark.parametrize("tube", [False, True])
@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_every_clip_keeps_num_visible_and_tube_is_consistent(tube, ratio):
    sampler = _sampler(ratio, tube=tube)
    draw = sampler({"clip": _clip(5)}, torch.Generator().manual_seed(0))
    assert draw.mask.shape == (5, GRID.num_tokens) and draw.mask.dtype == torch.bool
    assert sampler.num_visible == GRID.num_visible(ratio)
    assert torch.all((~draw.mask).sum(dim=1) == sampler.num_visible)
    units = GRID.spatial if tube else GRID.num_tokens
    assert draw.order.shape == (5, units) and draw.logits.shape == (5, units)
    assert torch.all(draw.order.sort(dim=1).values == torch.arange(units))  # permutations
    slices = draw.mask.view(5, GRID.t, GRID.spatial)
    assert bool(torch.all(slices == slices[:, :1])) == tube


def test_draw_is_seeded_and_log_prob_is_the_draws():
    sampler = _sampler()
    batch = {"clip": _clip()}
    a = sampler(batch, torch.Generator().manual_seed(3))
    b = sampler(batch, torch.Generator().manual_seed(3))
    c = sampler(batch, torch.Generator().manual_seed(4))
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.mask, c.mask)
    v = sampler.num_visible_units
    torch.testing.assert_close(a.log_prob, plackett_luce_log_prob(a.logits, a.order, v))
    assert torch.equal(~a.mask.gather(1, a.order[:, :v]), torch.ones(4, v, dtype=torch.bool))
    a.log_prob.sum().backward()
    assert sampler.policy.actor.weight.grad is not None


def test_untrained_sampler_is_uniform_random_masking():
    sampler = _sampler(tube=True)
    batch = {"clip": _clip()}
    draw = sampler(batch, torch.Generator().manual_seed(0))
    assert torch.all(draw.logits == 0)
    torch.testing.assert_close(first_draw_entropy(draw.logits),
                               torch.full((4,), math.log(GRID.spatial)))
    probability = sampler.visible_probability(batch, 512, torch.Generator().manual_seed(0))
    expected = sampler.num_visible / GRID.num_tokens
    assert probability.shape == (4, GRID.num_tokens)
    torch.testing.assert_close(probability.sum(dim=1), torch.full((4,), 8.0))
    assert torch.all((probability - expected).abs() < 0.08)
    mask = LearnedMask(sampler)(batch, torch.Generator().manual_seed(0))
    assert torch.equal(mask, draw.mask)


# ------------------------------------------------------------------ learning a rigged reward


def _region_hidden(sampler, hard, clip, generator):
    probability = sampler.visible_probability({"clip": clip}, 256, generator)
    return 1.0 - float(probability[:, hard].mean())


@pytest.mark.parametrize(("policy", "steps"), [("tats", 200), ("adamae", 100)])
def test_sampler_learns_to_hide_the_region_that_is_always_hard(policy, steps, one_thread):
    """Reward rigged: the left column of positions always has error 1, the rest 0.1. The
    clip content is fixed (only the draws vary), so what the sampler can learn is where."""
    sampler = _sampler(policy=policy)
    optimizer = torch.optim.Adam(sampler.parameters(), lr=1e-3)
    hard = (torch.arange(GRID.w) == 0).repeat(GRID.h * GRID.t)  # [L]
    error = torch.where(hard, 1.0, 0.1)
    clip = _clip(8, seed=5)
    generator = torch.Generator().manual_seed(0)
    before = _region_hidden(sampler, hard, clip, generator)
    assert before == pytest.approx(0.75, abs=0.03)  # uniform: the mask ratio
    for _ in range(steps):
        draw = sampler({"clip": clip}, generator)
        _, masked_idx = mask_to_indices(draw.mask, sampler.num_visible)
        loss, parts = sampler.loss(draw, error[masked_idx], masked_idx)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert _region_hidden(sampler, hard, clip, generator) > 0.95
    with torch.no_grad():
        logits, _ = sampler.policy(draw.inputs)
    # The visible draws' probability mass left the region (uniform: 0.25).
    region_mass = torch.softmax(logits, dim=1)[:, hard].sum(dim=1)
    assert torch.all(region_mass < 0.05), region_mass
    assert float(parts["sampler/reward"]) > 0.38  # 0.325 for a uniform draw, 0.4 at best


# ------------------------------------------------------------------ PPO bookkeeping


def _step(sampler, seed):
    batch = {"clip": _clip(seed=seed)}
    draw = sampler(batch, torch.Generator().manual_seed(seed))
    _, masked_idx = mask_to_indices(draw.mask, sampler.num_visible)
    error = torch.rand(masked_idx.shape, generator=torch.Generator().manual_seed(seed))
    return sampler.loss(draw, error, masked_idx)


def test_rollouts_are_kept_for_ppo_epochs_and_restored_exactly():
    sampler = _sampler(ppo_epochs=3)
    _, parts = _step(sampler, 0)
    assert {"sampler/reward", "sampler/entropy", "sampler/policy_loss", "sampler/value_loss",
            "sampler/clip_fraction", "sampler/clip_fraction_reuse1",
            "sampler/clip_fraction_reuse2"} == set(parts)
    # On-policy with batch-normalised advantages: ratio 1, mean advantage 0.
    assert float(parts["sampler/policy_loss"]) == pytest.approx(0.0, abs=1e-6)
    kept = []
    for seed in range(1, 5):
        _step(sampler, seed)
        kept.append(len(sampler._rollouts))
    assert kept == [2, 2, 2, 2]  # ppo_epochs - 1 past rollouts beside the current one
    state = sampler.state_dict()
    assert state["_extra_state"].shape[:2] == (2, 4)
    restored = _sampler(ppo_epochs=3, seed=1)
    restored.load_state_dict(state)
    a, parts_a = _step(sampler, 9)
    b, parts_b = _step(restored, 9)
    assert torch.equal(a, b)
    assert all(torch.equal(parts_a[k], parts_b[k]) for k in parts_a)
    assert float(parts_a["sampler/value_loss"]) > 0


def test_clip_fractions_are_those_of_the_reused_rollouts_per_reuse_epoch():
    sampler = _sampler(ppo_epochs=3)
    _, parts = _step(sampler, 0)
    clip_keys = ["sampler/clip_fraction", "sampler/clip_fraction_reuse1",
                 "sampler/clip_fraction_reuse2"]
    assert [float(parts[k]) for k in clip_keys] == [0.0, 0.0, 0.0]  # nothing reused yet
    # Two kept rollouts whose stored log-probabilities put the ratio r = p_new / p_old of
    # known clips outside 1 +- 0.2: r = 1 / shift.
    rollouts = []
    for seed, shift in ((1, [1.5, 1.1, 1.1, 1.1]), (2, [1.5, 0.7, 1.1, 1.0])):
        draw = sampler({"clip": _clip(seed=seed)}, torch.Generator().manual_seed(seed))
        old = draw.log_prob.detach() + torch.tensor(shift).log()
        rollouts.append(Rollout(draw.inputs, draw.order, old, torch.ones(4), torch.ones(4)))
    sampler._rollouts = rollouts  # oldest first: the second is reused for the first time
    _, parts = _step(sampler, 3)
    torch.testing.assert_close(torch.stack([parts[k] for k in clip_keys]),
                               torch.tensor([0.375, 0.5, 0.25]))


def test_one_ppo_epoch_keeps_nothing_and_adamae_has_no_critic():
    sampler = _sampler(ppo_epochs=1)
    _step(sampler, 0)
    assert sampler._rollouts == [] and sampler.state_dict()["_extra_state"].numel() == 0
    adamae = _sampler(policy="adamae")
    assert adamae.policy.critic is None
    _, parts = _step(adamae, 0)
    assert set(parts) == {"sampler/reward", "sampler/entropy", "sampler/policy_loss"}


def test_adamae_loss_is_minus_mean_log_hiding_probability_times_error():
    sampler = _sampler(policy="adamae", tube=True)
    draw = sampler({"clip": _clip(2)}, torch.Generator().manual_seed(0))
    with torch.no_grad():
        draw.logits.copy_(torch.randn(draw.logits.shape))
    # two hidden tokens per clip, both at position 5 (t = 0 and 1) and one at position 7
    index = torch.tensor([[5, 16 + 5, 7], [5, 16 + 5, 7]])
    error = torch.tensor([[1.0, 3.0, 0.5], [2.0, 2.0, 1.0]])
    loss, _ = sampler.loss(draw, error, index)
    log_hide = torch.log_softmax(-draw.logits, dim=1)
    expected = -(log_hide[:, 5] * torch.tensor([2.0, 2.0]) + log_hide[:, 7]
                 * torch.tensor([0.5, 1.0])).sum() / 4
    torch.testing.assert_close(loss, expected)


# ------------------------------------------------------------------ config


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"masking\.learned\.policy"):
        load_config(PretrainConfig, overrides=["masking.learned.policy=ppo"])
    with pytest.raises(ConfigError, match=r"masking\.learned\.heads"):
        load_config(PretrainConfig, overrides=["masking.learned.heads=3"])
    with pytest.raises(ConfigError, match=r"masking\.decoder_ratio"):
        load_config(PretrainConfig, overrides=["masking.decoder_ratio=1.0"])
    with pytest.raises(ConfigError, match=r"masking\.kind: learned masking does not run"):
        load_config(PretrainConfig, overrides=["masking.kind=learned", "run.parallel=fsdp"])
    cfg = load_config(PretrainConfig, overrides=["masking.kind=learned",
                                                 "masking.learned.use_tracks=true"])
    assert cfg.needs_tracks and isinstance(cfg.masking, MaskingConfig)

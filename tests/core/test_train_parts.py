import itertools
import math

import numpy as np
import pytest
import torch

from motionmae.data.loader import EpochSampler
from motionmae.eval.probes import knn_probe, linear_probe
from motionmae.schedule import lr_at, lr_table
from motionmae.train.optim import parameter_groups


def test_lr_schedule_warmup_peak_and_floor():
    lrs = [lr_at(s, 100, 1.0, 0.01, 10) for s in range(100)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0
    assert math.isclose(lrs[10], 1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lr_at(100, 100, 1.0, 0.01, 10) == 0.01


def test_lr_table_holds_every_steps_rate():
    table = lr_table(100, 1.0, 0.01, 10)
    assert table.shape == (100,)
    assert table.tolist() == [lr_at(s, 100, 1.0, 0.01, 10) for s in range(100)]
    assert lr_table(0, 1.0, 0.01, 0).shape == (0,)


def test_no_weight_decay_on_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    groups = parameter_groups(model, 0.05)
    decayed = [p for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    assert len(decayed) == 1 and decayed[0] is model[0].weight


def test_sampler_covers_epoch_once_across_ranks_and_resumes():
    ranks = [EpochSampler(10, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    seen = [i for s in ranks for i in s]
    assert sorted(seen) == list(range(10))
    full = list(ranks[0])
    ranks[0].set_epoch(1, skip=2)
    assert list(ranks[0]) == full[2:]
    ranks[0].set_epoch(2)
    assert list(ranks[0]) != full


def test_probes_separate_separable_classes():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 4
    y = np.repeat(np.arange(3), 40)
    x = centres[y] + rng.normal(size=(120, 16))
    vy = np.repeat(np.arange(3), 10)
    vx = centres[vy] + rng.normal(size=(30, 16))
    assert linear_probe(x, y, vx, vy).top1 > 0.95
    assert knn_probe(x, y, vx, vy).top1 > 0.95
    shuffled = linear_probe(x, rng.permutation(y), vx, vy)
    assert shuffled.top1 < 0.7 and math.isclose(shuffled.chance, 1 / 3)


def test_attentive_probe_finds_the_flagged_token():
    # Every token carries some class's signature; only the flagged one carries the label's.
    # Mean pooling mixes them all; a learned query can attend to the flag.
    from motionmae.eval.attentive import attentive_probe

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 32)) * 3
    centres[:, 0] = 0

    def make(n):
        y = rng.integers(0, 4, n)
        x = centres[rng.integers(0, 4, (n, 8))] + rng.normal(size=(n, 8, 32))
        flagged = rng.integers(0, 8, n)
        x[np.arange(n), flagged] = centres[y] + rng.normal(size=(n, 32))
        x[np.arange(n), flagged, 0] = 6.0
        return x.astype(np.float32), y

    (x, y), (vx, vy) = make(600), make(200)
    attentive = attentive_probe(x, y, vx, vy, epochs=40)
    linear = linear_probe(x.mean(1), y, vx.mean(1), vy)
    assert attentive.top1 > 0.8, attentive
    assert attentive.top1 > linear.top1 + 0.2, (attentive, linear)


def test_attentive_probe_is_invariant_to_per_channel_scale_and_offset():
    # Tokens are standardised with training statistics, so channels measured in other units
    # (scales spread over orders of magnitude, large offsets) must not change what it learns.
    from motionmae.eval.attentive import _channel_stats, attentive_probe

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    y, vy = rng.integers(0, 3, 300), rng.integers(0, 3, 90)
    x = (centres[y][:, None] + rng.normal(size=(300, 6, 16)) * 2).astype(np.float32)
    vx = (centres[vy][:, None] + rng.normal(size=(90, 6, 16)) * 2).astype(np.float32)
    scale = np.exp(rng.normal(size=16) * 3).astype(np.float32)
    shift = rng.normal(size=16).astype(np.float32) * 100

    mean, std = _channel_stats(torch.from_numpy(x * scale + shift), chunk=7)
    flat = (x * scale + shift).reshape(-1, 16).astype(np.float64)
    assert np.allclose(mean.numpy(), flat.mean(0), rtol=1e-5, atol=1e-3)
    assert np.allclose(std.numpy(), flat.std(0), rtol=1e-3)

    plain = attentive_probe(x, y, vx, vy, epochs=10)
    rescaled = attentive_probe(x * scale + shift, y, vx * scale + shift, vy, epochs=10)
    assert plain.top1 > 0.8, plain
    assert abs(plain.top1 - rescaled.top1) <= 1 / 90, (plain, rescaled)


def test_attentive_pooler_rejects_bad_shapes():
    from motionmae.eval.attentive import AttentivePooler

    with pytest.raises(ValueError, match="not divisible by 4 heads"):
        AttentivePooler(30, 3)
    with pytest.raises(ValueError, match="at least one query"):
        AttentivePooler(32, 3, queries=0)
    logits = AttentivePooler(32, 5, queries=3)(torch.zeros(2, 7, 32))
    assert logits.shape == (2, 5)

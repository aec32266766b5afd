"""Mixup / cutmix on batches of clips and label-smoothed soft targets."""

import numpy as np
import pytest
import torch

from motionmae.data.mixing import MixSettings, cutmix_box, mix_batch, smooth_targets

K = 5


def _batch(batch: int = 4):
    clip = torch.randn(batch, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 4, 3, 1][:batch])
    return clip, labels


def test_smooth_targets_values_and_mass():
    targets = smooth_targets(torch.tensor([2, 0]), K, 0.1)
    assert targets[0, 2] == pytest.approx(0.9 + 0.02) and targets[0, 0] == pytest.approx(0.02)
    torch.testing.assert_close(targets.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\)"):
        smooth_targets(torch.tensor([5]), K, 0.1)


def test_mixup_blends_clips_and_labels_with_one_lambda():
    clip, labels = _batch()
    mixed = mix_batch(clip, labels, MixSettings(K, mixup=0.8, cutmix=0.0, smoothing=0.1),
                      np.random.default_rng(3))
    assert mixed.mode == "mixup" and 0 < mixed.lam < 1
    lam = mixed.lam
    torch.testing.assert_close(mixed.clip, lam * clip + (1 - lam) * clip.flip(0))
    own = smooth_targets(labels, K, 0.1)
    torch.testing.assert_close(mixed.targets, lam * own + (1 - lam) * own.flip(0))
    torch.testing.assert_close(mixed.targets.sum(1), torch.ones(4))


def test_cutmix_box_area_matches_lambda_in_every_frame():
    clip, labels = _batch()
    settings = MixSettings(K, mixup=0.0, cutmix=1.0, smoothing=0.0)
    for seed in range(20):
        mixed = mix_batch(clip, labels, settings, np.random.default_rng(seed))
        assert mixed.mode == "cutmix"
        y0, y1, x0, x1 = mixed.box
        pasted = (mixed.clip != clip).any(dim=(1, 2))  # [B, H, W]
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        # everything pasted is inside the box; inside it, every frame comes from the partner
        assert not (pasted & ~inside).any()
        torch.testing.assert_close(mixed.clip[..., y0:y1, x0:x1],
                                   clip.flip(0)[..., y0:y1, x0:x1])
        assert mixed.lam == pytest.approx(1 - inside.sum().item() / 256)
        # one-hot targets: own label weighs lam, the partner's 1 - lam, mass 1
        for i in range(4):
            j = 3 - i
            expected = torch.zeros(K)
            expected[labels[i]] += mixed.lam
            expected[labels[j]] += 1 - mixed.lam
            torch.testing.assert_close(mixed.targets[i], expected)
        torch.testing.assert_close(mixed.targets.sum(1), torch.ones(4))


def test_cutmix_box_clipped_at_borders():
    for seed in range(50):
        y0, y1, x0, x1 = cutmix_box(16, 12, 0.3, np.random.default_rng(seed))
        assert 0 <= y0 <= y1 <= 16 and 0 <= x0 <= x1 <= 12
        assert (y1 - y0) <= int(16 * np.sqrt(0.7)) and (x1 - x0) <= int(12 * np.sqrt(0.7))


def test_switch_probability_and_no_mixing_cases():
    clip, labels = _batch()
    both = MixSettings(K, mixup=0.8, cutmix=1.0, switch_prob=0.5)
    modes = [mix_batch(clip, labels, both, np.random.default_rng(s)).mode for s in range(200)]
    assert 0.35 < modes.count("cutmix") / 200 < 0.65 and "none" not in modes
    for settings in (MixSettings(K, mixup=0.0, cutmix=0.0), MixSettings(K, prob=0.0)):
        mixed = mix_batch(clip, labels, settings, np.random.default_rng(0))
        assert mixed.mode == "none" and mixed.clip is clip and mixed.lam == 1.0
        torch.testing.assert_close(mixed.targets, smooth_targets(labels, K, settings.smoothing))


def test_input_batch_is_not_modified():
    clip, labels = _batch()
    before = clip.clone()
    mix_batch(clip, labels, MixSettings(K, mixup=0.0, cutmix=1.0), np.random.default_rng(1))
    assert torch.equal(clip, before)

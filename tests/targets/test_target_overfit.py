"""Each new target can be fitted: a tiny model overfits one batch in a few dozen steps."""

import cv2
import numpy as np
import pytest
import torch

from motionmae.config import IMAGENET_MEAN, IMAGENET_STD, MaskingConfig
from motionmae.masking import build_mask_generator
from motionmae.models import create_model
from motionmae.motion import patch_center_queries
from motionmae.motion.synthetic import translation_clip
from motionmae.targets import (
    HogTarget,
    HogTargetConfig,
    M3TrajTarget,
    M3TrajTargetConfig,
    TracksTarget,
    TracksTargetConfig,
    masked_mse,
)
from motionmae.targets.m3traj import m3traj_targets
from motionmae.tokens import TokenGrid, mask_to_indices

GRID = TokenGrid(frames=4, height=32, width=32)  # L = 2 * 2 * 2 = 8
STEPS = 50


def _texture(size, seed):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 1.5)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def _batch(seed=0):
    """Two clips of a translating texture, with everything the three targets read."""
    clips, tracks, m3, m3w = [], [], [], []
    m3cfg = M3TrajTargetConfig()
    centres = torch.from_numpy(patch_center_queries(32, 32, 16))[:, 1:]
    for i, velocity in enumerate(((0.5, 0.25), (-0.25, 0.5))):
        dense = translation_clip(_texture(96, seed + i), 7, (32, 32), velocity).frames
        idx = np.arange(GRID.frames) * 2
        clips.append(torch.from_numpy(dense[idx]).permute(3, 0, 1, 2).float() / 255)
        steps = torch.from_numpy(idx).float().view(-1, 1, 1) * torch.tensor(velocity)
        tracks.append(centres + steps)
        values, weight = m3traj_targets(dense, idx, GRID, m3cfg)
        m3.append(torch.from_numpy(values))
        m3w.append(torch.from_numpy(weight))
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return {
        "clip": (torch.stack(clips) - mean) / std,
        "tracks": torch.stack(tracks),
        "track_visible": torch.ones(2, GRID.frames, GRID.spatial, dtype=torch.bool),
        "m3traj": torch.stack(m3),
        "m3traj_weight": torch.stack(m3w),
    }


TARGETS = {
    "tracks": lambda: TracksTarget(TracksTargetConfig(norm="scale", scale=1.0), GRID),
    "hog": lambda: HogTarget(HogTargetConfig(), GRID, IMAGENET_MEAN, IMAGENET_STD),
    "m3traj": lambda: M3TrajTarget(M3TrajTargetConfig(), GRID),
}


@pytest.fixture
def one_thread():
    """A tiny model is fastest on one thread (and several threads crawl on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_tiny_model_overfits_one_batch(name, one_thread):
    torch.manual_seed(0)
    target = TARGETS[name]()
    batch = _batch()
    values, weight = target(batch)
    assert torch.isfinite(values).all()
    if weight is not None:
        assert weight.sum() > 0
    model = create_model("tiny", GRID, {name: target.dim}, depth=1, decoder_depth=1)
    masking = build_mask_generator(MaskingConfig(kind="tube", ratio=0.5), GRID)
    visible_idx, masked_idx = mask_to_indices(masking(batch, torch.Generator().manual_seed(0)),
                                              masking.num_visible)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for _ in range(STEPS):
        pred = model(batch["clip"], visible_idx, masked_idx)[name]
        loss = masked_mse(pred, values, masked_idx, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]

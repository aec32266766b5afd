"""``targets.m3traj.norm: batch``: the M3Video trajectory target normalised on the collated
batch (:func:`motionmae.targets.m3traj_norm.normalize_batch`), and its place as the default."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
import yaml

from motionmae.config import PretrainConfig, load_config, resume_config
from motionmae.data import make_synthetic_dataset
from motionmae.motion.synthetic import translation_clip
from motionmae.targets import M3TrajTarget, M3TrajTargetConfig, trivial_mse
from motionmae.targets.m3traj import m3traj_targets
from motionmae.targets.m3traj_norm import normalize_batch
from motionmae.tokens import TokenGrid
from motionmae.train.pretrain import pretrain
from motionmae.train.runfolder import write_run_config

GRID = TokenGrid(frames=8, height=64, width=64)  # t=4, h=w=4
INDICES = np.arange(GRID.frames) * 2  # 15 dense frames
VELOCITY = (2.0, -1.0)  # px per dense frame
K, L, BINS = 4, 6, 9


@pytest.fixture(scope="module")
def moving():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((180, 180, 3)).astype(np.float32), (0, 0), 2.0)
    img = ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)
    return translation_clip(img, int(INDICES[-1]) + 1, (64, 64), VELOCITY).frames


def _batch(positions, hog=None):
    """``[B, N, K, L, 2]`` positions (and ``[B, N, K, L, C * 9]`` histograms) -> values."""
    return positions if hog is None else torch.cat([positions, hog], dim=-1)


def _variances(values, weight):
    """The trivial predictor's loss (what explained divides by) of the position block and of
    the HOG block of ``[B, N, K, L, F]`` values, each times its width: summed variances."""
    b, n = values.shape[:2]
    every = torch.arange(n).expand(b, n)
    pos = values[..., :2].reshape(b, n, -1)
    hog = values[..., 2:].reshape(b, n, -1)
    return (float(trivial_mse(pos, every, weight)) * pos.shape[-1],
            float(trivial_mse(hog, every, weight)) * hog.shape[-1])


def test_a_rigid_translation_gives_its_velocity_over_the_batch_rms(moving):
    """d px per frame everywhere: every position step is d / rms, rms = sqrt(|d|^2 / 2)."""
    cfg = M3TrajTargetConfig()
    assert (cfg.norm, cfg.rms_floor) == ("batch", 0.25)
    # the workers (M3TrajHook calls m3traj_targets) ship pixels and raw histograms
    raw, weight = m3traj_targets(moving, INDICES, GRID, cfg)
    none, _ = m3traj_targets(moving, INDICES, GRID, M3TrajTargetConfig(norm="none"))
    np.testing.assert_array_equal(raw, none)
    values, w = M3TrajTarget(cfg, GRID)({"m3traj": torch.from_numpy(raw)[None],
                                         "m3traj_weight": torch.from_numpy(weight)[None]})
    assert values.shape == (1, GRID.num_tokens, 264) and values.dtype == torch.float32
    assert w[0].sum() >= 20
    tokens = values[0].reshape(GRID.num_tokens, K, L, 11)[w[0] > 0]
    rms = math.hypot(*VELOCITY) / math.sqrt(2)
    expected = torch.tensor(VELOCITY) / rms  # (1.265, -0.632)
    error = (tokens[..., :2] - expected).abs()
    assert error.median() < 0.02 and error.max() < 0.1
    # a rigid pan leaves the positions (next to) no variance: the HOG gets no more
    v_pos, v_hog = _variances(values[0].reshape(1, GRID.num_tokens, K, L, 11), w)
    assert v_hog <= v_pos * (1 + 1e-4)


def test_known_answer_on_tensors_and_weight_zero_tokens_do_not_count():
    positions = torch.zeros(2, 3, K, L, 2)
    positions[0, :, :, :, 0] = 3.0
    positions[0, :, :, :, 1] = -4.0  # |step| = 5 px: rms = sqrt(25 / 2)
    positions[1, :2] = torch.tensor([3.0, -4.0])
    weight = torch.ones(2, 3)
    weight[1, 2] = 0.0
    positions[1, 2] = 1000.0  # a lost token's (clipped) deltas: ignored
    out = normalize_batch(positions, weight, BINS, rms_floor=1.0)
    assert out.shape == positions.shape
    expected = torch.tensor([3.0, -4.0]) / math.sqrt(12.5)
    torch.testing.assert_close(out[0], expected.expand_as(out[0]))
    torch.testing.assert_close(out[1, :2], expected.expand_as(out[1, :2]))
    # without the weights the lost token dominates the rms
    unweighted = normalize_batch(positions, torch.ones(2, 3), BINS, rms_floor=1.0)
    assert unweighted[0].abs().max() < 0.01


def test_the_floor_keeps_a_nearly_static_batch_in_pixels():
    rng = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 5, K, L, 2, generator=rng) * 0.1  # flow noise, rms ~0.1 px
    weight = torch.ones(2, 5)
    torch.testing.assert_close(normalize_batch(noise, weight, BINS, rms_floor=1.0), noise)
    rms = noise.square().mean().sqrt()
    torch.testing.assert_close(normalize_batch(noise, weight, BINS, rms_floor=0.01), noise / rms)
    # above the floor the pixel scale of the whole batch does not matter
    moving = noise * 40
    torch.testing.assert_close(normalize_batch(moving, weight, BINS, rms_floor=1.0),
                               normalize_batch(moving * 3, weight, BINS, rms_floor=1.0))
    # no weighted token at all: divided by the floor
    torch.testing.assert_close(normalize_batch(noise, torch.zeros(2, 5), BINS, 0.5), noise / 0.5)


def test_hog_is_l2_normalised_and_never_holds_more_variance_than_the_positions():
    rng = torch.Generator().manual_seed(1)
    weight = torch.ones(2, 6)
    hog = torch.rand(2, 6, K, L, 3 * BINS, generator=rng) * 500  # raw RGB Sobel histograms
    hog[0, 0, 0, 0, :BINS] = 0.0  # a flat window in the red channel
    unit = hog.unflatten(-1, (3, BINS))
    unit = (unit / unit.norm(dim=-1, keepdim=True).clamp(min=1e-6)).flatten(-2)

    # positions that vary a lot: the HOG block is the smaller one and keeps its scale
    busy = torch.randn(2, 6, K, L, 2, generator=rng) * 5
    out = normalize_batch(_batch(busy, hog), weight, BINS, rms_floor=1.0)
    v_pos, v_hog = _variances(out, weight)
    assert v_hog < v_pos
    torch.testing.assert_close(out[..., 2:], unit, atol=1e-5, rtol=1e-5)
    assert out[0, 0, 0, 0, 2:2 + BINS].abs().max() == 0  # flat stays zero

    # positions that barely vary: the HOG block is scaled down to the positions' variance
    calm = 2.0 + torch.randn(2, 6, K, L, 2, generator=rng) * 0.05
    out = normalize_batch(_batch(calm, hog), weight, BINS, rms_floor=1.0)
    v_pos, v_hog = _variances(out, weight)
    assert v_hog == pytest.approx(v_pos, rel=1e-4)  # the HOG's share: exactly a half
    scale = out[..., 2:].norm() / unit.norm()
    assert 0 < scale < 0.5
    torch.testing.assert_close(out[..., 2:], unit * scale, atol=1e-5, rtol=1e-4)
    # the positions are the same with or without HOG next to them
    torch.testing.assert_close(out[..., :2], normalize_batch(calm, weight, BINS, 1.0))


def test_the_target_normalises_per_batch_and_leaves_other_norms_to_the_workers():
    rng = torch.Generator().manual_seed(2)
    values = torch.rand(2, GRID.num_tokens, 264, generator=rng) * 10
    weight = torch.ones(2, GRID.num_tokens)
    batch = {"m3traj": values, "m3traj_weight": weight}
    out, w = M3TrajTarget(M3TrajTargetConfig(rms_floor=2.0), GRID)(batch)
    assert w is weight
    torch.testing.assert_close(out, normalize_batch(values.unflatten(-1, (K, L, 11)), weight,
                                                    BINS, 2.0).flatten(2))
    # the batch's statistics: the same clip in another batch gets another target
    other, _ = M3TrajTarget(M3TrajTargetConfig(rms_floor=2.0), GRID)(
        {"m3traj": torch.cat([values[:1], values[1:] * 5]), "m3traj_weight": weight})
    assert not torch.allclose(other[0], out[0])
    kept, _ = M3TrajTarget(M3TrajTargetConfig(norm="patch_std"), GRID)(batch)
    assert kept is values
    positions_only = M3TrajTarget(M3TrajTargetConfig(hog=False, points_per_side=1), GRID)
    small = torch.full((1, GRID.num_tokens, 6 * 2), 4.0)
    torch.testing.assert_close(
        positions_only({"m3traj": small, "m3traj_weight": torch.ones(1, GRID.num_tokens)})[0],
        torch.ones_like(small))


def test_rms_floor_is_checked():
    with pytest.raises(ValueError, match=r"targets\.m3traj\.rms_floor"):
        M3TrajTarget(M3TrajTargetConfig(rms_floor=0.0), GRID)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(root, num_train=4, num_val=0, frames=12, size=32, seed=3)


def _config(videos, out, *extra):
    return load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={out}", "data.frames=4", "data.stride=2",
        "data.size=32", "data.workers=0", "model.depth=2", "model.decoder_depth=1",
        "run.batch_size=2", "run.steps=2", "run.log_every=1", "targets.names=[hog,m3traj]",
        "masking.kind=tube", *extra])


def test_a_run_saved_with_patch_std_resumes_with_it(videos, tmp_path):
    """Run configs hold every key of their targets' sections: one written while patch_std
    was the default names it, and keeps it."""
    cfg = _config(videos, tmp_path / "old", "targets.m3traj.norm=patch_std")
    write_run_config(tmp_path / "old", cfg)
    saved = yaml.safe_load((tmp_path / "old" / "config.yaml").read_text())
    assert saved["targets"]["m3traj"]["norm"] == "patch_std"
    assert set(saved["targets"]["m3traj"]) == set(M3TrajTargetConfig.__dataclass_fields__)
    resumed = resume_config(PretrainConfig, tmp_path / "old" / "config.yaml")
    assert resumed.targets.m3traj.norm == "patch_std"


def test_two_pretraining_steps_with_hog_and_m3traj(videos, tmp_path):
    out = tmp_path / "run"
    result = pretrain(_config(videos, out))
    assert result.state.step == 2
    assert yaml.safe_load((out / "config.yaml").read_text())["targets"]["m3traj"]["norm"] == \
        "batch"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "explained/m3traj" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert math.isfinite(record["loss/m3traj"]) and record["trivial/m3traj"] > 0
        assert math.isfinite(record["explained/m3traj"])

"""The HOF target (:mod:`motionmae.targets.hof`): known histograms of known flows, the real
DIS flow of a translated texture, the batch norm, errors, and a short pretraining run."""

import math

import cv2
import numpy as np
import pytest
import torch
from short_runs import two_step_records

from motionmae.config import PretrainConfig, load_config
from motionmae.config_loading import ConfigError
from motionmae.data.hooks import HookInput
from motionmae.motion.synthetic import translation_clip
from motionmae.targets import HofHook, HofTarget, HofTargetConfig, hof_dim, hof_tokens
from motionmae.targets.hof import normalize_hof_batch
from motionmae.tokens import TokenGrid

GRID = TokenGrid(frames=8, height=64, width=64)  # t=4, h=w=4, 2 x 2 cells of 8 px per patch
CFG = HofTargetConfig()
STILL, PLUS_X, PLUS_Y, MINUS_Y = 8, 0, 2, 6  # bins: still last, then 45-degree steps, y down


def _token(tokens, t, h, w):
    """``[2, 2, 9]``: (cell row, cell column, bin) of token (t, h, w)."""
    return tokens[(t * GRID.h + h) * GRID.w + w].reshape(2, 2, CFG.bins + 1)


def test_dim_and_layout_of_a_hand_made_flow():
    flows = np.zeros((GRID.frames - 1, 64, 64, 2), np.float32)
    # Field 2 (the first of tubelet 1): the bottom-left cell of patch (h=0, w=1) moves down
    # at 3 px; field 3 (tubelet 1's second) is still there.
    flows[2, 8:16, 16:24, 1] = 3.0
    tokens = hof_tokens(flows, GRID, CFG)
    assert tokens.shape == (GRID.num_tokens, 36) and hof_dim(CFG, GRID) == 36
    moved = _token(tokens, 1, 0, 1)
    assert moved[1, 0, PLUS_Y] == pytest.approx(math.sqrt(3.0 / 2))  # one of two fields
    assert moved[1, 0, STILL] == pytest.approx(math.sqrt(1.0 / 2))
    assert np.count_nonzero(moved) == 2 + 3  # and the other three cells are still
    others = np.delete(tokens, (1 * GRID.h + 0) * GRID.w + 1, axis=0).reshape(-1, 2, 2, 9)
    np.testing.assert_array_equal(others[..., STILL], 1.0)
    np.testing.assert_array_equal(others[..., :STILL], 0.0)


def test_a_tubelet_owns_the_fields_that_start_on_its_frames():
    flows = np.zeros((GRID.frames - 1, 64, 64, 2), np.float32)
    flows[..., 0] = np.arange(1, GRID.frames, dtype=np.float32)[:, None, None]  # field s: s+1
    tokens = hof_tokens(flows, GRID, CFG).reshape(GRID.t, GRID.spatial, 2, 2, 9)
    # tubelet t: fields 2t, 2t+1 (speeds 2t+1, 2t+2); the last has field 6 only (speed 7)
    expected = [math.sqrt((2 * t + 1 + 2 * t + 2) / 2) for t in range(3)] + [math.sqrt(7)]
    np.testing.assert_allclose(tokens[..., PLUS_X].mean(axis=(1, 2, 3)), expected, rtol=1e-6)
    single = TokenGrid(frames=4, height=64, width=64, tubelet=1)
    last = hof_tokens(flows[:3], single, CFG).reshape(4, -1, 9)[-1]
    np.testing.assert_allclose(last[:, PLUS_X], math.sqrt(3))  # the clip's last field


@pytest.fixture(scope="module")
def texture():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((200, 200, 3)).astype(np.float32), (0, 0), 2.0)
    return ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)


def _hook(frames):
    sample = HookInput(frames=frames, entry=None, frame_indices=np.arange(len(frames)),
                       geometry=None)
    return HofHook(GRID, CFG)(sample)["hof"].numpy()


@pytest.mark.parametrize(("velocity", "bin_index"), [((2.0, 0.0), PLUS_X), ((0.0, -1.5), MINUS_Y)])
def test_the_dis_flow_of_a_translated_texture_votes_its_direction_and_speed(
        texture, velocity, bin_index):
    frames = translation_clip(texture, GRID.frames, (64, 64), velocity).frames
    tokens = _hook(frames).reshape(GRID.t, GRID.h, GRID.w, 2, 2, 9)
    inner = tokens[:, 1:3, 1:3]  # the border's flow sees texture entering the frame
    speed = math.hypot(*velocity)
    assert (inner.argmax(axis=-1) == bin_index).all()
    np.testing.assert_allclose(inner[..., bin_index], math.sqrt(speed), rtol=0.05)
    assert inner[..., STILL].max() < 0.1


def test_a_still_texture_is_all_still(texture):
    frames = translation_clip(texture, GRID.frames, (64, 64), (0.0, 0.0)).frames
    tokens = _hook(frames).reshape(-1, 9)
    np.testing.assert_allclose(tokens[:, STILL], 1.0)
    np.testing.assert_allclose(tokens[:, :STILL], 0.0)


def test_batch_norm_gives_unit_spread_and_keeps_ratios():
    values = torch.rand(3, GRID.num_tokens, 36) * 4
    out, weight = HofTarget(CFG, GRID)({"hof": values})
    assert weight is None
    centred = out - out.mean(dim=(0, 1), keepdim=True)
    assert centred.square().mean().sqrt().item() == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(out / out[0, 0, 0], values / values[0, 0, 0])
    still = torch.ones(2, GRID.num_tokens, 36)
    torch.testing.assert_close(normalize_hof_batch(still, 0.05), still / 0.05)
    kept, _ = HofTarget(HofTargetConfig(norm="none"), GRID)({"hof": values})
    assert kept is values


def test_errors_name_what_is_wrong():
    target = HofTarget(CFG, GRID)
    with pytest.raises(KeyError, match="HofHook"):
        target({"clip": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"expected \[B, 64, 36\]"):
        target({"hof": torch.zeros(1, 64, 35)})
    with pytest.raises(ValueError, match=r"targets\.hof\.cell: 6 px does not divide"):
        HofTarget(HofTargetConfig(cell=6), GRID)
    with pytest.raises(ValueError, match=r"flows: expected \[7, 64, 64, 2\]"):
        hof_tokens(np.zeros((6, 64, 64, 2), np.float32), GRID, CFG)
    with pytest.raises(ConfigError, match=r"targets\.hof\.cell: 6 px does not divide the "
                                          r"patch \(model\.patch_size 16 px\)"):
        load_config(PretrainConfig, overrides=["targets.names=[hof]", "targets.hof.cell=6"])
    with pytest.raises(ConfigError, match=r"targets\.hof\.norm: must be one of"):
        load_config(PretrainConfig, overrides=["targets.names=[hof]", "targets.hof.norm=patch"])


def test_two_pretraining_steps_with_pixel_tracks_and_hof(tmp_path):
    steps = two_step_records(tmp_path, "hof", ["targets.names=[pixel,tracks,hof]"])
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert math.isfinite(record["loss/hof"]) and record["trivial/hof"] > 0

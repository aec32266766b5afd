import pytest
import torch
import torch.nn.functional as F

from motionmae.config import MaskingConfig
from motionmae.interop import InteropError
from motionmae.interop.common import encoder_config
from motionmae.interop.huggingface import export_huggingface
from motionmae.masking import build_mask_generator
from motionmae.models import create_encoder, sinusoid_position_embedding, sinusoid_position_table
from motionmae.models.config import saved_model_dict
from motionmae.models.tables import temporal_difference_basis
from motionmae.models.vit import TubeletEmbed, VideoEncoder
from motionmae.tokens import TokenGrid, mask_to_indices

GRID = TokenGrid(frames=4, height=32, width=48)  # L = 2 * 2 * 3 = 12


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return create_encoder("tiny", GRID, depth=2).eval()


def _masked_batch(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(batch, 3, GRID.frames, GRID.height, GRID.width, generator=g)
    generate = build_mask_generator(MaskingConfig(kind="random", ratio=0.5), GRID)
    mask = generate({"clip": clip}, g)
    return clip, mask, *mask_to_indices(mask, generate.num_visible)


def test_shapes(encoder):
    clip, _, visible_idx, _ = _masked_batch()
    assert encoder(clip).shape == (2, GRID.num_tokens, 192)
    assert encoder(clip, visible_idx).shape == (2, visible_idx.shape[1], 192)


def test_visible_path_equals_encoding_only_the_visible_tokens(encoder):
    clip, _, visible_idx, _ = _masked_batch()
    all_tokens = encoder.embed(clip)
    only_visible = torch.gather(all_tokens, 1, visible_idx.unsqueeze(-1).expand(-1, -1, 192))
    torch.testing.assert_close(encoder(clip, visible_idx), encoder.forward_tokens(only_visible),
                               atol=1e-5, rtol=1e-5)


def test_hidden_pixels_do_not_reach_visible_outputs(encoder):
    clip, mask, visible_idx, _ = _masked_batch()
    pixel_hidden = mask.view(2, GRID.t, 1, GRID.h, 1, GRID.w, 1)
    pixel_hidden = pixel_hidden.expand(-1, -1, GRID.tubelet, -1, GRID.patch, -1, GRID.patch)
    pixel_hidden = pixel_hidden.reshape(2, 1, GRID.frames, GRID.height, GRID.width)
    perturbed = torch.where(pixel_hidden, torch.randn_like(clip) * 10, clip)
    assert not torch.equal(perturbed, clip)
    torch.testing.assert_close(encoder(perturbed, visible_idx), encoder(clip, visible_idx))
    assert not torch.allclose(encoder(perturbed), encoder(clip))


def test_tubelet_embedding_equals_the_conv3d_of_its_frame_kernel(encoder):
    clip, _, _, _ = _masked_batch()
    embed = encoder.patch_embed
    assert embed.difference_gain == 4.0  # the default
    conv = F.conv3d(clip, embed.frame_weight(), embed.proj.bias, stride=embed.proj.stride)
    torch.testing.assert_close(embed(clip), conv.flatten(2).transpose(1, 2), atol=1e-5,
                               rtol=1e-5)


def test_plain_frames_use_the_kernel_as_it_is():
    torch.manual_seed(0)
    embed = TubeletEmbed(GRID, 8, difference_gain=0.0)
    clip, _, _, _ = _masked_batch()
    assert embed.frame_weight() is embed.proj.weight
    torch.testing.assert_close(embed(clip), embed.proj(clip).flatten(2).transpose(1, 2),
                               atol=1e-5, rtol=1e-5)


def test_difference_basis_known_answer():
    torch.testing.assert_close(temporal_difference_basis(2, 4.0),
                               torch.tensor([[0.5, 0.5], [-4.0, 4.0]]))
    three = temporal_difference_basis(3, 2.0)
    torch.testing.assert_close(three @ torch.tensor([1.0, 3.0, 6.0]),
                               torch.tensor([10 / 3, 4.0, 6.0]))  # mean, 2*(3-1), 2*(6-3)
    with pytest.raises(ValueError, match="gain > 0"):
        temporal_difference_basis(2, 0.0)


def test_difference_gain_scales_only_what_changes_between_frames():
    """The same kernel coordinates under gains 1 and 4: a static clip (equal frames) embeds
    alike; a clip whose frames differ moves 4x as far from its static version with gain 4."""
    torch.manual_seed(0)
    one, four = TubeletEmbed(GRID, 8, 1.0), TubeletEmbed(GRID, 8, 4.0)
    four.load_state_dict(one.state_dict())
    frame = torch.randn(1, 3, 1, GRID.height, GRID.width)
    static = frame.expand(-1, -1, GRID.frames, -1, -1)
    torch.testing.assert_close(one(static), four(static))
    # Opposite changes to the two frames of each tubelet: their mean stays the same.
    sign = torch.tensor([-1.0, 1.0]).repeat(GRID.frames // 2).view(1, 1, -1, 1, 1)
    moving = static + sign * torch.randn_like(frame) * 0.1
    torch.testing.assert_close(four(moving) - four(static), 4 * (one(moving) - one(static)),
                               atol=1e-4, rtol=1e-4)


def test_position_table_matches_videomae_formula():
    table = sinusoid_position_table(7, 6)
    for p in range(7):
        for j in range(6):
            angle = torch.tensor(p / 10000 ** (2 * (j // 2) / 6), dtype=torch.float64)
            value = torch.sin(angle) if j % 2 == 0 else torch.cos(angle)
            assert abs(table[p, j].item() - value.item()) < 1e-7


def test_3d_positions_are_one_table_per_axis():
    grid = TokenGrid(frames=6, height=32, width=48)  # t, h, w = 3, 2, 3
    table = sinusoid_position_embedding(grid, 20, "3d")  # 20 - 2*6 = 8 for t, 6 for h and w
    assert table.shape == (grid.num_tokens, 20)
    t_part, h_part, w_part = table[:, :8], table[:, 8:14], table[:, 14:]
    for index in range(grid.num_tokens):
        t, rest = divmod(index, grid.spatial)
        h, w = divmod(rest, grid.w)
        torch.testing.assert_close(t_part[index], sinusoid_position_table(3, 8)[t])
        torch.testing.assert_close(h_part[index], sinusoid_position_table(2, 6)[h])
        torch.testing.assert_close(w_part[index], sinusoid_position_table(3, 6)[w])
    # The same place a tubelet later shares its whole spatial part; the 1D table does not.
    later = grid.spatial + 4
    assert torch.equal(table[4, 8:], table[later, 8:])
    flat = sinusoid_position_embedding(grid, 20)
    assert torch.equal(flat, sinusoid_position_table(grid.num_tokens, 20))
    assert not torch.equal(flat[4, 8:], flat[later, 8:])
    with pytest.raises(ValueError, match="unknown position table 'xyz'"):
        sinusoid_position_embedding(grid, 20, "xyz")


def test_an_encoder_with_3d_positions_rebuilds_from_its_description(tmp_path):
    torch.manual_seed(0)
    encoder = create_encoder("tiny", GRID, depth=1, positions="3d").eval()
    assert torch.equal(encoder.pos_embed[0], sinusoid_position_embedding(GRID, 192, "3d"))
    rebuilt = VideoEncoder(encoder_config(encoder), GRID)
    assert rebuilt.positions == "3d" and torch.equal(rebuilt.pos_embed, encoder.pos_embed)
    with pytest.raises(InteropError, match="positions are the 3d sin-cos table"):
        export_huggingface(encoder, None, tmp_path / "hf")
    # A model section saved before the key existed meant VideoMAE's table.
    assert saved_model_dict({"size": "tiny"})["positions"] == "1d"


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    encoder = create_encoder("tiny", GRID, depth=2)
    clip, _, visible_idx, _ = _masked_batch()
    grads = []
    for enable in (False, True):
        encoder.zero_grad()
        encoder.set_grad_checkpointing(enable)
        encoder(clip, visible_idx).square().mean().backward()
        grads.append(encoder.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_bf16_autocast_forward_backward():
    torch.manual_seed(0)
    encoder = create_encoder("tiny", GRID, depth=2)
    clip, _, visible_idx, _ = _masked_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(clip, visible_idx)
    out.float().square().mean().backward()
    assert torch.isfinite(out.float()).all()
    reference = encoder(clip, visible_idx)
    assert (out.float() - reference).abs().max() < 0.1


def test_tubelets_by_index_equal_all_tubelets_gathered(encoder):
    clip, _, visible_idx, _ = _masked_batch()
    every = encoder.patch_embed.tubelets(clip)
    picked = torch.gather(every, 1, visible_idx.unsqueeze(-1).expand(-1, -1, every.shape[-1]))
    assert torch.equal(encoder.patch_embed.tubelets(clip, visible_idx), picked)

import pytest
import torch

from motionmae.config import MaskingConfig
from motionmae.masking import build_mask_generator
from motionmae.models import create_encoder, sinusoid_position_table
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


def test_tubelet_embedding_equals_the_conv3d(encoder):
    clip, _, _, _ = _masked_batch()
    conv = encoder.patch_embed.proj(clip).flatten(2).transpose(1, 2)
    torch.testing.assert_close(encoder.patch_embed(clip), conv, atol=1e-5, rtol=1e-5)


def test_position_table_matches_videomae_formula():
    table = sinusoid_position_table(7, 6)
    for p in range(7):
        for j in range(6):
            angle = torch.tensor(p / 10000 ** (2 * (j // 2) / 6), dtype=torch.float64)
            value = torch.sin(angle) if j % 2 == 0 else torch.cos(angle)
            assert abs(table[p, j].item() - value.item()) < 1e-7


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

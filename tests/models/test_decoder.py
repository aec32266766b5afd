import torch

from motionmae.models import TokenDecoder
from motionmae.models.vit import init_weights
from motionmae.tokens import TokenGrid, gather_tokens, mask_to_indices

GRID = TokenGrid(frames=4, height=32, width=48)  # L = 12


def _decoder():
    torch.manual_seed(0)
    decoder = TokenDecoder(in_dim=24, dim=32, depth=2, num_heads=4, out_dim=5, grid=GRID)
    decoder.apply(init_weights)
    torch.nn.init.normal_(decoder.mask_token, std=0.02)
    return decoder.eval()


def _indices(batch=3, num_visible=4, seed=0):
    noise = torch.rand(batch, GRID.num_tokens, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(noise, dtype=torch.bool)
    mask.scatter_(1, noise.argsort(dim=1)[:, :num_visible], False)
    return mask_to_indices(mask, num_visible)


def _scattered(decoder, visible, visible_idx):
    """The decoder's blocks run on the full (t, h, w) sequence: the visible tokens scattered
    into place among mask tokens (what the [visible, mask tokens] order must equal)."""
    x = decoder.mask_token.expand(visible.shape[0], GRID.num_tokens, -1).clone()
    x.scatter_(1, visible_idx.unsqueeze(-1).expand(-1, -1, 32), decoder.encoder_to_decoder(visible))
    x = x + decoder.pos_embed
    for block in decoder.blocks:
        x = block(x)
    return x


def test_returns_masked_predictions_only():
    decoder = _decoder()
    visible_idx, masked_idx = _indices()
    out = decoder(torch.randn(3, 4, 24), visible_idx, masked_idx)
    assert out.shape == (3, GRID.num_tokens - 4, 5)


def test_equals_scatter_into_token_order():
    """[visible, mask tokens] order == the full (t, h, w) sequence built by scatter."""
    decoder = _decoder()
    visible_idx, masked_idx = _indices()
    visible = torch.randn(3, 4, 24)
    out = decoder(visible, visible_idx, masked_idx)

    expected = decoder.head(decoder.norm(gather_tokens(_scattered(decoder, visible, visible_idx),
                                                       masked_idx)))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_prediction_of_a_hidden_token_depends_on_its_position():
    decoder = _decoder()
    visible_idx, masked_idx = _indices(batch=1)
    out = decoder(torch.randn(1, 4, 24), visible_idx, masked_idx)
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_with_visible_predicts_every_token_visible_first():
    """The visible tokens' predictions are the scattered sequence's outputs at their
    positions, and the hidden ones are the same as without them."""
    decoder = _decoder()
    visible_idx, masked_idx = _indices()
    visible = torch.randn(3, 4, 24)
    both = decoder(visible, visible_idx, masked_idx, with_visible=True)
    assert both.shape == (3, GRID.num_tokens, 5)
    torch.testing.assert_close(both[:, 4:], decoder(visible, visible_idx, masked_idx))

    expected = decoder.head(decoder.norm(gather_tokens(_scattered(decoder, visible, visible_idx),
                                                       visible_idx)))
    torch.testing.assert_close(both[:, :4], expected, atol=1e-5, rtol=1e-5)

"""A light transformer decoder that predicts a target on the hidden tokens (or, as M3Video's
joint decoder, several targets at once: ``MaskedVideoModel`` splits its output)."""

from __future__ import annotations

import torch
from torch import nn

from motionmae.models.layers import LAYER_NORM_EPS, Block, sinusoid_position_embedding
from motionmae.tokens import TokenGrid, gather_tokens


class TokenDecoder(nn.Module):
    """Visible encoder tokens + a learned mask token at every hidden position -> blocks ->
    LayerNorm -> linear head, evaluated on the hidden tokens only.

    The decoder sequence is ``[visible tokens, mask tokens]`` (VideoMAE's order), each with
    the position embedding of the token it stands for, gathered by index. Attention and the
    per-token layers are permutation-equivariant and positions enter only through the added
    embedding, so this equals scattering the tokens back into (t, h, w) order and gathering
    the hidden ones afterwards, without the scatter and the gather (``test_decoder`` checks
    it).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        out_dim: int,
        grid: TokenGrid,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.encoder_to_decoder = nn.Linear(in_dim, dim, bias=False)  # as VideoMAE
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer(
            "pos_embed", sinusoid_position_embedding(grid, dim).unsqueeze(0), persistent=False
        )
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(dim, out_dim)

    def forward(
        self, visible: torch.Tensor, visible_idx: torch.Tensor, masked_idx: torch.Tensor
    ) -> torch.Tensor:
        """Predict the target on the hidden tokens.

        Args:
            visible: ``[B, V, in_dim]`` encoder output, in ``visible_idx`` order.
            visible_idx: ``[B, V]`` int64 token indices of ``visible``.
            masked_idx: ``[B, M]`` int64 token indices of the hidden tokens.

        Returns:
            ``[B, M, out_dim]`` predictions, in ``masked_idx`` order.
        """
        batch, num_masked = masked_idx.shape
        pos = self.pos_embed.expand(batch, -1, -1)
        x = torch.cat(
            [
                self.encoder_to_decoder(visible) + gather_tokens(pos, visible_idx),
                self.mask_token + gather_tokens(pos, masked_idx),
            ],
            dim=1,
        )
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -num_masked:]))

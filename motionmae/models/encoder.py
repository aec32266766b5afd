"""The ViT encoder over tubelets (VideoMAE layout)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from motionmae.models.config import ModelConfig
from motionmae.models.layers import (
    LAYER_NORM_EPS,
    Block,
    TubeletEmbed,
    init_weights,
    sinusoid_position_embedding,
)
from motionmae.tokens import TokenGrid, gather_tokens


class VideoEncoder(nn.Module):
    """Tubelet embedding + fixed sin-cos positions -> ``depth`` pre-norm blocks -> LayerNorm.

    Maps a normalised clip ``[B, C, T, H, W]`` to tokens ``[B, L, D]`` (or ``[B, V, D]`` for the
    visible subset). Hidden tokens are never embedded nor attended to, so a visible token's
    output does not depend on hidden pixels.

    The position table is a non-persistent float32 buffer (recomputed from the grid, not
    saved). Under bf16 autocast it promotes the embedding, so the residual stream stays fp32
    while the matmuls run in bf16 (as with timm/MAE under AMP).
    """

    def __init__(self, cfg: ModelConfig, grid: TokenGrid) -> None:
        super().__init__()
        cfg = cfg.resolved()
        assert cfg.embed_dim is not None and cfg.depth is not None and cfg.num_heads is not None
        if (cfg.tubelet_size, cfg.patch_size) != (grid.tubelet, grid.patch):
            raise ValueError(
                f"model tubelet/patch {cfg.tubelet_size}/{cfg.patch_size} do not match the "
                f"grid's {grid.tubelet}/{grid.patch}"
            )
        self.grid = grid
        self.embed_dim = cfg.embed_dim
        self.depth = cfg.depth
        self.patch_embed = TubeletEmbed(grid, cfg.embed_dim, cfg.difference_gain)
        self.register_buffer(
            "pos_embed", sinusoid_position_embedding(grid, cfg.embed_dim).unsqueeze(0),
            persistent=False,
        )
        # stochastic depth rising linearly from 0 to drop_path over the blocks
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=LAYER_NORM_EPS)
        self.grad_checkpointing = False
        self.apply(init_weights)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them."""
        self.grad_checkpointing = enable

    def embed(self, clip: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Tubelet embedding plus position embedding.

        Args:
            clip: ``[B, C, T, H, W]`` normalised.
            index: ``[B, K]`` int64 tokens to embed (e.g. the visible ones); ``None`` = all.

        Returns:
            ``[B, K or L, D]``.
        """
        tokens = self.patch_embed(clip, index)
        pos = self.pos_embed
        if index is not None:
            pos = gather_tokens(pos.expand(tokens.shape[0], -1, -1), index)
        return tokens + pos

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the blocks and the final norm on embedded tokens ``[B, N, D]`` -> ``[B, N, D]``."""
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, clip: torch.Tensor, visible_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a clip.

        Args:
            clip: ``[B, C, T, H, W]`` normalised.
            visible_idx: ``[B, V]`` int64 indices of the visible tokens; ``None`` = all visible.

        Returns:
            ``[B, V, D]`` (in ``visible_idx`` order) or ``[B, L, D]``, after the final norm.
        """
        return self.forward_tokens(self.embed(clip, visible_idx))

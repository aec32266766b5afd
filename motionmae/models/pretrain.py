"""The pretraining model: one encoder on the visible tokens, one decoder per target."""

from __future__ import annotations

import torch
from torch import nn

from motionmae.config import ModelConfig
from motionmae.models.decoder import TokenDecoder
from motionmae.models.encoder import VideoEncoder
from motionmae.models.layers import init_weights
from motionmae.tokens import TokenGrid


class MaskedVideoModel(nn.Module):
    """Masked video autoencoder with several reconstruction targets.

    ``decoders`` is an ``nn.ModuleDict`` keyed by target name; each decoder owns its
    encoder-to-decoder projection, mask token, blocks and head, so adding a target adds an
    entry and touches nothing else. Parameter names: ``encoder.*`` (see
    :class:`VideoEncoder`) and ``decoders.<target>.*``.

    ``sampler``: an optional learned mask generator (``masking.kind = learned``) kept here so
    that it is saved, restored and moved with the autoencoder (``sampler.*``); the forward
    pass does not use it: the task draws the mask with it and passes the indices.
    """

    def __init__(self, cfg: ModelConfig, grid: TokenGrid, target_dims: dict[str, int],
                 sampler: nn.Module | None = None) -> None:
        super().__init__()
        if not target_dims:
            raise ValueError("target_dims: at least one target is needed")
        cfg = cfg.resolved()
        assert cfg.embed_dim is not None and cfg.decoder_dim is not None
        assert cfg.decoder_heads is not None
        self.cfg = cfg
        self.grid = grid
        self.encoder = VideoEncoder(cfg, grid)
        self.decoders = nn.ModuleDict(
            {
                name: TokenDecoder(
                    cfg.embed_dim, cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads, dim,
                    grid, cfg.mlp_ratio,
                )
                for name, dim in target_dims.items()
            }
        )
        self.decoders.apply(init_weights)
        for decoder in self.decoders.values():
            nn.init.normal_(decoder.mask_token, std=0.02)
        self.sampler = sampler

    def forward(
        self, clip: torch.Tensor, visible_idx: torch.Tensor, masked_idx: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Encode the visible tokens and predict every target on the hidden ones.

        Args:
            clip: ``[B, C, T, H, W]`` normalised.
            visible_idx: ``[B, V]`` int64 visible token indices.
            masked_idx: ``[B, M]`` int64 hidden token indices.

        Returns:
            ``{target: [B, M, D_target]}`` in ``masked_idx`` order.
        """
        visible = self.encoder(clip, visible_idx)
        return {
            name: decoder(visible, visible_idx, masked_idx)
            for name, decoder in self.decoders.items()
        }

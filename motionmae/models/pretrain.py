"""The pretraining model: one encoder on the visible tokens, a light transformer decoder per
target on the hidden ones (or, as M3Video's joint decoder, one for several targets at once:
``MaskedVideoModel`` splits its output)."""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from motionmae.models.config import ModelConfig, decoder_count
from motionmae.models.encoder import (
    LAYER_NORM_EPS,
    Block,
    VideoEncoder,
    init_weights,
    sinusoid_position_embedding,
)
from motionmae.tokens import TokenGrid, gather_tokens

JOINT = "joint"  # key of the joint decoder in ``decoders`` (not a target name)


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
        positions: str = "1d",
    ) -> None:
        super().__init__()
        self.encoder_to_decoder = nn.Linear(in_dim, dim, bias=False)  # as VideoMAE
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer(
            "pos_embed", sinusoid_position_embedding(grid, dim, positions).unsqueeze(0),
            persistent=False
        )
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(dim, out_dim)

    def forward(
        self, visible: torch.Tensor, visible_idx: torch.Tensor, masked_idx: torch.Tensor,
        with_visible: bool = False,
    ) -> torch.Tensor:
        """Predict the target on the hidden tokens (and the visible ones).

        Args:
            visible: ``[B, V, in_dim]`` encoder output, in ``visible_idx`` order.
            visible_idx: ``[B, V]`` int64 token indices of ``visible``.
            masked_idx: ``[B, M]`` int64 token indices of the hidden tokens.
            with_visible: also predict on the visible tokens.

        Returns:
            ``[B, M, out_dim]`` predictions, in ``masked_idx`` order; with ``with_visible``
            ``[B, V + M, out_dim]``, the visible tokens first (``visible_idx`` order).
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
        return self.head(self.norm(x if with_visible else x[:, -num_masked:]))


class MaskedVideoModel(nn.Module):
    """Masked video autoencoder with several reconstruction targets.

    ``decoders`` is an ``nn.ModuleDict``: one :class:`TokenDecoder` per target, keyed by the
    target's name, except the targets in ``cfg.joint_targets``, which share one decoder keyed
    ``joint`` (M3Video's joint decoder: the same blocks, one linear head of the summed width
    whose output is split into the targets' values, in ``joint_targets`` order). Each decoder
    owns its encoder-to-decoder projection, mask token, blocks and head. Parameter names:
    ``encoder.*`` (see :class:`VideoEncoder`), ``decoders.<target>.*`` and
    ``decoders.joint.*``. A checkpoint written before joint decoders existed has no
    ``model.joint_targets`` in its config, so it rebuilds its separate decoders and loads.

    ``sampler``: an optional learned mask generator (``masking.kind = learned``) kept here so
    that it is saved, restored and moved with the autoencoder (``sampler.*``); the forward
    pass does not use it: the task draws the mask with it and passes the indices.
    """

    def __init__(self, cfg: ModelConfig, grid: TokenGrid, target_dims: dict[str, int],
                 sampler: nn.Module | None = None) -> None:
        super().__init__()
        if not target_dims:
            raise ValueError("target_dims: at least one target is needed")
        cfg = cfg.resolved(decoder_count(list(target_dims), cfg.joint_targets))
        assert cfg.embed_dim is not None and cfg.decoder_dim is not None
        assert cfg.decoder_heads is not None
        missing = [name for name in cfg.joint_targets if name not in target_dims]
        if missing:
            raise ValueError(f"model.joint_targets: {missing} not among the targets "
                             f"{list(target_dims)}")
        self.cfg = cfg
        self.grid = grid
        self.target_dims = dict(target_dims)
        self.joint_targets = list(cfg.joint_targets)
        self.encoder = VideoEncoder(cfg, grid)

        def decoder(out_dim: int) -> TokenDecoder:
            return TokenDecoder(cfg.embed_dim, cfg.decoder_dim, cfg.decoder_depth,
                                cfg.decoder_heads, out_dim, grid, cfg.mlp_ratio,
                                cfg.positions)

        decoders = {name: decoder(dim) for name, dim in target_dims.items()
                    if name not in self.joint_targets}
        if self.joint_targets:
            decoders[JOINT] = decoder(sum(target_dims[name] for name in self.joint_targets))
        self.decoders = nn.ModuleDict(decoders)
        self.decoders.apply(init_weights)
        for module in self.decoders.values():
            nn.init.normal_(module.mask_token, std=0.02)
        self.sampler = sampler

    def forward(
        self, clip: torch.Tensor, visible_idx: torch.Tensor, masked_idx: torch.Tensor,
        with_visible: Collection[str] = (),
    ) -> dict[str, torch.Tensor]:
        """Encode the visible tokens and predict every target on the hidden ones.

        Args:
            clip: ``[B, C, T, H, W]`` normalised.
            visible_idx: ``[B, V]`` int64 visible token indices.
            masked_idx: ``[B, M]`` int64 hidden token indices.
            with_visible: the targets also predicted on the visible tokens.

        Returns:
            ``{target: [B, M, D_target]}`` in ``masked_idx`` order, one entry per target (the
            joint decoder's output split into its targets); a target of ``with_visible`` gets
            ``[B, V + M, D_target]``, the visible tokens first.
        """
        visible = self.encoder(clip, visible_idx)
        out = {name: module(visible, visible_idx, masked_idx, name in with_visible)
               for name, module in self.decoders.items() if name != JOINT}
        if self.joint_targets:
            joint_visible = any(name in with_visible for name in self.joint_targets)
            joint = self.decoders[JOINT](visible, visible_idx, masked_idx, joint_visible)
            dims = [self.target_dims[name] for name in self.joint_targets]
            for name, part in zip(self.joint_targets, joint.split(dims, dim=-1), strict=True):
                hidden_only = joint_visible and name not in with_visible
                out[name] = part[:, -masked_idx.shape[1]:] if hidden_only else part
        return {name: out[name] for name in self.target_dims}

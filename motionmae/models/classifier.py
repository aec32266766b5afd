"""Video classification on top of the encoder (VideoMAE fine-tuning head)."""

from __future__ import annotations

import torch
from torch import nn

from motionmae.models.vit import LAYER_NORM_EPS, VideoEncoder

POOLINGS = ("mean",)


class VideoClassifier(nn.Module):
    """Encoder (all tokens) -> mean over tokens -> LayerNorm (``fc_norm``) -> dropout -> linear.

    The head starts small (truncated normal std 0.02 scaled by ``head_init_scale``, bias 0), as
    in VideoMAE fine-tuning, so early logits are near zero.
    """

    def __init__(
        self,
        encoder: VideoEncoder,
        num_classes: int,
        head_init_scale: float = 1e-3,
        pool: str = "mean",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pool not in POOLINGS:
            raise ValueError(f"pool must be one of {list(POOLINGS)}, got {pool!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.encoder = encoder
        self.pool = pool
        self.fc_norm = nn.LayerNorm(encoder.embed_dim, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)

    @property
    def num_layers(self) -> int:
        """Encoder depth, for layer-wise lr decay (:meth:`layer_of` ranges over ``0..depth+1``)."""
        return self.encoder.depth

    def layer_of(self, name: str) -> int:
        """Depth of parameter ``name`` for layer-wise lr decay: 0 = embedding, ``i + 1`` =
        ``encoder.blocks.i``, ``depth + 1`` = final norm and head."""
        if name.startswith("encoder.patch_embed"):
            return 0
        if name.startswith("encoder.blocks."):
            return int(name.split(".")[2]) + 1
        return self.encoder.depth + 1

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> pooled, normalised features ``[B, D]``."""
        return self.fc_norm(self.encoder(clip).mean(dim=1))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> logits ``[B, num_classes]``."""
        return self.head(self.dropout(self.forward_features(clip)))

"""The video ViT, VideoMAE's layout: its parts (attention, MLP, pre-norm block, drop path,
tubelet embedding), the encoder over tubelets (VideoEncoder), and for pretraining one light
decoder per target (TokenDecoder) on the hidden tokens, both in MaskedVideoModel. The learned
sampler, fine-tuning and the exports build on the same parts; the fixed tables (positions,
the difference basis) are in :mod:`motionmae.models.tables`.

Parameter names follow timm / the official VideoMAE code (``patch_embed.proj``,
``blocks.N.norm1``, ``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.mlp.fc1`` ...) so
that weights map one-to-one.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from motionmae.models.config import ModelConfig, decoder_count
from motionmae.models.tables import sinusoid_position_embedding, temporal_difference_basis
from motionmae.tokens import TokenGrid, gather_tokens

LAYER_NORM_EPS = 1e-6
JOINT = "joint"  # key of the joint decoder in ``decoders`` (not a target name)


class TubeletEmbed(nn.Module):
    """Linear embedding of non-overlapping ``tubelet x patch x patch`` tubelets.

    The weights live in a ``Conv3d`` with ``kernel = stride = (tubelet, patch, patch)`` (the
    VideoMAE layout), but the projection is applied as a matmul on flattened tubelets, which
    lets :meth:`forward` embed only the tubelets it is asked for (the visible ones).

    With ``difference_gain`` g > 0 the kernel's time axis reads the tubelet in the basis of
    :func:`temporal_difference_basis` (the frames' mean and g x their successive
    differences) instead of the frames: the same linear map, but initialised and updated in
    coordinates where motion is as loud as appearance. :meth:`frame_weight` gives the plain
    kernel (for exports to VideoMAE's layout).
    """

    def __init__(self, grid: TokenGrid, dim: int, difference_gain: float = 0.0) -> None:
        super().__init__()
        self.grid = grid
        self.difference_gain = float(difference_gain)
        kernel = (grid.tubelet, grid.patch, grid.patch)
        self.proj = nn.Conv3d(grid.channels, dim, kernel_size=kernel, stride=kernel)
        self.basis: torch.Tensor | None
        if self.difference_gain > 0 and grid.tubelet > 1:
            self.register_buffer("basis", temporal_difference_basis(
                grid.tubelet, self.difference_gain), persistent=False)
        else:
            self.basis = None

    def tubelets(self, clip: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Flattened tubelets, values ordered (c, pt, ph, pw) like the flattened ``Conv3d``
        kernel (not :func:`motionmae.tokens.patchify`'s order).

        Args:
            clip: ``[B, C, T, H, W]``.
            index: ``[B, K]`` int64 token indices; ``None`` = all ``L`` tokens.

        Returns:
            ``[B, K or L, C*tubelet*patch*patch]``. Only the selected tubelets are copied out
            of the clip.
        """
        g = self.grid
        batch, channels = clip.shape[:2]
        # [B, t, h, w, C, pt, ph, pw], a view of the clip
        grouped = clip.reshape(batch, channels, g.t, g.tubelet, g.h, g.patch, g.w, g.patch)
        grouped = grouped.permute(0, 2, 4, 6, 1, 3, 5, 7)
        if index is None:
            return grouped.reshape(batch, g.num_tokens, -1)
        rows = torch.arange(batch, device=index.device).unsqueeze(1)
        t, rest = index // g.spatial, index % g.spatial
        return grouped[rows, t, rest // g.w, rest % g.w].flatten(2)

    def forward(self, clip: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Embed tubelets.

        Args:
            clip: ``[B, C, T, H, W]``.
            index: ``[B, K]`` int64 token indices to embed; ``None`` embeds all ``L`` tokens.

        Returns:
            ``[B, K or L, dim]``.
        """
        return F.linear(self.tubelets(clip, index), self.frame_weight().flatten(1),
                        self.proj.bias)

    def frame_weight(self) -> torch.Tensor:
        """The kernel on plain frames, ``[dim, C, tubelet, patch, patch]``: ``proj.weight``
        (which reads the difference basis) times :func:`temporal_difference_basis` along
        time; ``proj.weight`` itself when ``difference_gain`` is 0. What VideoMAE's
        ``Conv3d`` holds for the same function."""
        if self.basis is None:
            return self.proj.weight
        basis = self.basis.to(self.proj.weight.dtype)
        return torch.einsum("ocihw,ij->ocjhw", self.proj.weight, basis)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and
    ``F.scaled_dot_product_attention``.

    ``qkv`` has one bias of size ``3*dim``. VideoMAE has separate ``q_bias``/``v_bias`` and no
    key bias; that is the same map with the key third of the bias set to zero (load it so).
    A key bias cannot change the output (it adds the same ``q . b_k`` to every logit of a
    query's row, which softmax ignores): its gradient is zero up to rounding, and whatever
    value it drifts to can be dropped when exporting to VideoMAE's layout.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, dim]`` -> ``[B, N, dim]``."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, head_dim]
        if x.device.type == "cpu" and q.dtype == torch.bfloat16:
            # PyTorch's CPU flash-attention backward is much slower in bf16 than in fp32 on
            # CPUs without bf16 matrix units (docs/benchmarks.md); its accumulation is fp32
            # either way, so compute attention in fp32 there (autocast off: it would cast the
            # inputs back). GPUs keep bf16.
            with torch.autocast("cpu", enabled=False):
                x = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
            x = x.to(q.dtype)
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """``fc1 -> GELU (exact) -> fc2``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., dim]`` -> ``[..., dim]``."""
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability ``p``
    and scale the kept ones by ``1 / (1 - p)``. Draws from the global RNG, like ``nn.Dropout``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, ...]`` -> ``[B, ...]``."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, dim]`` -> ``[B, N, dim]``."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_weights(module: nn.Module) -> None:
    """MAE initialisation, for ``module.apply``: xavier-uniform Linear weights and zero biases,
    LayerNorm 1 / 0, and the tubelet ``Conv3d`` initialised like a Linear on flattened
    tubelets."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv3d):
        weight = module.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


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
        self.positions = cfg.positions
        self.register_buffer(
            "pos_embed",
            sinusoid_position_embedding(grid, cfg.embed_dim, cfg.positions).unsqueeze(0),
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

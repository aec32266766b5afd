"""The ViT encoder over tubelets (VideoEncoder, VideoMAE layout) and its parts: attention,
MLP, pre-norm block, drop path, tubelet embedding and VideoMAE's fixed sinusoid position
table (the decoders, the learned sampler, fine-tuning and the exports build on the same parts).

Parameter names follow timm / the official VideoMAE code (``patch_embed.proj``,
``blocks.N.norm1``, ``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.mlp.fc1`` ...) so
that weights map one-to-one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from motionmae.models.config import ModelConfig
from motionmae.tokens import TokenGrid, gather_tokens

LAYER_NORM_EPS = 1e-6


def sinusoid_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed 1D sin-cos table (``get_sinusoid_encoding_table``): ``[num_positions,
    dim]`` float32.

    Entry ``(p, j)`` is ``sin(p / 10000^(2*(j//2)/dim))`` for even ``j`` and ``cos(...)`` for odd
    ``j``: sines and cosines interleaved, positions counted over the flattened (t, h, w) tokens.
    Computed in float64 like the NumPy original, then rounded to float32.
    """
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    exponent = 2.0 * torch.div(torch.arange(dim), 2, rounding_mode="floor").double() / dim
    angles = position / torch.pow(10000.0, exponent)
    table = torch.empty(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


def sinusoid_position_embedding(grid: TokenGrid, dim: int, kind: str = "1d") -> torch.Tensor:
    """Fixed position embedding of every token of ``grid``: ``[L, dim]`` float32, tokens in
    (t, h, w) order.

    ``"1d"``: VideoMAE's table over the ``L = t*h*w`` flattened token indices, so VideoMAE
    checkpoints load and produce identical features. ``"3d"``: the tables of the token's t,
    h and w concatenated, ``dim - 2*k``, ``k`` and ``k`` wide with ``k = 2*(dim // 6)``
    (ModelConfig.positions says why).
    """
    if kind == "1d":
        return sinusoid_position_table(grid.num_tokens, dim)
    if kind != "3d":
        raise ValueError(f"unknown position table {kind!r}; choose '1d' or '3d'")
    side = 2 * (dim // 6)
    if side == 0:
        raise ValueError(f"a 3d position table needs dim >= 6, got {dim}")
    t, h, w = torch.meshgrid(torch.arange(grid.t), torch.arange(grid.h), torch.arange(grid.w),
                             indexing="ij")
    parts = [sinusoid_position_table(size, width)[index.reshape(-1)]
             for size, width, index in ((grid.t, dim - 2 * side, t), (grid.h, side, h),
                                        (grid.w, side, w))]
    return torch.cat(parts, dim=1)


def temporal_difference_basis(frames: int, gain: float) -> torch.Tensor:
    """``[frames, frames]`` float32 ``B`` mapping a tubelet's frames ``x`` (along time) to its
    coordinates ``B @ x``: row 0 the mean of the frames, row ``i >= 1`` ``gain *
    (x_i - x_{i-1})``. Invertible for ``gain > 0`` (a kernel ``W`` on these coordinates is
    ``W @ B`` on the frames)."""
    if frames < 1 or gain <= 0:
        raise ValueError(f"need frames >= 1 and gain > 0, got {frames} and {gain}")
    basis = torch.zeros(frames, frames)
    basis[0] = 1.0 / frames
    for i in range(1, frames):
        basis[i, i], basis[i, i - 1] = gain, -gain
    return basis


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

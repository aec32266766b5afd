"""The encoder/decoder architecture's settings (the ``model`` section of a run config)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from motionmae.config_loading import check

# name -> (embed_dim, depth, num_heads, decoder_dim, decoder_heads)
POSITION_TABLES = ("1d", "3d")  # ModelConfig.positions

MODEL_SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (192, 12, 3, 128, 4),
    "small": (384, 12, 6, 192, 3),
    "base": (768, 12, 12, 384, 6),
    "large": (1024, 24, 16, 512, 8),
}



@dataclass
class ModelConfig:
    """ViT encoder over tubelets plus light decoders. ``None`` sizes come from ``size``."""

    size: str = "tiny"
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    decoder_dim: int | None = None
    # Blocks per decoder; ``None``: :func:`default_decoder_depth` of the model's decoder count
    # (4 for one decoder, VideoMAE's; 2 each for two or more).
    decoder_depth: int | None = None
    decoder_heads: int | None = None
    drop_path: float = 0.0
    # The tubelet projection reads each tubelet as the mean of its frames and their
    # successive differences times this gain; 0 reads the frames as they are (VideoMAE's).
    # A change of basis of the same linear map (exports fold it into VideoMAE's kernel), but
    # it decides what learns first: with plain frames a tiny ViT on 2x16x16 tubelets of real
    # footage learned no motion (a frame difference is a small part of a frame's norm and
    # the gradient follows appearance); with gain 4 it did (docs/benchmarks.md, "The tubelet
    # read in the frame-difference basis").
    difference_gain: float = 4.0
    # The fixed sin-cos position table: "1d" is VideoMAE's, one table over the flattened
    # (t, h, w) token index; "3d" concatenates one table per axis, so that "the same place at
    # another time" is one shared part of the code (with the 1D table a token and the one a
    # tubelet later differ by h*w positions, which no attention head matches easily).
    positions: str = "1d"
    # Targets predicted by one joint decoder (M3Video's default): one set of blocks and one
    # linear head whose output is split into the targets' values; each target keeps its own
    # loss and weight. Targets not listed get a decoder each. Empty: one decoder per target.
    joint_targets: list[str] = field(default_factory=list)

    def validate(self, key: str = "model") -> None:
        check(self.size in MODEL_SIZES, f"{key}.size", f"must be one of {sorted(MODEL_SIZES)}, "
               f"got {self.size!r}")
        for name in ("embed_dim", "depth", "num_heads", "decoder_dim", "decoder_heads"):
            value = getattr(self, name)
            check(value is None or value > 0, f"{key}.{name}", f"must be positive, got {value}")
        check(self.patch_size > 0, f"{key}.patch_size", "must be positive")
        check(self.tubelet_size > 0, f"{key}.tubelet_size", "must be positive")
        check(self.decoder_depth is None or self.decoder_depth >= 1, f"{key}.decoder_depth",
              f"must be >= 1 (or null: by the number of decoders), got {self.decoder_depth}")
        check(0.0 <= self.drop_path < 1.0, f"{key}.drop_path", "must be in [0, 1)")
        check(self.difference_gain >= 0.0, f"{key}.difference_gain",
               f"must be >= 0 (0: plain frames), got {self.difference_gain}")
        check(self.positions in POSITION_TABLES, f"{key}.positions",
              f"must be one of {list(POSITION_TABLES)}, got {self.positions!r}")
        check(not self.joint_targets or len(self.joint_targets) >= 2, f"{key}.joint_targets",
               f"a joint decoder needs at least two targets, got {self.joint_targets}")
        check(len(set(self.joint_targets)) == len(self.joint_targets), f"{key}.joint_targets",
               f"has duplicates: {self.joint_targets}")
        resolved = self.resolved()
        check(resolved.embed_dim % resolved.num_heads == 0, f"{key}.num_heads",
               f"embed_dim {resolved.embed_dim} is not divisible by {resolved.num_heads} heads")
        check(resolved.decoder_dim % resolved.decoder_heads == 0, f"{key}.decoder_heads",
               f"decoder_dim {resolved.decoder_dim} is not divisible by "
               f"{resolved.decoder_heads} heads")

    def resolved(self, num_decoders: int = 1) -> ModelConfig:
        """A copy with every size filled in from the named size (what checkpoints store), and
        a null ``decoder_depth`` from ``num_decoders``, the decoders the model builds
        (:func:`decoder_count`)."""
        embed_dim, depth, heads, dec_dim, dec_heads = MODEL_SIZES[self.size]
        return dataclasses.replace(
            self,
            decoder_depth=self.decoder_depth or default_decoder_depth(num_decoders),
            embed_dim=self.embed_dim or embed_dim,
            depth=self.depth or depth,
            num_heads=self.num_heads or heads,
            decoder_dim=self.decoder_dim or dec_dim,
            decoder_heads=self.decoder_heads or dec_heads,
        )


def decoder_count(target_names: list[str], joint_targets: list[str]) -> int:
    """How many decoders a model of these targets builds: one per target, except that the
    ``joint_targets`` share one."""
    separate = [name for name in target_names if name not in joint_targets]
    return len(separate) + (1 if joint_targets else 0)


def default_decoder_depth(num_decoders: int) -> int:
    """Blocks per decoder when ``model.decoder_depth`` is null: VideoMAE's 4 for a single
    decoder, 2 each for two or more, so that the decoders together cost what VideoMAE's
    one does (chosen on the motion suite: docs/benchmarks.md, "Decoders: what the motion
    mode needs")."""
    return 4 if num_decoders <= 1 else 2


SAVED_MODEL_DEFAULTS: dict[str, Any] = {"difference_gain": 0.0, "decoder_depth": 4,
                                        "positions": "1d"}
"""What a ``model`` section saved before a key existed meant: the value that reproduces the
model it was trained as (not today's default)."""


def saved_model_dict(model: dict[str, Any]) -> dict[str, Any]:
    """A stored ``model`` section (checkpoint description, run config) with the keys it
    predates filled in as :data:`SAVED_MODEL_DEFAULTS` says."""
    return {**SAVED_MODEL_DEFAULTS, **model}



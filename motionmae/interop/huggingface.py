"""Hugging Face ``transformers`` VideoMAE folders (``config.json`` + weights), both ways.

Reading and writing need neither ``transformers`` nor a network: the folder is plain JSON and
safetensors. :func:`export_huggingface` writes what ``VideoMAEModel.from_pretrained(dir)``
loads; :func:`load_huggingface` reads such folders, including ``VideoMAEForPreTraining`` and
``VideoMAEForVideoClassification`` ones (their ``videomae.*`` weights; decoder and classifier
are ignored).

Correspondence (per layer ``N``; ours -> HF under ``encoder.layer.N.``):
``norm1`` -> ``layernorm_before``, ``attn.qkv`` -> ``attention.attention.{query,key,value}``,
``attn.proj`` -> ``attention.output.dense``, ``norm2`` -> ``layernorm_after``, ``mlp.fc1`` ->
``intermediate.dense``, ``mlp.fc2`` -> ``output.dense``; ``patch_embed.proj`` ->
``embeddings.patch_embeddings.projection``, ``norm`` -> ``layernorm``.

The final norm: HF's ``VideoMAEModel`` applies ``layernorm`` only when
``use_mean_pooling=False``. An encoder with a final LayerNorm (every motionmae checkpoint) is
exported with ``use_mean_pooling=False``, so ``last_hidden_state`` equals our output; an encoder
without one (``norm`` is identity, from a fine-tuned checkpoint) with ``use_mean_pooling=True``.

Biases: HF VideoMAE has query and value biases and no key bias, our ``qkv`` one fused bias. The
key third is dropped on export. This cannot change any output: a key bias ``b_k`` adds
``q_i . b_k`` to every logit of query ``i``'s softmax row, and softmax is invariant to adding a
constant to a row (``test_key_bias_is_dropped_without_effect`` checks it to 1e-5). Biases are
written as ``attention.attention.q_bias``/``v_bias`` (the name ``transformers`` 4.x uses; 5.x
renames them to ``query.bias``/``value.bias`` on load), so the folder loads in both.

HF's LayerNorm epsilon (default 1e-12) is kept on load (every LayerNorm of the encoder gets
``layer_norm_eps``) and written on export (motionmae's is 1e-6).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from motionmae.data.config import IMAGENET_MEAN, IMAGENET_STD
from motionmae.interop.common import (
    InteropError,
    check_mlp_ratio,
    list_keys,
    model_config,
    set_layer_norm_eps,
)
from motionmae.models import VideoEncoder
from motionmae.models.tables import sinusoid_position_embedding
from motionmae.tokens import TokenGrid

log = logging.getLogger(__name__)

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
MODEL_TYPE = "videomae"

# ours (within blocks.N.) -> HF (within encoder.layer.N.), for weight and bias alike
_LAYER_RENAMES = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.output.dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_ATTN = "attention.attention."
_BIAS_NAMES = {"q": ("q_bias", "query.bias"), "v": ("v_bias", "value.bias")}


def _folder(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.is_file() else path


def is_huggingface_folder(path: str | Path) -> bool:
    """Whether ``path`` (a folder, or a file in it) holds a HF VideoMAE ``config.json``."""
    config = _folder(path) / CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == MODEL_TYPE
    except (json.JSONDecodeError, AttributeError):
        return False


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a HF VideoMAE folder; raises :class:`InteropError` otherwise."""
    config_path = _folder(path) / CONFIG
    if not config_path.is_file():
        raise InteropError(f"{_folder(path)}: no {CONFIG}; not a Hugging Face model folder")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise InteropError(f"{config_path}: not valid JSON ({error})") from error
    if config.get("model_type") != MODEL_TYPE:
        raise InteropError(f"{config_path}: model_type is {config.get('model_type')!r}, "
                           f"expected {MODEL_TYPE!r} (a transformers VideoMAE model)")
    return config


def _square(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2:
        raise InteropError(f"config {name}={value!r}: expected an int or [height, width]")
    return pair[0], pair[1]


def hf_grid(config: dict[str, Any]) -> TokenGrid:
    """The token grid a HF VideoMAE config describes (``image_size``, ``num_frames``...)."""
    height, width = _square(config.get("image_size", 224), "image_size")
    patch_h, patch_w = _square(config.get("patch_size", 16), "patch_size")
    if patch_h != patch_w:
        raise InteropError(f"patch_size {patch_h}x{patch_w}: only square patches are supported")
    return TokenGrid(frames=config.get("num_frames", 16), height=height, width=width,
                     tubelet=config.get("tubelet_size", 2), patch=patch_h,
                     channels=config.get("num_channels", 3))


def read_hf_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a HF folder: ``model.safetensors``, a sharded safetensors index, or
    ``pytorch_model.bin`` (read with ``weights_only=True``)."""
    folder = _folder(path)
    if (folder / SAFETENSORS).is_file():
        return load_file(str(folder / SAFETENSORS))
    if (folder / SAFETENSORS_INDEX).is_file():
        index = json.loads((folder / SAFETENSORS_INDEX).read_text())
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state |= load_file(str(folder / shard))
        return state
    if (folder / PYTORCH_BIN).is_file():
        from motionmae.interop.videomae import read_state_dict

        return read_state_dict(folder / PYTORCH_BIN)
    raise InteropError(f"{folder}: no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} or "
                       f"{PYTORCH_BIN})")


def from_hf_state_dict(
    state: dict[str, torch.Tensor], depth: int, final_norm: bool, source: str = "weights"
) -> dict[str, torch.Tensor]:
    """HF VideoMAE tensors -> :class:`VideoEncoder` tensors (zero key bias).

    Accepts the base-model names (``embeddings.*``, ``encoder.layer.N.*``, ``layernorm.*``) or
    those of a task model (``videomae.*``; other keys such as the decoder or classifier are
    ignored) and both bias spellings (``q_bias`` or ``query.bias``).

    Raises:
        InteropError: naming the missing and unexpected keys.
    """
    if any(k.startswith("videomae.") for k in state):
        base = {k[len("videomae."):]: v for k, v in state.items() if k.startswith("videomae.")}
    else:
        base = {k: v for k, v in state.items()
                if k.startswith(("embeddings.", "encoder.", "layernorm."))}
    ignored = sorted(set(state) - {"videomae." + k for k in base} - set(base))
    if ignored:
        log.info("%s: ignored %s", source, list_keys(ignored))
    remaining = dict(base)
    missing: list[str] = []

    def take(name: str) -> torch.Tensor | None:
        value = remaining.pop(name, None)
        if value is None:
            missing.append(name)
        return value

    out: dict[str, torch.Tensor | None] = {
        "patch_embed.proj.weight": take("embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": take("embeddings.patch_embeddings.projection.bias"),
    }
    if final_norm:
        out["norm.weight"] = take("layernorm.weight")
        out["norm.bias"] = take("layernorm.bias")
    for i in range(depth):
        hf, ours = f"encoder.layer.{i}.", f"blocks.{i}."
        for our_name, hf_name in _LAYER_RENAMES.items():
            for kind in ("weight", "bias"):
                out[f"{ours}{our_name}.{kind}"] = take(f"{hf}{hf_name}.{kind}")
        weights = [take(f"{hf}{_ATTN}{n}.weight") for n in ("query", "key", "value")]
        biases = {}
        for which, names in _BIAS_NAMES.items():
            found = [remaining.pop(f"{hf}{_ATTN}{n}") for n in names if f"{hf}{_ATTN}{n}" in
                     remaining]
            biases[which] = found[0] if found else None
        if remaining.pop(f"{hf}{_ATTN}key.bias", None) is not None:
            raise InteropError(f"{source}: {hf}{_ATTN}key.bias is set; HF VideoMAE has no key "
                               "bias")
        if any(w is None for w in weights):
            continue
        out[f"{ours}attn.qkv.weight"] = torch.cat(weights)  # type: ignore[arg-type]
        zero = weights[0].new_zeros(weights[0].shape[0])  # type: ignore[union-attr]
        q_bias = biases["q"] if biases["q"] is not None else zero
        v_bias = biases["v"] if biases["v"] is not None else zero
        out[f"{ours}attn.qkv.bias"] = torch.cat([q_bias, zero, v_bias])
    if not final_norm:
        for name in ("layernorm.weight", "layernorm.bias"):
            if remaining.pop(name, None) is not None:
                log.info("%s: %s ignored (use_mean_pooling=True: HF applies no final norm)",
                         source, name)
    if missing or remaining:
        raise InteropError(
            f"{source}: does not match a VideoMAE model of depth {depth}; missing keys: "
            f"[{list_keys(missing)}]; unexpected keys: [{list_keys(remaining)}]"
        )
    return {k: v for k, v in out.items() if v is not None}


def load_huggingface(path: str | Path) -> tuple[VideoEncoder, TokenGrid]:
    """A ``transformers`` VideoMAE folder as a motionmae encoder (eval mode) and its grid.

    The encoder computes ``VideoMAEModel(...).last_hidden_state`` (with clips ``[B, C, T, H,
    W]``, where HF takes ``[B, T, C, H, W]``). With ``use_mean_pooling=True`` (HF's default,
    and that of fine-tuned models) there is no final norm: ``encoder.norm`` is identity.
    """
    folder = _folder(path)
    config = read_hf_config(folder)
    if config.get("hidden_act", "gelu") != "gelu":
        raise InteropError(f"{folder}: hidden_act {config['hidden_act']!r} is not supported "
                           "(motionmae uses exact GELU)")
    grid = hf_grid(config)
    hidden = config.get("hidden_size", 768)
    depth = config.get("num_hidden_layers", 12)
    cfg = model_config(
        hidden, depth, config.get("num_attention_heads", 12),
        check_mlp_ratio(hidden, config.get("intermediate_size", 4 * hidden), str(folder)),
        grid.tubelet, grid.patch,
    )
    final_norm = not config.get("use_mean_pooling", True)
    weights = from_hf_state_dict(read_hf_weights(folder), depth, final_norm, str(folder))
    encoder = VideoEncoder(cfg, grid)
    if not final_norm:
        encoder.norm = nn.Identity()
    result = encoder.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InteropError(f"{folder}: missing keys [{list_keys(result.missing_keys)}]; "
                           f"unexpected keys [{list_keys(result.unexpected_keys)}]")
    set_layer_norm_eps(encoder, config.get("layer_norm_eps", 1e-12))
    return encoder.eval(), grid


def hf_normalisation(path: str | Path) -> tuple[list[float], list[float]]:
    """``(mean, std)`` from the folder's ``preprocessor_config.json``, else ImageNet's."""
    file = _folder(path) / PREPROCESSOR
    if file.is_file():
        try:
            pre = json.loads(file.read_text())
            return list(pre["image_mean"]), list(pre["image_std"])
        except (json.JSONDecodeError, KeyError, TypeError):
            log.warning("%s: unreadable; assuming ImageNet normalisation", file)
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


# --------------------------------------------------------------------------------------------
# Writing


def _layer_norm_eps(encoder: VideoEncoder) -> float:
    values = {m.eps for m in encoder.modules() if isinstance(m, nn.LayerNorm)}
    if len(values) != 1:
        raise InteropError(f"the encoder's LayerNorms use different eps values {sorted(values)}")
    return values.pop()


def to_hf_state_dict(encoder: VideoEncoder) -> dict[str, torch.Tensor]:
    """:class:`VideoEncoder` tensors under ``VideoMAEModel`` names (key bias dropped).

    Fresh contiguous CPU tensors, ready for safetensors."""
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    dim = encoder.embed_dim
    out = {
        # VideoMAE's kernel reads plain frames: the difference basis is folded in.
        "embeddings.patch_embeddings.projection.weight":
            encoder.patch_embed.frame_weight().detach().cpu().contiguous(),
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
    }
    if "norm.weight" in state:
        out["layernorm.weight"] = state["norm.weight"]
        out["layernorm.bias"] = state["norm.bias"]
    largest_key_bias = 0.0
    for i in range(encoder.depth):
        hf, ours = f"encoder.layer.{i}.", f"blocks.{i}."
        for our_name, hf_name in _LAYER_RENAMES.items():
            for kind in ("weight", "bias"):
                out[f"{hf}{hf_name}.{kind}"] = state[f"{ours}{our_name}.{kind}"]
        query, key, value = state[f"{ours}attn.qkv.weight"].split(dim)
        q_bias, k_bias, v_bias = state[f"{ours}attn.qkv.bias"].split(dim)
        largest_key_bias = max(largest_key_bias, float(k_bias.abs().max()))
        out |= {
            f"{hf}{_ATTN}query.weight": query,
            f"{hf}{_ATTN}key.weight": key,
            f"{hf}{_ATTN}value.weight": value,
            f"{hf}{_ATTN}q_bias": q_bias,
            f"{hf}{_ATTN}v_bias": v_bias,
        }
    if largest_key_bias > 0:
        log.debug("dropping the key bias (max |b_k| = %.3g): softmax is invariant to it",
                 largest_key_bias)
    return {k: v.contiguous().clone() for k, v in out.items()}


def hf_config(encoder: VideoEncoder, grid: TokenGrid | None = None) -> dict[str, Any]:
    """The ``VideoMAEConfig`` fields (as ``config.json``) of ``encoder`` on ``grid``."""
    grid = grid or encoder.grid
    block = encoder.blocks[0]
    image_size: int | list[int] = (
        grid.height if grid.height == grid.width else [grid.height, grid.width]
    )
    return {
        "architectures": ["VideoMAEModel"],
        "model_type": MODEL_TYPE,
        "image_size": image_size,
        "patch_size": grid.patch,
        "num_channels": grid.channels,
        "num_frames": grid.frames,
        "tubelet_size": grid.tubelet,
        "hidden_size": encoder.embed_dim,
        "num_hidden_layers": encoder.depth,
        "num_attention_heads": block.attn.num_heads,
        "intermediate_size": block.mlp.fc1.out_features,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": _layer_norm_eps(encoder),
        "qkv_bias": True,  # transformers 4.x name
        "qv_bias": True,  # transformers 5.x name
        "use_mean_pooling": isinstance(encoder.norm, nn.Identity),
        "decoder_num_attention_heads": 6,
        "decoder_hidden_size": 384,
        "decoder_num_hidden_layers": 4,
        "decoder_intermediate_size": 1536,
        "norm_pix_loss": True,
        "torch_dtype": "float32",
    }


def _preprocessor_config(grid: TokenGrid, mean: list[float], std: list[float]) -> dict:
    return {
        "image_processor_type": "VideoMAEImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": min(grid.height, grid.width)},
        "do_center_crop": True,
        "crop_size": {"height": grid.height, "width": grid.width},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
    }


def export_huggingface(
    encoder: VideoEncoder,
    grid: TokenGrid | None,
    out_dir: str | Path,
    *,
    mean: list[float] | tuple[float, ...] = IMAGENET_MEAN,
    std: list[float] | tuple[float, ...] = IMAGENET_STD,
) -> Path:
    """Write ``encoder`` as a folder ``transformers.VideoMAEModel.from_pretrained`` loads.

    Files: ``config.json`` (``VideoMAEConfig`` fields), ``model.safetensors`` (HF names),
    ``preprocessor_config.json`` (``mean``/``std`` of the training clips, RGB in [0, 1]).

    Args:
        encoder: a motionmae encoder with the fixed sin-cos position table (HF has no other).
        grid: its token grid (default ``encoder.grid``).
        out_dir: created if needed; existing files of these names are replaced.

    Returns:
        ``out_dir`` as a Path.
    """
    grid = grid or encoder.grid
    if grid != encoder.grid:
        raise InteropError(f"grid {grid} differs from the encoder's {encoder.grid}")
    if encoder.positions != "1d":
        raise InteropError(f"the encoder's positions are the {encoder.positions} sin-cos "
                           "table (model.positions); transformers' VideoMAE has only the 1d "
                           "one: export it as 'motionmae' instead")
    expected = sinusoid_position_embedding(grid, encoder.embed_dim)
    if not torch.allclose(encoder.pos_embed[0].detach().cpu().float(), expected, atol=1e-6):
        raise InteropError("the encoder's position table is not VideoMAE's fixed sin-cos table "
                           "(a learned one?); transformers' VideoMAE cannot represent it")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(to_hf_state_dict(encoder), str(out / SAFETENSORS), metadata={"format": "pt"})
    (out / CONFIG).write_text(json.dumps(hf_config(encoder, grid), indent=2) + "\n")
    (out / PREPROCESSOR).write_text(
        json.dumps(_preprocessor_config(grid, list(mean), list(std)), indent=2) + "\n"
    )
    log.debug("wrote a transformers VideoMAE folder to %s", out)
    return out

"""``motionmae export``: a checkpoint as a self-contained folder with a model card.

Formats:

- ``motionmae``: ``model.safetensors`` + ``config.json`` (+ ``manifest.json``), the layout
  :func:`motionmae.load_encoder` and every ``--checkpoint`` flag accept. A motionmae checkpoint's
  weights are copied whole (encoder and decoders); a foreign encoder is written as
  ``encoder.*``.
- ``hf``: a ``transformers`` VideoMAE folder (:func:`export_huggingface`), which
  :func:`motionmae.load_encoder` also reads.

Both get a ``README.md`` saying what the model is and how it was trained (targets, masking,
data list, steps), from the checkpoint's ``config.json`` and training state.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from motionmae.checkpoints.format import (
    CONFIG,
    MANIFEST,
    STATE,
    WEIGHTS,
    Checkpoint,
    resolve_checkpoint,
)
from motionmae.config import PretrainConfig
from motionmae.config_loading import ConfigError, from_dict, to_dict
from motionmae.errors import UsageError
from motionmae.fileio import sha256_file
from motionmae.interop.auto import detect_format, load_any_encoder
from motionmae.interop.common import InteropError
from motionmae.interop.huggingface import export_huggingface
from motionmae.models import VideoEncoder
from motionmae.models.tables import sinusoid_position_embedding
from motionmae.models.vit import LAYER_NORM_EPS
from motionmae.version import __version__

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("motionmae", "hf")
README = "README.md"


def export(
    checkpoint: str | Path, format: str, out_dir: str | Path, *, overwrite: bool = False
) -> Path:
    """Export a checkpoint to ``out_dir`` in ``format`` (``"motionmae"`` or ``"hf"``).

    Args:
        checkpoint: anything ``--checkpoint`` takes (run folder, checkpoint folder or file,
            exported folder), a ``transformers`` VideoMAE folder or an official VideoMAE /
            TrackMAE ``.pth`` file.
        format: ``"motionmae"`` or ``"hf"``.
        out_dir: the folder to write (created).
        overwrite: replace an existing export in ``out_dir``.

    Returns:
        ``out_dir`` as a Path; it holds weights, ``config.json`` and ``README.md``.

    Raises:
        UsageError: unknown format; ``out_dir`` already holds a model and ``overwrite`` is
            off (the message names ``--overwrite``); ``out_dir`` is the checkpoint itself.
        InteropError: the model cannot be represented in ``format``.
    """
    if format not in EXPORT_FORMATS:
        raise UsageError(f"format must be one of {list(EXPORT_FORMATS)}, got {format!r}")
    out = Path(out_dir)
    existing = [n for n in (WEIGHTS, CONFIG, README) if (out / n).exists()]
    if existing and not overwrite:
        raise UsageError(f"{out} already holds an export ({', '.join(existing)}): choose "
                         "another folder, or replace it with --overwrite (overwrite=True in "
                         "Python)")
    source_format = detect_format(checkpoint)
    native = resolve_checkpoint(checkpoint) if source_format == "motionmae" else None
    if native is not None and out.resolve() == native.path.resolve():
        raise UsageError(f"{out} is the checkpoint itself; choose another folder")
    encoder, description = load_any_encoder(checkpoint)
    train_state = _train_state(native) if native is not None else {}
    out.mkdir(parents=True, exist_ok=True)
    if format == "hf":
        data = description.get("data", {})
        kwargs = {k: data[k] for k in ("mean", "std") if k in data}
        export_huggingface(encoder, encoder.grid, out, **kwargs)
    elif native is not None:
        shutil.copyfile(native.path / WEIGHTS, out / WEIGHTS)
        _write_config(out, description | {"exported_from": str(native.path)},
                      train_state.get("step", native.step))
    else:
        _write_foreign_encoder(encoder, description, out)
    metrics = _last_metrics(native) if native is not None else {}
    card = model_card(description, format, str(checkpoint), train_state, metrics)
    dropped = _dropped_head(description) if format == "hf" else None
    if dropped is not None:
        log.warning("%s", dropped)
        card += f"\n## Not in this export\n\n{dropped}\n"
    (out / README).write_text(card)
    log.debug("exported %s (%s) to %s (%s)", checkpoint, source_format, out, format)
    return out


def _dropped_head(description: dict[str, Any]) -> str | None:
    """What an 'hf' export of a fine-tuned classifier leaves out, and why; None for encoders."""
    if description.get("kind") != "finetune":
        return None
    classes = description.get("head", {}).get("num_classes", "?")
    return (f"the classification head (fc_norm, head; {classes} classes) is not in this "
            "export: transformers' VideoMAEForVideoClassification pools the tokens before any "
            "norm, and this model normalises them first (the encoder's final norm), so the "
            "folder holds the fine-tuned encoder (VideoMAEModel). `--format motionmae` keeps "
            "the head (`motionmae evaluate` reads it).")


# --------------------------------------------------------------------------------------------
# motionmae folders


def _write_config(out: Path, description: dict[str, Any], step: int) -> None:
    """``config.json`` and a ``manifest.json`` over it and the weights (checked on load)."""
    (out / CONFIG).write_text(json.dumps(description, indent=2, sort_keys=True))
    files = {name: {"size": (out / name).stat().st_size, "sha256": sha256_file(out / name)}
             for name in (WEIGHTS, CONFIG)}
    (out / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=2))


def _write_foreign_encoder(encoder: VideoEncoder, description: dict[str, Any], out: Path) -> None:
    """A foreign encoder in motionmae's layout, if motionmae's encoder can express it."""
    if isinstance(encoder.norm, nn.Identity):
        raise InteropError("this encoder has no final norm (a fine-tuned, mean-pooling model); "
                           "motionmae checkpoints always have one: export it as 'hf' instead")
    expected = sinusoid_position_embedding(encoder.grid, encoder.embed_dim, encoder.positions)
    if not torch.allclose(encoder.pos_embed[0].cpu(), expected, atol=1e-6):
        raise InteropError("this encoder has a learned position table, which motionmae "
                           "checkpoints do not store")
    eps = {m.eps for m in encoder.modules() if isinstance(m, nn.LayerNorm)}
    if eps != {LAYER_NORM_EPS}:
        log.warning("LayerNorm eps %s becomes motionmae's %g: features change slightly",
                    sorted(eps), LAYER_NORM_EPS)
    weights = {f"encoder.{k}": v.detach().cpu().contiguous()
               for k, v in encoder.state_dict().items()}
    save_file(weights, str(out / WEIGHTS))
    _write_config(out, description, -1)


def _train_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's ``train_state`` (step, epoch, ...), or {} without ``state.pt``.
    Memory-mapped: the optimizer state is not read into memory."""
    path = checkpoint.path / STATE
    if not path.is_file():
        return {}
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    train_state = state.get("train_state", {}) if isinstance(state, dict) else {}
    return {k: v for k, v in train_state.items() if isinstance(v, int | float | str)}


def _last_metrics(checkpoint: Checkpoint) -> dict[str, Any]:
    """The last record of the run's ``metrics.jsonl`` (run folder = ``checkpoints/..``)."""
    path = checkpoint.path.parent.parent / "metrics.jsonl"
    if checkpoint.path.parent.name != "checkpoints" or not path.is_file():
        return {}
    last: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and any(k.startswith("loss") for k in record):
            last = record
    return last


# --------------------------------------------------------------------------------------------
# The model card


def _lr_rule_text(optim: dict[str, Any]) -> str:
    """The peak-lr rule of a run's ``optim`` section in words (``OptimConfig.peak_lr``;
    configs from before the rule existed scaled linearly at every batch)."""
    reference = optim.get("reference_batch", 256)
    text = f"{_fmt(optim.get('base_lr'))} x batch / {reference}"
    scaling = optim.get("lr_scaling", "linear")
    floor = optim.get("min_peak_lr")
    if scaling != "linear":
        text += f" ({scaling} below batch {reference}"
        text += f", floor {_fmt(floor)})" if floor is not None else ")"
    elif floor is not None:
        text += f" (floor {_fmt(floor)} below batch {reference})"
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _saved_components(config: dict[str, Any]) -> PretrainConfig | None:
    """The ``targets`` and ``masking`` sections of a saved run config, built through the
    registries (legacy keys moved), so the card asks the specs, not the names; None when a
    component of the run is not registered here (a plugin that is not loaded)."""
    try:
        run = from_dict(PretrainConfig, {key: config[key] for key in ("targets", "masking")
                                         if isinstance(config.get(key), dict)})
        for sections in (run.targets, run.masking):
            for name in sections.selected():
                sections.REGISTRY.get(name)
        return run
    except ConfigError as error:
        log.info("model card: the run's components are not all registered here (%s)", error)
        return None


def _training_lines(config: dict[str, Any], state: dict[str, Any],
                    metrics: dict[str, Any]) -> list[str]:
    lines = []
    targets = config.get("targets", {})
    parts = []
    for name in targets.get("names", []):
        settings = {k: v for k, v in targets.get(name, {}).items() if k != "weight"}
        detail = ", ".join(f"{k}={_fmt(v)}" for k, v in settings.items())
        parts.append(f"`{name}` (weight {_fmt(targets.get(name, {}).get('weight', 1.0))}"
                     + (f"; {detail}" if detail else "") + ")")
    if parts:
        lines.append(f"- Targets: {', '.join(parts)}")
    masking = config.get("masking", {})
    components = _saved_components(config)
    if masking:
        settings = ({} if components is None
                    else to_dict(getattr(components.masking, components.masking.kind)))
        detail = ", ".join(f"{k}={_fmt(v)}" for k, v in settings.items())
        lines.append(f"- Masking: `{masking.get('kind')}`, ratio {_fmt(masking.get('ratio'))}"
                     + (f"; {detail}" if detail else ""))
    tracking = config.get("tracking", {})
    # A selected target or the masking kind, as configured, read tracks (the specs say).
    if tracking and components is not None and components.needs_tracks:
        lines.append(f"- Point tracks: `{tracking.get('tracker')}` tracker")
    data = config.get("data", {})
    if data:
        lines.append(f"- Data: list `{data.get('train')}`; {data.get('frames')} frames at "
                     f"stride {data.get('stride')}, {data.get('size')} px, "
                     f"{data.get('num_sample', 1)} clip(s) per video")
    run, optim = config.get("run", {}), config.get("optim", {})
    planned = (f"{run['steps']} steps" if run.get("steps") else
               f"{run['epochs']} epochs" if run.get("epochs") else None)
    step = state.get("step")
    if step is not None or planned:
        done = f"{step} steps" if step is not None else "steps not recorded"
        epoch = f" (epoch {state['epoch']})" if "epoch" in state else ""
        lines.append(f"- Steps: {done}{epoch}" + (f" of {planned} planned" if planned else ""))
    if run:
        accum = optim.get("accum_steps", 1)
        lines.append(f"- Batch: {run.get('batch_size')} clips x {accum} accumulation step(s), "
                     f"seed {run.get('seed')}, precision {run.get('precision')}")
    if optim:
        lr = optim.get("lr") if optim.get("lr") is not None else _lr_rule_text(optim)
        lines.append(f"- Optimizer: AdamW, lr {_fmt(lr)}, weight decay "
                     f"{_fmt(optim.get('weight_decay'))}, warmup fraction "
                     f"{_fmt(optim.get('warmup_fraction'))}, cosine to {_fmt(optim.get('min_lr'))}")
    if state.get("skipped_steps"):
        lines.append(f"- Skipped steps (non-finite loss or gradient): {state['skipped_steps']}")
    if state.get("bad_video_files"):
        lines.append(f"- Bad video files skipped: {state['bad_video_files']} (the run's "
                     "bad_videos.tsv lists them)")
    # Checkpoints from before the two counts saved the draws alone, as bad_videos.
    draws = state.get("bad_video_draws", state.get("bad_videos"))
    if draws:
        lines.append(f"- Draws of a bad video replaced by another video: {draws}")
    losses = {k: v for k, v in metrics.items() if k.startswith("loss")}
    if losses:
        at = f" at step {metrics['step']}" if "step" in metrics else ""
        lines.append("- Last logged loss" + at + ": "
                     + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(losses.items())))
    return lines


def model_card(description: dict[str, Any], format: str, source: str,
               state: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> str:
    """The ``README.md`` of an export: architecture, input/output, training, how to load.

    Args:
        description: the checkpoint's ``config.json`` (``kind``, ``model``, ``grid``, ``data``
            and, for motionmae runs, ``config``: the full training configuration).
        format: ``"motionmae"`` or ``"hf"``.
        source: where the weights came from.
        state: the checkpoint's ``train_state`` (``step``, ``epoch``...), if any.
        metrics: the last logged metrics record of the run, if any.
    """
    model, grid = description.get("model", {}), description.get("grid", {})
    data = description.get("data", {})
    kind = description.get("kind", "motionmae")
    tubelet, patch = grid.get("tubelet", 2), grid.get("patch", 16)
    tokens = ((grid.get("frames", 0) // tubelet) * (grid.get("height", 0) // patch)
              * (grid.get("width", 0) // patch))
    lines = [
        f"# motionmae video encoder ({kind})",
        "",
        f"Exported by motionmae {__version__} from `{source}` in the `{format}` format.",
        "",
        "## Model",
        "",
        f"- ViT encoder over tubelets: width {model.get('embed_dim')}, depth "
        f"{model.get('depth')}, {model.get('num_heads')} heads, MLP ratio "
        f"{_fmt(model.get('mlp_ratio'))}; tubelets of {tubelet} frames x {patch} x {patch} px; "
        "fixed sin-cos position table (VideoMAE's)",
        f"- Input: clips `[B, 3, {grid.get('frames')}, {grid.get('height')}, "
        f"{grid.get('width')}]`, RGB in [0, 1] normalised with mean {_fmt(data.get('mean'))} "
        f"and std {_fmt(data.get('std'))}",
        f"- Output: tokens `[B, {tokens}, {model.get('embed_dim')}]`, ordered (t, h, w)",
        "",
        "## Training",
        "",
    ]
    config = description.get("config")
    training = _training_lines(config, state or {}, metrics or {}) if config else []
    if training:
        lines += training
    elif kind in ("videomae", "huggingface"):
        lines.append(f"Converted from a {kind} checkpoint; how it was trained is not recorded "
                     "in the file (see its original model card).")
    else:
        lines.append("Not recorded in the checkpoint.")
    lines += ["", "## Loading", "", "```python", "import motionmae", "",
              'encoder = motionmae.load_encoder("THIS_FOLDER")  # [B, C, T, H, W] -> [B, L, D]']
    if format == "hf":
        lines += ["", "from transformers import VideoMAEModel", "",
                  'model = VideoMAEModel.from_pretrained("THIS_FOLDER")',
                  "tokens = model(clip.transpose(1, 2)).last_hidden_state  # takes [B, T, C, H, W]"]
    lines += ["```", ""]
    return "\n".join(lines)

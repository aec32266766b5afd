"""A fine-tuned classifier on disk: what its ``config.json`` says, how to load it, and how
an evaluation list's labels map onto its classes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionmae.checkpoints.encoders import encoder_from_description
from motionmae.checkpoints.format import CheckpointError, resolve_checkpoint
from motionmae.data import VideoEntry, VideoList
from motionmae.models import VideoClassifier

KIND = "finetune"


def describe_classifier(
    model: VideoClassifier,
    model_config: dict[str, Any],
    data: dict[str, Any],
    classes: list[str] | None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``config.json`` of a classifier checkpoint: ``kind`` ``"finetune"``, ``model``
    (encoder architecture), ``grid``, ``encoder`` (final norm present, LayerNorm eps), ``head``
    (classes, pooling), ``classes`` (names or null), ``data`` (normalisation, stride) and
    ``extra`` entries (e.g. the run's ``config``). ``load_encoder`` reads it like a
    pretraining checkpoint's."""
    encoder = model.encoder
    eps = {m.eps for m in encoder.modules() if isinstance(m, nn.LayerNorm)}
    if len(eps) != 1:
        raise ValueError(f"the encoder's LayerNorms use different eps values {sorted(eps)}")
    return {
        "kind": KIND,
        "model": model_config,
        "grid": dataclasses.asdict(encoder.grid),
        "encoder": {"final_norm": not isinstance(encoder.norm, nn.Identity),
                    "layer_norm_eps": eps.pop()},
        "head": {"num_classes": model.head.out_features, "pool": model.pool},
        "classes": classes,
        "data": data,
        **extra,
    }


def load_classifier(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[VideoClassifier, dict[str, Any]]:
    """A classifier (eval mode) and its description from a fine-tuning run folder or
    checkpoint, or from an official fine-tuned VideoMAE ``.pth`` (mean-pooling head).

    Raises:
        CheckpointError: ``path`` holds an encoder without a classification head.
    """
    from motionmae.interop import detect_format, load_videomae_classifier
    from motionmae.interop.common import describe, encoder_config

    fmt = detect_format(path)
    if fmt == "videomae":
        model, grid = load_videomae_classifier(path)
        description = describe("videomae", encoder_config(model.encoder), grid, str(path),
                               classes=None)
        return model.to(device).eval(), description
    if fmt == "huggingface":
        raise CheckpointError(f"{path}: Hugging Face folders load as encoders only (no "
                              "classification head); fine-tune it with `motionmae finetune`")
    checkpoint = resolve_checkpoint(path)
    description = checkpoint.config()
    if description.get("kind") != KIND:
        raise CheckpointError(
            f"{checkpoint.path}: a {description.get('kind', 'unknown')!r} checkpoint has no "
            "classification head; fine-tune it (`motionmae finetune`) or probe its frozen "
            "features (`motionmae probe`)")
    head = description["head"]
    model = VideoClassifier(encoder_from_description(description), head["num_classes"],
                            pool=head["pool"])
    model.load_state_dict(checkpoint.weights())
    return model.to(device).eval(), description


def align_labels(videos: VideoList, classes: list[str] | None, num_classes: int,
                 source: str) -> VideoList:
    """``videos`` with labels in a model's class order.

    A list labelled with class names gets each name's index in ``classes`` (a list's own
    numbering depends on which names it contains); integer labels are kept. Unlabelled lists
    pass through.

    Raises:
        ValueError: a name the model does not know, names for a model trained on integer
            labels, or an integer label ``>= num_classes``; the message names ``source``.
    """
    labelled = [e for e in videos.entries if e.label is not None]
    if not labelled:
        return videos
    if videos.classes is not None:
        if classes is None:
            raise ValueError(f"{source}: labels are class names but the model was trained on "
                             "integer labels")
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted(set(videos.classes) - set(index))
        if unknown:
            raise ValueError(f"{source}: classes {unknown} are not among the model's "
                             f"{len(classes)} classes")
        entries = [VideoEntry(e.path, None if e.label is None
                              else index[videos.classes[e.label]]) for e in videos.entries]
        return VideoList(entries, list(classes))
    top = max(e.label for e in labelled)
    if top >= num_classes:
        raise ValueError(f"{source}: label {top} is out of range for a model of "
                         f"{num_classes} classes")
    return videos

"""A fine-tuned classifier on disk: what its ``config.json`` says, how to load it, and how
an evaluation list's labels map onto its classes."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionmae.checkpoints.encoders import encoder_from_description
from motionmae.checkpoints.format import CheckpointError, resolve_checkpoint
from motionmae.data import VideoList
from motionmae.models import VideoClassifier

KIND = "finetune"

log = logging.getLogger(__name__)


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
                 source: str, model: str = "the model") -> VideoList:
    """``videos`` with labels in a model's class order.

    A list labelled with class names gets each name's index in ``classes``, the names the
    classifier was trained with (a list's own numbering depends on which names it contains);
    integer labels without names are the model's ids already. A model that records no class
    names (trained on integer labels, or from elsewhere) can only be matched by number: the
    list's own numbering is then used, with a warning when the list has names. Unlabelled
    lists pass through.

    Raises:
        LabelError: a class the model does not know, or an integer label ``>= num_classes``;
            the message names ``source`` and ``model``.
    """
    if classes is None and videos.classes is not None and any(
            e.label is not None for e in videos.entries):
        log.warning("%s records no class names: the labels of %s are matched to it by number "
                    "(the list's own numbering of its classes), which is right only if the "
                    "training list numbered them the same way", model, source)
        videos = VideoList(videos.entries, None)
    return videos.relabelled(classes, range(num_classes), source, model)

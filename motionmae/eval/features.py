"""Frozen-feature extraction: every token visible, mean-pooled after the encoder's final norm
(or all tokens, for the attentive probe), of a loader's clips or of a whole list, and the
``.npz`` files that let several probes be trained from one extraction pass."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from motionmae.data import VideoDataset, VideoList, build_loader, read_video_list
from motionmae.data.config import DataConfig
from motionmae.data.entries import LabelError, relabel
from motionmae.errors import DataError
from motionmae.eval.multiview import views_per_item

log = logging.getLogger(__name__)


class FeatureFileError(DataError, ValueError):
    """Features that cannot be read or used: not an ``.npz``, arrays missing, Python objects
    (pickle, refused), pooled where tokens are needed; the message names the file."""


@dataclass
class FeatureSet:
    """Clip features with their labels and source videos.

    ``features [N, D]`` (pooled) or ``[N, L, D]`` (tokens) float32, ``labels [N]`` int64
    (-1 = unlabelled), ``paths`` N strings, ``classes`` the class names (``classes[label]``;
    ``None`` for integer labels without names), ``source`` where they came from (a list or a
    file; named by errors), ``origin`` what made them (:func:`feature_origin`: the encoder's
    weights and the clips; empty when unknown).
    """

    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    classes: list[str] | None = None
    source: str = ""
    origin: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.features) == len(self.labels) == len(self.paths)):
            raise ValueError(
                f"features ({len(self.features)}), labels ({len(self.labels)}) and paths "
                f"({len(self.paths)}) differ in length"
            )


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    loader: DataLoader,
    paths: list[str],
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    on_batch: Callable[[int], None] | None = None,
    pool: bool = True,
) -> FeatureSet:
    """Mean-pooled tokens (``pool``; features ``[N, D]``) or all tokens (``[N, L, D]``, for
    the attentive probe) of every clip the loader yields.

    Args:
        encoder: maps a normalised clip ``[B, C, T, H, W]`` to tokens ``[B, L, D]``.
        loader: yields dicts with ``clip`` ``[R, C, T, H, W]``, ``label`` ``[R]`` and ``index``
            ``[R]``; with several evaluation views per video, each video's views are
            consecutive rows and ``view`` ``[R]`` numbers them (an evaluation
            ``VideoDataset``): their features are averaged into one row per video.
        paths: the dataset's video paths, indexed by ``index``.
    """
    device = torch.device(device)
    encoder = encoder.to(device).eval()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    features, labels, indices = [], [], []
    for batch in loader:
        clip = batch["clip"].to(device, non_blocking=True)
        views = views_per_item(batch)
        with autocast:
            tokens = encoder(clip)
        pooled = tokens.float().mean(dim=1) if pool else tokens.float()
        pooled = pooled.view(-1, views, *pooled.shape[1:]).mean(dim=1)
        features.append(pooled.cpu())
        labels.append(batch["label"].view(-1, views)[:, 0])
        indices.append(batch["index"].view(-1, views)[:, 0])
        if on_batch is not None:
            on_batch(len(pooled))
    order = torch.cat(indices).tolist() if indices else []
    return FeatureSet(
        features=torch.cat(features).numpy() if features else np.zeros((0, 0), np.float32),
        labels=torch.cat(labels).numpy().astype(np.int64) if labels else np.zeros(0, np.int64),
        paths=[paths[i] for i in order],
    )


def list_features(
    encoder: nn.Module,
    videos: str | Path | VideoList,
    data: DataConfig,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    on_batch: Callable[[int], None] | None = None,
    pool: bool = True,
) -> FeatureSet:
    """Frozen features of every video of a list (a list file, a dataset spec, or a list read
    already), evaluation views averaged, with the list's class names; all tokens instead of
    their mean when ``pool`` is false. ``data``: the checkpoint's evaluation clips
    (:func:`~motionmae.eval.clips.eval_data_config`)."""
    source = "" if isinstance(videos, VideoList) else str(videos)
    if not isinstance(videos, VideoList):
        videos = read_video_list(videos)
    dataset = VideoDataset(videos, data, train=False, seed=0)
    loader = build_loader(dataset, batch_size=batch_size, workers=data.workers, shuffle=False,
                          seed=0, drop_last=False)
    paths = [str(entry.path) for entry in videos.entries]
    features = extract_features(encoder, loader, paths, device, precision, on_batch, pool)
    dataset.warn_short_clips()  # padded clips silently change what the probe sees
    return dataclasses.replace(features, classes=videos.classes, source=source)


def weights_digest(module: nn.Module) -> str:
    """A short SHA-256 of ``module``'s parameters and buffers (names, dtypes, shapes, values):
    equal for the same weights wherever they were loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def feature_origin(encoder: nn.Module, data: DataConfig, checkpoint: str = "") -> dict[str, Any]:
    """What features depend on besides their videos: the encoder's weights
    (:func:`weights_digest`) and the clips it saw (frames, stride, size, views);
    ``checkpoint`` only names it in messages."""
    return {"weights": weights_digest(encoder), "checkpoint": checkpoint,
            "frames": data.frames, "stride": data.stride, "size": data.size,
            "test_clips": data.test_clips, "test_crops": data.test_crops}


def check_same_origin(val: FeatureSet, train: FeatureSet) -> None:
    """Refuse to compare features made by different encoders or from different clips (two
    ``features`` files from two checkpoints score a meaningless number); warn when only the
    number of views differs (more views at test time is a choice). Sets whose origin is
    unknown (files written before it was stored, features made in memory) are not checked.

    Raises:
        FeatureFileError: naming what differs.
    """
    if not val.origin or not train.origin:
        return
    val_name = val.source or "the validation features"
    train_name = train.source or "the training features"

    def differences(keys: tuple[str, ...]) -> str:
        return ", ".join(f"{key} {val.origin.get(key)} against {train.origin.get(key)}"
                         for key in keys if val.origin.get(key) != train.origin.get(key))

    if val.origin.get("weights") != train.origin.get("weights"):
        raise FeatureFileError(
            f"{val_name}: made by another encoder than {train_name} (weights "
            f"{val.origin.get('weights')} against {train.origin.get('weights')}; checkpoints "
            f"{val.origin.get('checkpoint') or '?'} and {train.origin.get('checkpoint') or '?'})"
            ": extract both with the same checkpoint")
    clips = differences(("frames", "stride", "size"))
    if clips:
        raise FeatureFileError(f"{val_name}: made from other clips than {train_name} "
                               f"({clips}): extract both from the same checkpoint's clips")
    views = differences(("test_clips", "test_crops"))
    if views:
        log.warning("%s: averaged over other views than %s (%s)", val_name, train_name, views)


def save_features(features: FeatureSet, path: str | Path) -> None:
    """Write ``features``, ``labels``, ``paths`` and (when named) ``classes`` arrays to an
    ``.npz`` file.

    Token features (``[N, L, D]``) are stored as float16, which halves a file that is ``L``
    times the pooled one; :func:`load_features` returns float32 either way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = features.features
    if values.ndim == 3:
        values = values.astype(np.float16)
    names = {} if features.classes is None else {"classes": np.asarray(features.classes,
                                                                       dtype=str)}
    if features.origin:
        names["origin"] = np.asarray(json.dumps(features.origin, sort_keys=True))
    np.savez(path, features=values, labels=features.labels,
             paths=np.asarray(features.paths, dtype=str), **names)


def load_features(path: str | Path) -> FeatureSet:
    """Read a file written by :func:`save_features` (no pickle); features as float32. Files
    written before class names were stored load with ``classes`` ``None``.

    Raises:
        FeatureFileError: not an ``.npz`` file, an array missing, or an array of Python
            objects (refused: loading it would run code from the file).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("features", "labels", "paths", "classes", "origin")
                      if k in data.files}
    except (ValueError, zipfile.BadZipFile, EOFError) as error:
        if "Object arrays" in str(error):
            raise FeatureFileError(f"{path}: refused: an array of Python objects is never "
                                   f"loaded, as unpickling could run code ({error})") from None
        if "pickled" in str(error):  # numpy's word for anything neither zip nor .npy
            raise FeatureFileError(f"{path}: not a features .npz file (a pickle, or not "
                                   "NumPy data; pickles are refused, as they could run "
                                   "code)") from None
        raise FeatureFileError(f"{path}: not a features .npz file ({error})") from None
    absent = [k for k in ("features", "labels", "paths") if k not in arrays]
    if absent:
        raise FeatureFileError(f"{path}: no {' or '.join(absent)} array: not a features file "
                               "from `motionmae features`")
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else None
    origin = json.loads(str(arrays["origin"])) if "origin" in arrays else {}
    return FeatureSet(arrays["features"].astype(np.float32), arrays["labels"],
                      [str(p) for p in arrays["paths"]], classes, str(path), origin)


def align_features(val: FeatureSet, train: FeatureSet) -> FeatureSet:
    """``val`` with its labels in ``train``'s numbering, matched by class name (see
    :func:`~motionmae.data.entries.relabel`); its classes are then ``train``'s. When only one
    set has class names (a file written before they were stored), labels are matched by
    number, with a warning.

    Raises:
        LabelError: an unlabelled clip in either set, or a ``val`` class that no ``train``
            clip has.
    """
    val_name = val.source or "the validation features"
    train_name = train.source or "the training features"
    for features, name in ((train, train_name), (val, val_name)):
        missing = int((features.labels < 0).sum())
        if missing:
            raise LabelError(f"{name}: {missing} of {len(features.labels)} clips have no "
                             "label; a probe needs a label for every clip")
    named = val.classes is not None and train.classes is not None
    if not named and (val.classes is not None or train.classes is not None):
        unnamed = val_name if val.classes is None else train_name
        log.warning("%s has no class names (written before features files stored them?): "
                    "labels of %s are matched to %s by number; extract it again to match "
                    "them by name", unnamed, val_name, train_name)
    labels = relabel(val.labels.tolist(), val.classes if named else None,
                     train.classes if named else None, set(train.labels.tolist()), val_name,
                     train_name)
    return dataclasses.replace(val, labels=np.asarray(labels, np.int64), classes=train.classes)

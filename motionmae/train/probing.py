"""Linear probes of the encoder while it pretrains (``run.probe_every``).

Every ``run.probe_every`` steps (and at the last step) rank 0 extracts frozen, mean-pooled
features of two small labelled lists (``run.probe_train``, ``run.probe_val``) with the
current encoder (eval mode, no gradients, on the training device), fits a linear probe
(:func:`motionmae.evaluate.run_probe`) and logs its top-1 accuracy as ``probe/linear``: a
curve that says whether the representation improves, not only the loss.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionmae.data.config import DataConfig
from motionmae.evaluate import (
    baselines,
    eval_data_config,
    list_features,
    read_probe_lists,
    run_probe,
)

log = logging.getLogger(__name__)


class TrainingProbe:
    """A linear probe of an encoder on fixed train/val lists; ``probe(encoder, device)`` ->
    ``{"probe/linear": top-1}``.

    Args:
        train_list, val_list: list files (or dataset specs) with a label for every video;
            read (and ``val_list``'s classes checked against ``train_list``'s) here, so that
            a bad list fails before training.
        data: the evaluation clips (geometry and normalisation of the training clips).
        batch_size: clips per feature-extraction batch.
        precision: ``fp32`` or ``bf16`` autocast for the encoder.
    """

    def __init__(self, train_list: str | Path, val_list: str | Path, data: DataConfig,
                 batch_size: int = 8, precision: str = "fp32") -> None:
        self.train_videos, self.val_videos = read_probe_lists(train_list, val_list)
        self.data = data
        self.batch_size = batch_size
        self.precision = precision

    @classmethod
    def for_pretraining(cls, description: dict[str, Any], train_list: str | Path,
                        val_list: str | Path, workers: int, batch_size: int,
                        precision: str) -> TrainingProbe:
        """The probe of a pretraining task from its ``describe()`` (clip geometry and
        normalisation), one evaluation view per video."""
        data = eval_data_config(description, workers=workers)
        return cls(train_list, val_list, data, batch_size, precision)

    def __call__(self, encoder: nn.Module, device: torch.device) -> dict[str, float]:
        was_training = encoder.training
        start = time.perf_counter()
        try:
            train = list_features(encoder, self.train_videos, self.data, self.batch_size,
                                  device, self.precision)
            val = list_features(encoder, self.val_videos, self.data, self.batch_size, device,
                                self.precision)
        finally:
            encoder.train(was_training)  # extract_features left it in eval mode
        result = run_probe("linear", train, val)
        log.info("linear probe: top-1 %.1f%% (%s; %d train / %d val clips, %.1f s)",
                 100 * result.top1, baselines(result), result.num_train, result.num_val,
                 time.perf_counter() - start)
        return {"probe/linear": result.top1}

"""The clips a checkpoint is evaluated on: its training clip geometry and normalisation."""

from __future__ import annotations

import dataclasses

from motionmae.config_loading import from_dict
from motionmae.data.config import DataConfig


def eval_data_config(description: dict, **overrides) -> DataConfig:
    """The evaluation data settings of a checkpoint: the clip geometry and normalisation it was
    trained with, plus ``overrides`` (e.g. ``test_clips``)."""
    # The training config's data section, else the description's own (foreign checkpoints
    # carry their normalisation there).
    saved = {**description.get("data", {}), **description.get("config", {}).get("data", {})}
    grid = description["grid"]
    keep = {k: saved[k] for k in ("stride", "mean", "std", "on_error") if k in saved}
    data = from_dict(DataConfig, keep, "data")
    data = dataclasses.replace(data, frames=grid["frames"], size=grid["height"], **overrides)
    data.validate()
    return data

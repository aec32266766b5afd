"""Moved to :mod:`motionmae.eval` (kept until its importers follow)."""

from motionmae.eval.clips import eval_data_config
from motionmae.eval.features import list_features
from motionmae.eval.probing import PROBES, baselines, read_probe_lists, run_probe

__all__ = ["PROBES", "baselines", "eval_data_config", "list_features", "read_probe_lists",
           "run_probe"]

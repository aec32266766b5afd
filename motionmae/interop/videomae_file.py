"""Reading an official VideoMAE / TrackMAE checkpoint file into a dict of tensors.

The official code saves ``{"model": state_dict, ...}`` (``"module"`` in some releases, and
other wrapper keys elsewhere), sometimes with a DistributedDataParallel ``module.`` prefix on
every key; :func:`read_state_dict` unwraps both. Files are read with
``torch.load(weights_only=True)``: a file that needs arbitrary code to unpickle is refused
(``argparse.Namespace``, which the official trainer saves as ``args``, is the one class allowed
besides tensors and containers). ``.safetensors`` files are read with safetensors.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file

from motionmae.errors import unpickling_reason
from motionmae.interop.common import InteropError, list_keys

__all__ = ["OFFICIAL_SUFFIXES", "read_state_dict"]

OFFICIAL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
_WRAPPERS = ("model", "module", "state_dict", "model_state")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint file, unwrapped (``model``/``module`` key) and
    without a DistributedDataParallel ``module.`` prefix.

    Raises:
        InteropError: the file is missing, is not a PyTorch/safetensors checkpoint, needs code
            to unpickle (refused), or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InteropError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as error:
            raise InteropError(f"{path}: not a safetensors file ({error})") from error
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InteropError(f"{path}: {unpickling_reason(error)}") from error
    except Exception as error:  # garbage input fails anywhere in the unpickler
        raise InteropError(
            f"{path}: not a PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from error
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise InteropError(f"{path}: no state dict found (expected a dict of tensors, possibly "
                           f"under one of {list(_WRAPPERS)})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InteropError(f"{path}: no tensors found; top-level keys: {list_keys(obj)}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors

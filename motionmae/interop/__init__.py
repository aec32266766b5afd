"""Other checkpoint formats: official VideoMAE/TrackMAE ``.pth`` files, Hugging Face
``transformers`` VideoMAE folders, and ``motionmae export``.

- :func:`load_any_encoder` / :func:`detect_format`: any supported checkpoint as an encoder.
- :func:`load_videomae_encoder`, :func:`load_videomae_classifier`,
  :func:`load_videomae_pretrain`: official checkpoints (position tables regenerated or
  resampled for other clip sizes).
- :func:`load_huggingface`, :func:`export_huggingface`: ``transformers`` folders, both ways.
- :func:`export`: a checkpoint as a motionmae or HF folder with a model card.
"""

from motionmae.interop.auto import FORMATS, detect_format, load_any_encoder
from motionmae.interop.common import InteropError
from motionmae.interop.export import EXPORT_FORMATS, export, model_card
from motionmae.interop.huggingface import (
    export_huggingface,
    hf_config,
    is_huggingface_folder,
    load_huggingface,
)
from motionmae.interop.positions import infer_layout, interpolate_positions, is_sinusoid_table
from motionmae.interop.videomae import (
    load_videomae_classifier,
    load_videomae_encoder,
    load_videomae_pretrain,
)
from motionmae.interop.videomae_file import read_state_dict
from motionmae.interop.videomae_keys import OfficialWeights, convert_official

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "InteropError",
    "OfficialWeights",
    "convert_official",
    "detect_format",
    "export",
    "export_huggingface",
    "hf_config",
    "infer_layout",
    "interpolate_positions",
    "is_huggingface_folder",
    "is_sinusoid_table",
    "load_any_encoder",
    "load_huggingface",
    "load_videomae_classifier",
    "load_videomae_encoder",
    "load_videomae_pretrain",
    "model_card",
    "read_state_dict",
]

"""Models: ViT layers, the tubelet encoder, target decoders, the pretraining model and the
classifier, and a factory with named sizes."""

from motionmae.models.classifier import VideoClassifier
from motionmae.models.factory import create_encoder, create_model, model_config
from motionmae.models.tables import sinusoid_position_embedding, sinusoid_position_table
from motionmae.models.vit import (
    Attention,
    Block,
    DropPath,
    MaskedVideoModel,
    Mlp,
    TokenDecoder,
    TubeletEmbed,
    VideoEncoder,
)

__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "MaskedVideoModel",
    "Mlp",
    "TokenDecoder",
    "TubeletEmbed",
    "VideoClassifier",
    "VideoEncoder",
    "create_encoder",
    "create_model",
    "model_config",
    "sinusoid_position_embedding",
    "sinusoid_position_table",
]

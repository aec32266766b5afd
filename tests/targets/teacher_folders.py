"""Tiny randomly initialised teacher folders, written by ``save_pretrained`` as real ones are.

Each folder holds what the Hugging Face hub's folder of that family holds: ``config.json`` and
``model.safetensors``, and (except ``dinov2_with_registers``, which tests the family defaults)
a ``preprocessor_config.json`` with the family's real processor settings scaled to 32 px.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

IMAGE = 32  # teacher image side, pixels
PATCH = 8
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              image_size=IMAGE, patch_size=PATCH)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
            vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)

OPENAI = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
HALF = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])

# family -> (processor config, as the hub's folders have it, or None)
PROCESSORS = {
    "clip_vision_model": {"image_processor_type": "CLIPImageProcessor",
                          "size": {"shortest_edge": IMAGE},
                          "crop_size": {"height": IMAGE, "width": IMAGE},
                          "do_center_crop": True, "resample": 3, "mean_std": OPENAI},
    "clip": {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": IMAGE},
             "crop_size": {"height": IMAGE, "width": IMAGE}, "do_center_crop": True,
             "resample": 3, "mean_std": OPENAI},
    "siglip_vision_model": {"image_processor_type": "SiglipImageProcessor",
                            "size": {"height": IMAGE, "width": IMAGE}, "resample": 2,
                            "mean_std": HALF},
    "dinov2": {"image_processor_type": "BitImageProcessor",
               "size": {"shortest_edge": IMAGE + IMAGE // 7},  # DINOv2: 256 -> crop 224
               "crop_size": {"height": IMAGE, "width": IMAGE}, "do_center_crop": True,
               "resample": 3, "mean_std": IMAGENET},
    "dinov2_with_registers": None,
}
REGISTERS = 2


def build_model(family: str) -> torch.nn.Module:
    import transformers as tf

    if family == "clip_vision_model":
        return tf.CLIPVisionModel(tf.CLIPVisionConfig(**VISION))
    if family == "clip":
        return tf.CLIPModel(tf.CLIPConfig(vision_config=VISION, text_config=TEXT,
                                          projection_dim=16))
    if family == "siglip_vision_model":
        return tf.SiglipVisionModel(tf.SiglipVisionConfig(**VISION))
    if family == "dinov2":
        return tf.Dinov2Model(tf.Dinov2Config(**VISION))
    if family == "dinov2_with_registers":
        return tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(
            **VISION, num_register_tokens=REGISTERS))
    raise ValueError(family)


def write_teacher(folder: Path, family: str, seed: int = 0) -> Path:
    """A tiny ``family`` teacher saved into ``folder``; returns ``folder``."""
    torch.manual_seed(seed)
    model = build_model(family).eval()
    for module in model.modules():  # LayerNorms off identity: the final norm must show
        if isinstance(module, torch.nn.LayerNorm):
            torch.nn.init.normal_(module.weight, 1.0, 0.5)
            torch.nn.init.normal_(module.bias, 0.0, 0.5)
    model.save_pretrained(folder)
    processor = PROCESSORS[family]
    if processor is not None:
        processor = dict(processor)
        mean, std = processor.pop("mean_std")
        processor.update(do_resize=True, do_rescale=True, rescale_factor=1 / 255,
                         do_normalize=True, image_mean=mean, image_std=std)
        (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return folder

"""Frozen teacher image models from local Hugging Face folders: what they are, and loading them.

A teacher folder is what ``save_pretrained`` writes (``config.json`` plus ``model.safetensors``,
``pytorch_model.bin`` or a sharded index, and usually the image processor's
``preprocessor_config.json``). The kind of model comes from ``config.json``'s ``model_type``:

=========================  ==========================  ============  ============================
``model_type``             loaded as                   tokens before where the final norm is
                                                       the patches
=========================  ==========================  ============  ============================
``clip_vision_model``      ``CLIPVisionModel``         1 (CLS)       ``post_layernorm``: applied
``clip``                   ``CLIPModel`` vision tower                 here to the patch tokens
                                                                     (HF applies it to CLS only)
``siglip_vision_model``    ``SiglipVisionModel``       0             in ``last_hidden_state``
``siglip``                 ``SiglipModel`` vision tower
``dinov2``                 ``Dinov2Model``             1 (CLS)       in ``last_hidden_state``
``dinov2_with_registers``  ``Dinov2WithRegistersModel`` 1 + registers in ``last_hidden_state``
=========================  ==========================  ============  ============================

The teacher's own image normalisation (``image_mean``, ``image_std``, ``rescale_factor``,
``resample``) and input side (``crop_size``, else ``size``, else the model's ``image_size``)
are read from ``preprocessor_config.json``, or are the family's defaults when the folder has
none (CLIP: OpenAI's mean/std; SigLIP: 0.5/0.5; DINOv2: ImageNet's; bicubic resampling).

:func:`read_teacher_spec` reads all of this (and a fingerprint of the folder) without loading
weights; :func:`load_teacher` loads the weights into a :class:`FrozenTeacher`. ``transformers``
is imported only here, when a teacher is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionmae.config_loading import ConfigError
from motionmae.data.config import IMAGENET_MEAN, IMAGENET_STD
from motionmae.errors import unpickling_error

__all__ = ["SUPPORTED_MODEL_TYPES", "FrozenTeacher", "TeacherSpec", "load_teacher",
           "read_teacher_spec", "teacher_fingerprint"]

logger = logging.getLogger(__name__)

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
# PIL resampling codes used in preprocessor_config.json -> torch interpolation modes
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class _Family:
    """How one ``model_type`` is loaded and where its patch tokens are."""

    model_class: str  # transformers class to load the folder with
    tower: bool  # an image-text model: take its ``vision_model``
    prefix: Callable[[Any], int]  # vision config -> tokens before the patch tokens
    norm_patches: bool  # apply the tower's ``post_layernorm`` to the patch tokens here
    interpolate_kwarg: bool  # forward takes ``interpolate_pos_encoding`` (DINOv2 always does)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _one(_config: Any) -> int:
    return 1


def _none(_config: Any) -> int:
    return 0


def _cls_and_registers(config: Any) -> int:
    return 1 + int(config.num_register_tokens)


_CLIP = dict(prefix=_one, norm_patches=True, interpolate_kwarg=True, mean=OPENAI_CLIP_MEAN,
             std=OPENAI_CLIP_STD)
_SIGLIP = dict(prefix=_none, norm_patches=False, interpolate_kwarg=True, mean=HALF, std=HALF)
_FAMILIES: dict[str, _Family] = {
    "clip_vision_model": _Family("CLIPVisionModel", tower=False, **_CLIP),
    "clip": _Family("CLIPModel", tower=True, **_CLIP),
    "siglip_vision_model": _Family("SiglipVisionModel", tower=False, **_SIGLIP),
    "siglip": _Family("SiglipModel", tower=True, **_SIGLIP),
    "dinov2": _Family("Dinov2Model", tower=False, prefix=_one, norm_patches=False,
                      interpolate_kwarg=False, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "dinov2_with_registers": _Family("Dinov2WithRegistersModel", tower=False,
                                     prefix=_cls_and_registers, norm_patches=False,
                                     interpolate_kwarg=False, mean=IMAGENET_MEAN,
                                     std=IMAGENET_STD),
}
SUPPORTED_MODEL_TYPES = tuple(_FAMILIES)

_WHAT_TO_PROVIDE = (
    "give a local folder written by save_pretrained of a CLIP, SigLIP or DINOv2 model "
    "(config.json + model.safetensors, and the image processor's preprocessor_config.json), "
    "e.g. on a machine with internet: CLIPVisionModel.from_pretrained("
    "'openai/clip-vit-base-patch16').save_pretrained(DIR) and CLIPImageProcessor."
    "from_pretrained('openai/clip-vit-base-patch16').save_pretrained(DIR)")


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher folder as motionmae uses it (read without loading the weights).

    Attributes:
        path: the folder.
        model_type: ``config.json``'s ``model_type`` (a key of the table in the module doc).
        hidden_size: feature values per patch token ``D``.
        patch_size: pixels per patch side.
        image_size: the side the position embeddings were trained for, pixels.
        input_size: the side the image processor feeds the model, pixels.
        prefix_tokens: tokens before the patch tokens (CLS, registers).
        mean, std: the teacher's per-channel normalisation of ``[0, 1]`` pixels.
        scale: the processor's ``rescale_factor * 255`` (pixel values in ``[0, scale]`` before
            ``mean``/``std``; 1 for the usual ``1/255``).
        resample: torch interpolation mode of the processor's resize.
        fingerprint: :func:`teacher_fingerprint` of the folder.
    """

    path: Path
    model_type: str
    hidden_size: int
    patch_size: int
    image_size: int
    input_size: int
    prefix_tokens: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float
    resample: str
    fingerprint: str

    @property
    def family(self) -> _Family:
        return _FAMILIES[self.model_type]


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as error:
        raise ImportError("the teacher target needs Hugging Face transformers: "
                          "pip install 'transformers>=4.40'") from error
    return transformers


def _weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and (
        p.name in WEIGHT_FILES or (p.name.startswith(("model-", "pytorch_model-"))
                                   and p.suffix in (".safetensors", ".bin"))))


def teacher_fingerprint(path: str | Path) -> str:
    """sha256 hex identifying a teacher folder's model: the bytes of ``config.json`` and
    ``preprocessor_config.json`` (when present) and the name, size and ``mtime_ns`` of every
    weight file (hashing gigabytes of weights per run would take minutes; a re-saved model has
    a new mtime)."""
    path = Path(path)
    digest = hashlib.sha256()
    for name in ("config.json", "preprocessor_config.json"):
        file = path / name
        digest.update(f"{name}|".encode())
        if file.is_file():
            digest.update(file.read_bytes())
    for file in _weight_files(path):
        stat = file.stat()
        digest.update(f"{file.name}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    return digest.hexdigest()


def _check_folder(path: Path, key: str) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict, or a :class:`ConfigError` saying what to give."""
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist; {_WHAT_TO_PROVIDE}")
    if not path.is_dir():
        raise ConfigError(f"{key}: {path} is a file, not a model folder; {_WHAT_TO_PROVIDE}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{key}: {path} has no config.json, so it is not a Hugging Face "
                          f"model folder; {_WHAT_TO_PROVIDE}")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{key}: cannot read {config_file}: {error}") from error
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if model_type not in _FAMILIES:
        raise ConfigError(f"{key}: {config_file} has model_type {model_type!r}, which is not a "
                          f"supported teacher (supported: {', '.join(SUPPORTED_MODEL_TYPES)}); "
                          f"{_WHAT_TO_PROVIDE}")
    if not _weight_files(path):
        raise ConfigError(f"{key}: {path} has a config.json but no weights (one of "
                          f"{', '.join(WEIGHT_FILES)}); {_WHAT_TO_PROVIDE}")
    return raw


def _side(value: Any) -> int | None:
    """A processor ``size``/``crop_size`` entry as one side, pixels (``None`` if absent)."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for name in ("height", "shortest_edge"):
            if isinstance(value.get(name), int):
                return value[name]
    return None


def _read_processor(path: Path, family: _Family, key: str) -> dict[str, Any]:
    """Normalisation, input side and resampling from ``preprocessor_config.json``, with the
    family's defaults for whatever it does not say."""
    file = path / "preprocessor_config.json"
    raw: dict[str, Any] = {}
    if file.is_file():
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"{key}: cannot read {file}: {error}") from error
    else:
        logger.info("teacher %s has no preprocessor_config.json: using the %s defaults "
                    "(mean %s, std %s)", path, family.model_class, family.mean, family.std)
    mean, std = tuple(raw.get("image_mean", family.mean)), tuple(raw.get("image_std", family.std))
    if not raw.get("do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
        raise ConfigError(f"{key}: {file}: image_mean/image_std must hold 3 values (std > 0), "
                          f"got {mean}, {std}")
    scale = float(raw.get("rescale_factor", 1 / 255)) * 255 if raw.get("do_rescale", True) \
        else 255.0
    crop = _side(raw.get("crop_size")) if raw.get("do_center_crop", True) else None
    return {"mean": tuple(float(m) for m in mean), "std": tuple(float(s) for s in std),
            "scale": scale, "input_size": crop or _side(raw.get("size")),
            "resample": _RESAMPLE.get(raw.get("resample", 3), "bicubic")}


def read_teacher_spec(path: str | Path, key: str = "targets.teacher.path") -> TeacherSpec:
    """Describe the teacher in ``path`` (checks the folder; loads no weights).

    Raises:
        ConfigError: naming ``key``, when the folder is missing, has no ``config.json`` or no
            weights, or holds an unsupported ``model_type``; the message says what to give.
    """
    path = Path(path).expanduser()
    raw = _check_folder(path, key)
    model_type = raw["model_type"]
    family = _FAMILIES[model_type]
    transformers = _import_transformers()
    config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    vision = config.vision_config if family.tower else config
    processor = _read_processor(path, family, key)
    return TeacherSpec(
        path=path, model_type=model_type, hidden_size=int(vision.hidden_size),
        patch_size=int(vision.patch_size), image_size=int(vision.image_size),
        input_size=int(processor["input_size"] or vision.image_size),
        prefix_tokens=family.prefix(vision), mean=processor["mean"], std=processor["std"],
        scale=processor["scale"], resample=processor["resample"],
        fingerprint=teacher_fingerprint(path))


class FrozenTeacher(nn.Module):
    """A Hugging Face vision tower, frozen: teacher-normalised images -> patch token features.

    Always in eval mode (``train()`` is a no-op) with ``requires_grad`` off on every parameter.

    Args:
        tower: the vision model (``CLIPVisionModel``, ``SiglipVisionModel``, ``Dinov2Model``,
            ... or an image-text model's ``vision_model``).
        spec: the folder's :class:`TeacherSpec`.
    """

    def __init__(self, tower: nn.Module, spec: TeacherSpec) -> None:
        super().__init__()
        self.spec = spec
        self.tower = tower
        # transformers 4.x nests the layers one level down (CLIPVisionTransformer)
        inner = getattr(tower, "vision_model", tower)
        self.final_norm = inner.post_layernorm if spec.family.norm_patches else None
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Stay in eval mode (dropout off) whatever the caller asks."""
        return super().train(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels [N, 3, H, W]`` (teacher-normalised; ``H, W`` multiples of the patch size)
        -> patch features ``[N, H / patch, W / patch, D]`` after the final layer norm."""
        spec = self.spec
        height, width = pixels.shape[-2:]
        if height % spec.patch_size or width % spec.patch_size:
            raise ValueError(f"teacher input {height}x{width} is not a multiple of its patch "
                             f"size {spec.patch_size}")
        kwargs = {}
        if spec.family.interpolate_kwarg and (height, width) != (spec.image_size,) * 2:
            kwargs["interpolate_pos_encoding"] = True
        hidden = self.tower(pixel_values=pixels, **kwargs).last_hidden_state
        rows, cols = height // spec.patch_size, width // spec.patch_size
        if hidden.shape[1] != spec.prefix_tokens + rows * cols:
            raise RuntimeError(f"teacher {spec.model_type} returned {hidden.shape[1]} tokens "
                               f"for {rows}x{cols} patches + {spec.prefix_tokens} prefix tokens")
        patches = hidden[:, spec.prefix_tokens:]
        if self.final_norm is not None:
            patches = self.final_norm(patches)
        return patches.unflatten(1, (rows, cols))


def load_teacher(spec: TeacherSpec) -> FrozenTeacher:
    """Load the weights of ``spec``'s folder (local files only) into a :class:`FrozenTeacher`
    (float32 parameters; the target chooses the compute precision)."""
    transformers = _import_transformers()
    model_class = getattr(transformers, spec.family.model_class)
    try:
        model = model_class.from_pretrained(str(spec.path), local_files_only=True)
    except pickle.UnpicklingError as error:  # a pytorch_model.bin read with weights_only=True
        weights = spec.path / "pytorch_model.bin"
        raise unpickling_error(weights if weights.is_file() else spec.path, error) from error
    tower = model.vision_model if spec.family.tower else model
    logger.info("teacher: %s from %s (%d px input, %d px patches, %d features)",
                type(tower).__name__, spec.path, spec.input_size, spec.patch_size,
                spec.hidden_size)
    return FrozenTeacher(tower.float(), spec)

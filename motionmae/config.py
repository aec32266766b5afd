"""The run configurations users write and checkpoints save: ``pretrain`` and ``finetune``
configs composed of their sections, loaded from YAML plus ``key=value`` overrides.

Each section's dataclass lives beside what it configures (``data/config.py``,
``models/config.py``; a target's, masking kind's or tracker's in its own module, found by
name through its registry); this module composes them and checks the rules that span
sections, a component's own such rules by asking its spec (``check``, ``trainable``), never
its name. Loading checks every key and type and names the dotted key of an error
(:mod:`motionmae.config_loading`). Every section class is importable from here; a
component's config class (``TracksTargetConfig``, ``LearnedMaskingConfig``, a plugin's) is
found here by its class name in the registries (:func:`__getattr__`), its home being the
component's module.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from motionmae.cache.config import CacheConfig
from motionmae.config_loading import (
    ComponentSections,
    ConfigError,
    apply_overrides,
    check,
    from_dict,
    load_config,
    read_config_file,
    to_dict,
)
from motionmae.data.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    ErasingConfig,
    PrepareConfig,
    RandAugmentConfig,
)
from motionmae.environment import resolve_device
from motionmae.masking import MASKINGS, MaskingConfig, default_mask_ratio
from motionmae.models.config import (
    MODEL_SIZES,
    SAVED_MODEL_DEFAULTS,
    ModelConfig,
    decoder_count,
    default_decoder_depth,
    saved_model_dict,
)
from motionmae.motion import TRACKERS
from motionmae.motion.config import TrackingConfig
from motionmae.targets import TARGETS, TargetsConfig
from motionmae.tokens import TokenGrid
from motionmae.training_config import OptimConfig, RunConfig

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_SIZES",
    "SAVED_MODEL_DEFAULTS",
    "CacheConfig",
    "ComponentSections",
    "ConfigError",
    "DataConfig",
    "ErasingConfig",
    "FinetuneConfig",
    "FinetuneSettings",
    "MaskingConfig",
    "ModelConfig",
    "OptimConfig",
    "PrepareConfig",
    "PretrainConfig",
    "RandAugmentConfig",
    "RunConfig",
    "TargetsConfig",
    "TrackingConfig",
    "apply_overrides",
    "from_dict",
    "load_config",
    "resolve_run",
    "resume_config",
    "saved_model_dict",
    "to_dict",
]


def __getattr__(name: str) -> type:
    """A registered component's config class by its class name (``from motionmae.config
    import TracksTargetConfig``): generated from the registries, so it names every target,
    masking kind and tracker, plugins included, and never goes stale."""
    for registry in (TARGETS, MASKINGS, TRACKERS):
        for spec in registry:
            if spec.config.__name__ == name:
                return spec.config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs; saved beside every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # The cache had no section of its own before: configs saved then still load.
    LEGACY_KEYS: ClassVar[dict[str, str]] = {"tracking.cache": "cache.path",
                                             "tracking.cache_clips": "cache.clips"}

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        self.run.videos_per_batch(self.data.num_sample)
        model = self.model.resolved()
        check(self.data.frames % model.tubelet_size == 0, "data.frames",
               f"{self.data.frames} frames is not a multiple of model.tubelet_size "
               f"{model.tubelet_size}")
        check(self.data.size % model.patch_size == 0, "data.size",
               f"{self.data.size} px is not a multiple of model.patch_size {model.patch_size}")
        for name in model.joint_targets:
            check(name in self.targets.names, "model.joint_targets",
                   f"{name!r} is not one of targets.names {self.targets.names}")
        self.check_components()
        # A cache's tracks start at the first frame of a clip played forward.
        check(not (self.data.reverse > 0 and self.needs_tracks and self.cache.path is not None),
              "data.reverse", "the track cache (cache.path) holds the tracks of clips played "
              "forward; clips played backward need their own: set cache.path=null to track "
              "them in the loader workers, or data.reverse=0")
        # A trained sampler runs outside the model's forward, where FSDP keeps parameters
        # sharded.
        check(not (MASKINGS.get(self.masking.kind).trainable and self.run.parallel == "fsdp"),
               "masking.kind", f"{self.masking.kind} masking does not run under "
               "run.parallel=fsdp (its sampler is trained outside the model's forward); use ddp")

    def check_components(self) -> None:
        """Each selected component's own rules across sections (its spec's ``check``): the
        targets', the masking kind's, and the tracker's when a component needs tracks."""
        sections = [self.targets, self.masking, *([self.tracking] if self.needs_tracks else [])]
        for selection in sections:
            for name in selection.selected():
                spec = selection.REGISTRY.get(name)
                if spec.check is not None:
                    spec.check(getattr(selection, name), self)

    def resolve(self, num_videos: int, world_size: int = 1) -> PretrainConfig:
        """A copy with every derived value filled, as the run uses and saves it: the masking
        ratio for the clips' token count (:func:`default_mask_ratio`), the blocks per decoder
        for the model's decoder count (:func:`default_decoder_depth`), the run's length
        and peak lr (:func:`resolve_run`), and where tracking runs
        (:meth:`TrackingConfig.resolved_where` on ``run.device``: ``workers`` or ``step``).
        Idempotent: a resolved config resolves to itself.

        Raises:
            UsageError: ``num_videos`` cannot fill one step.
        """
        cfg = resolve_run(self, num_videos, world_size)
        if cfg.masking.ratio is None:
            cfg.masking.ratio = default_mask_ratio(cfg.token_grid().num_tokens)
        if cfg.model.decoder_depth is None:
            cfg.model.decoder_depth = default_decoder_depth(
                decoder_count(cfg.targets.names, cfg.model.joint_targets))
        cfg.tracking.where = cfg.tracking.resolved_where(
            resolve_device(cfg.run.device).type,
            cached=cfg.needs_tracks and cfg.cache.path is not None,
            workers_only=cfg.targets.tracks_in_workers)
        return cfg

    def token_grid(self) -> TokenGrid:
        """The token grid of the clips this config trains on."""
        model = self.model.resolved()
        return TokenGrid(frames=self.data.frames, height=self.data.size, width=self.data.size,
                         tubelet=model.tubelet_size, patch=model.patch_size)

    def fixed_on_resume(self) -> list[str]:
        """Keys a resumed run keeps (:func:`resume_config`): what its weights are - the model,
        the targets its decoders predict, the masking kind (and a trained sampler's
        settings) - and the clips' token grid."""
        keys = ["model", "targets", "masking.kind", "data.frames", "data.size"]
        if MASKINGS.get(self.masking.kind).trainable:
            keys.append(f"masking.{self.masking.kind}")
        return keys

    @property
    def needs_tracks(self) -> bool:
        """Whether samples must carry point tracks: a target or the masking kind (as
        configured; the learned sampler with ``use_tracks``) reads them."""
        return self.targets.needs_tracks or self.masking.needs_tracks

    @property
    def tracks_in_step(self) -> bool:
        """Whether the training step makes the tracks (``tracking.where`` resolved to
        ``step``) rather than the loader workers."""
        return self.needs_tracks and self.tracking.where == "step"


@dataclass
class FinetuneSettings:
    """Supervised fine-tuning of a classifier on the encoder (VideoMAE's recipe by default).

    ``checkpoint``: the encoder to start from (anything ``load_encoder`` accepts); ``null``
    trains from scratch with the architecture in the ``model`` section. ``num_classes``
    defaults to the training list's. Mixup and cutmix are Beta(``mixup``/``cutmix``)
    parameters (0 disables each); with both on, a batch takes cutmix with probability
    ``switch_prob``; ``mix_prob`` is the chance a batch is mixed at all.
    """

    checkpoint: str | None = None
    num_classes: int | None = None
    layer_decay: float = 0.75
    drop_path: float = 0.1
    head_init_scale: float = 1e-3
    head_dropout: float = 0.0
    mixup: float = 0.8
    cutmix: float = 1.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    smoothing: float = 0.1
    randaugment: RandAugmentConfig = field(default_factory=RandAugmentConfig)
    erasing: ErasingConfig = field(default_factory=ErasingConfig)

    def validate(self, key: str = "finetune") -> None:
        check(self.num_classes is None or self.num_classes >= 1, f"{key}.num_classes",
               "must be >= 1 or null")
        check(0 < self.layer_decay <= 1, f"{key}.layer_decay",
               f"must be in (0, 1], got {self.layer_decay}")
        check(0 <= self.drop_path < 1, f"{key}.drop_path", "must be in [0, 1)")
        check(self.head_init_scale > 0, f"{key}.head_init_scale", "must be > 0")
        check(0 <= self.head_dropout < 1, f"{key}.head_dropout", "must be in [0, 1)")
        check(self.mixup >= 0, f"{key}.mixup", f"must be >= 0, got {self.mixup}")
        check(self.cutmix >= 0, f"{key}.cutmix", f"must be >= 0, got {self.cutmix}")
        check(0 <= self.mix_prob <= 1, f"{key}.mix_prob", "must be in [0, 1]")
        check(0 <= self.switch_prob <= 1, f"{key}.switch_prob", "must be in [0, 1]")
        check(0 <= self.smoothing < 1, f"{key}.smoothing", "must be in [0, 1)")
        self.randaugment.validate(f"{key}.randaugment")
        self.erasing.validate(f"{key}.erasing")


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs; saved beside every checkpoint.

    ``model`` is the architecture when ``finetune.checkpoint`` is null (from scratch); with a
    checkpoint the checkpoint's own architecture is used. Stochastic depth and layer-wise lr
    decay are set in ``finetune`` (``finetune.drop_path``, ``finetune.layer_decay``), not in
    ``model``/``optim``.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(base_lr=1e-3, betas=(0.9, 0.999)))
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/finetune"))

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        self.run.videos_per_batch(self.data.num_sample)
        check(self.model.drop_path == 0.0, "model.drop_path",
               "fine-tuning sets stochastic depth with finetune.drop_path")
        check(self.optim.layer_decay == 1.0, "optim.layer_decay",
               "fine-tuning sets layer-wise lr decay with finetune.layer_decay")
        # A class may be a direction ("pushing left to right"): a clip played backward would
        # be another class under the same label.
        check(self.data.reverse == 0, "data.reverse",
              "fine-tuning plays every clip forward (a clip played backward may be another "
              f"class under the same label); got {self.data.reverse}, set data.reverse=0")
        if self.finetune.checkpoint is None:
            model = self.model.resolved()
            check(self.data.frames % model.tubelet_size == 0, "data.frames",
                   f"{self.data.frames} frames is not a multiple of model.tubelet_size "
                   f"{model.tubelet_size}")
            check(self.data.size % model.patch_size == 0, "data.size",
                   f"{self.data.size} px is not a multiple of model.patch_size "
                   f"{model.patch_size}")

    def resolve(self, num_videos: int, world_size: int = 1) -> FinetuneConfig:
        """A copy with the run's length and peak lr filled (:func:`resolve_run`)."""
        return resolve_run(self, num_videos, world_size)

    def fixed_on_resume(self) -> list[str]:
        """Keys a resumed run keeps (:func:`resume_config`): the classifier's architecture,
        where it started and its classes, and the clips' token grid."""
        return ["model", "finetune.checkpoint", "finetune.num_classes", "data.frames",
                "data.size"]


RunConfigT = TypeVar("RunConfigT", PretrainConfig, FinetuneConfig)


def resolve_run(cfg: RunConfigT, num_videos: int, world_size: int) -> RunConfigT:
    """A copy of ``cfg`` with ``run.steps`` (:meth:`RunConfig.planned_steps` over
    ``num_videos`` videos of ``data.train``) and ``optim.lr`` (:meth:`OptimConfig.peak_lr` of
    the global batch of ``world_size`` processes) set.

    Raises:
        UsageError: ``num_videos`` cannot fill one step.
    """
    cfg = copy.deepcopy(cfg)
    batches = cfg.run.batches_per_epoch(num_videos, cfg.data.num_sample, world_size,
                                        cfg.data.train or "the training list")
    cfg.run.steps = cfg.run.planned_steps(batches, cfg.optim.accum_steps)
    cfg.optim.lr = cfg.optim.peak_lr(cfg.run.global_batch(cfg.optim.accum_steps, world_size))
    return cfg


def resume_config(cls: type[RunConfigT], saved: Path, path: str | Path | None = None,
                  overrides: list[str] | None = None) -> RunConfigT:
    """The config of a resumed run: its saved ``RUN/config.yaml`` <- file ``path`` <-
    ``overrides``, so that flags change only what they name (a longer ``run.steps``, say).

    Raises:
        ConfigError: naming the first key of :meth:`fixed_on_resume` the file or overrides
            change, with the run's value and the new one.
    """
    data = read_config_file(saved)
    if isinstance(data.get("model"), dict):  # saved before a model key existed
        data["model"] = saved_model_dict(data["model"])
    if isinstance(data.get("run"), dict):
        for key in RunConfig.ONE_COMMAND:
            data["run"].pop(key, None)
    before = load_config(cls, base=data)
    after = load_config(cls, path, overrides, base=data)
    old, new = to_dict(before), to_dict(after)
    for key in before.fixed_on_resume():
        changed = _first_difference(_get(old, key), _get(new, key), key)
        if changed is not None:
            leaf, was, now = changed
            raise ConfigError(
                f"{leaf}: the run in {saved.parent} was trained with {was}, this command says "
                f"{now}; --resume cannot change what the run's weights depend on: drop the "
                "change, or start a new run (another --out, or --overwrite)")
    return after


def _get(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _first_difference(before: Any, after: Any, key: str) -> tuple[str, Any, Any] | None:
    """``(dotted key, before, after)`` of the first leaf where two config trees differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        for name in dict.fromkeys([*before, *after]):
            found = _first_difference(before.get(name), after.get(name), f"{key}.{name}")
            if found is not None:
                return found
        return None
    return None if before == after else (key, before, after)

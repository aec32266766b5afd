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
from motionmae.masking import MASKINGS, MaskingConfig, default_mask_ratio
from motionmae.models.config import (
    MODEL_SIZES,
    SAVED_MODEL_DEFAULTS,
    ModelConfig,
    saved_model_dict,
)
from motionmae.motion import TRACKERS
from motionmae.motion.config import TrackingConfig
from motionmae.targets import TARGETS, TargetsConfig
from motionmae.tokens import TokenGrid

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
    "resume_config",
    "saved_model_dict",
    "to_dict",
]


LR_SCALINGS = ("linear", "sqrt")


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
class OptimConfig:
    """AdamW with warmup + cosine, peaking at :meth:`peak_lr` (``lr`` when set).

    The peak rate follows the global batch ``B`` (processes x ``run.batch_size`` x
    ``accum_steps``) against ``reference_batch`` ``R``: at and above it always linearly,
    ``base_lr * B / R`` (the VideoMAE papers' rule); below it by ``lr_scaling``:
    ``linear`` keeps ``base_lr * B / R`` (the papers' rule at every batch, which leaves a
    batch-8 run at 4.7e-6 and barely learning), ``sqrt`` gives ``base_lr * sqrt(B / R)``, and
    either is raised to ``min_peak_lr`` (null: no floor) - below the reference batch only, so
    a recipe at or above it keeps its paper's rate whatever the floor. The defaults give 3e-4
    from batch 1 to 255 (a floor above ``base_lr`` makes the rate drop to 1.5e-4 at 256) and
    the papers' rule from 256 up; fine-tuning's ``base_lr`` 1e-3 gives ``sqrt`` scaling
    down to batch 24. A recipe below the reference batch that wants its paper's rule says
    ``lr_scaling: linear`` and ``min_peak_lr: null``.
    """

    base_lr: float = 1.5e-4
    lr: float | None = None
    lr_scaling: str = "sqrt"
    reference_batch: int = 256
    # Interim, from short batch-8 runs (docs/benchmarks.md, "Figures behind defaults"): a
    # sweep on real clips should set it.
    min_peak_lr: float | None = 3e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_fraction: float = 0.05
    clip_grad: float | None = None
    accum_steps: int = 1
    layer_decay: float = 1.0
    fused: bool = True

    def validate(self, key: str = "optim") -> None:
        check(self.base_lr > 0, f"{key}.base_lr", f"must be > 0, got {self.base_lr}")
        check(self.lr is None or self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        check(self.lr_scaling in LR_SCALINGS, f"{key}.lr_scaling",
               f"must be one of {list(LR_SCALINGS)}, got {self.lr_scaling!r}")
        check(self.reference_batch >= 1, f"{key}.reference_batch",
               f"must be >= 1, got {self.reference_batch}")
        check(self.min_peak_lr is None or self.min_peak_lr > 0, f"{key}.min_peak_lr",
               f"must be > 0 or null, got {self.min_peak_lr}")
        check(self.min_lr >= 0, f"{key}.min_lr", "must be >= 0")
        check(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0")
        check(all(0 <= b < 1 for b in self.betas), f"{key}.betas", "must be in [0, 1)")
        check(0 <= self.warmup_fraction < 1, f"{key}.warmup_fraction", "must be in [0, 1)")
        check(self.clip_grad is None or self.clip_grad > 0, f"{key}.clip_grad",
               "must be > 0 or null")
        check(self.accum_steps >= 1, f"{key}.accum_steps", "must be >= 1")
        check(0 < self.layer_decay <= 1, f"{key}.layer_decay", "must be in (0, 1]")

    def peak_lr(self, global_batch: int) -> float:
        """The schedule's peak learning rate for ``global_batch`` clips per optimizer step."""
        if self.lr is not None:
            return self.lr
        ratio = global_batch / self.reference_batch
        if ratio >= 1 or self.lr_scaling == "linear":
            scaled = self.base_lr * ratio
        else:
            scaled = self.base_lr * ratio**0.5
        if ratio < 1 and self.min_peak_lr is not None:
            scaled = max(scaled, self.min_peak_lr)
        return scaled

    def lr_rule(self, global_batch: int) -> str:
        """How :meth:`peak_lr` came about, for the start-up log: ``peak lr 3.00e-04 (base_lr
        1.50e-04, sqrt scaling below batch 256, floor 3.00e-04, global batch 8)``."""
        peak = f"peak lr {self.peak_lr(global_batch):.2e}"
        if self.lr is not None:
            return f"{peak} (optim.lr, global batch {global_batch})"
        below = global_batch < self.reference_batch
        rule = (f"{self.lr_scaling} scaling below batch {self.reference_batch}" if below
                else f"linear scaling at and above batch {self.reference_batch}")
        floor = (f", floor {self.min_peak_lr:.2e}"
                 if below and self.min_peak_lr is not None else "")
        return f"{peak} (base_lr {self.base_lr:.2e}, {rule}{floor}, global batch {global_batch})"


@dataclass
class RunConfig:
    """Length of the run, batch, precision, logging and checkpoint cadence."""

    out: str = "runs/pretrain"
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 8
    seed: int = 0
    precision: str = "fp32"
    device: str = "auto"
    compile: bool = False
    log_every: int = 10
    ckpt_every: int = 500
    # Checkpoints kept besides every ``keep_every``-th: the newest ``keep_last`` (with two, a
    # damaged newest checkpoint leaves the one before for --resume).
    keep_last: int = 2
    keep_every: int | None = None
    max_bad_steps: int = 10
    # Under torchrun: "ddp" replicates the model, "fsdp" shards parameters, gradients and
    # optimizer state over the ranks (FSDP2 fully_shard); one process ignores it.
    parallel: str = "ddp"
    # Also write the logged records as TensorBoard scalars to RUN/tensorboard (rank 0; needs
    # the tensorboard package: pip install 'motionmae[tensorboard]').
    tensorboard: bool = False
    # Also log them to Weights & Biases (rank 0; pip install 'motionmae[wandb]'). The API key
    # comes from WANDB_API_KEY or `wandb login`, never from the config. ``wandb_mode`` null:
    # W&B's default (WANDB_MODE, else online).
    wandb: bool = False
    wandb_project: str = "motionmae"
    wandb_entity: str | None = None
    wandb_mode: str | None = None
    # In-run linear probe (pretraining, rank 0): every ``probe_every`` steps (a multiple of
    # ``log_every``) and at the last step, frozen features of the labelled lists
    # ``probe_train`` and ``probe_val`` with the current encoder; top-1 logged as
    # ``probe/linear``. Keep the lists small: training waits for the probe.
    probe_every: int | None = None
    probe_train: str | None = None
    probe_val: str | None = None

    def validate(self, key: str = "run") -> None:
        check(self.steps is None or self.steps >= 1, f"{key}.steps", "must be >= 1")
        check(self.epochs is None or self.epochs >= 1, f"{key}.epochs", "must be >= 1")
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        check(self.precision in ("fp32", "bf16"), f"{key}.precision",
               f"must be 'fp32' or 'bf16', got {self.precision!r}")
        check(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
               f"{key}.device", f"must be auto, cpu, cuda[:i] or mps, got {self.device!r}")
        check(self.log_every >= 1, f"{key}.log_every", "must be >= 1")
        check(self.ckpt_every >= 1, f"{key}.ckpt_every", "must be >= 1")
        check(self.keep_last >= 1, f"{key}.keep_last", "must be >= 1")
        check(self.keep_every is None or self.keep_every >= 1, f"{key}.keep_every",
               "must be >= 1 or null")
        check(self.max_bad_steps >= 1, f"{key}.max_bad_steps", "must be >= 1")
        check(self.parallel in ("ddp", "fsdp"), f"{key}.parallel",
               f"must be 'ddp' or 'fsdp', got {self.parallel!r}")
        check(self.wandb_mode in (None, "online", "offline"), f"{key}.wandb_mode",
               f"must be online, offline or null, got {self.wandb_mode!r}")
        check(bool(self.wandb_project), f"{key}.wandb_project", "must not be empty")
        if self.probe_every is not None:
            check(self.probe_every >= 1, f"{key}.probe_every", "must be >= 1 or null")
            check(self.probe_every % self.log_every == 0, f"{key}.probe_every",
                   f"must be a multiple of {key}.log_every {self.log_every} (a probe's result "
                   f"goes into the logged record of its step), got {self.probe_every}")
            for name in ("probe_train", "probe_val"):
                check(getattr(self, name) is not None, f"{key}.{name}",
                       f"a labelled list file is required with {key}.probe_every")

    def videos_per_batch(self, clips_per_video: int) -> int:
        """Videos in one process's batch of ``batch_size`` clips when each video gives
        ``clips_per_video`` (``data.num_sample``): a batch holds whole videos."""
        check(self.batch_size % clips_per_video == 0, "run.batch_size",
               f"{self.batch_size} clips is not a multiple of data.num_sample "
               f"{clips_per_video} (a batch holds whole videos, data.num_sample clips each)")
        return self.batch_size // clips_per_video


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
        if self.masking.ratio is None:  # picked once here, so the run saves the number
            self.masking.ratio = default_mask_ratio(self.token_grid().num_tokens)
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
        if self.finetune.checkpoint is None:
            model = self.model.resolved()
            check(self.data.frames % model.tubelet_size == 0, "data.frames",
                   f"{self.data.frames} frames is not a multiple of model.tubelet_size "
                   f"{model.tubelet_size}")
            check(self.data.size % model.patch_size == 0, "data.size",
                   f"{self.data.size} px is not a multiple of model.patch_size "
                   f"{model.patch_size}")

    def fixed_on_resume(self) -> list[str]:
        """Keys a resumed run keeps (:func:`resume_config`): the classifier's architecture,
        where it started and its classes, and the clips' token grid."""
        return ["model", "finetune.checkpoint", "finetune.num_classes", "data.frames",
                "data.size"]


RunConfigT = TypeVar("RunConfigT", PretrainConfig, FinetuneConfig)


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

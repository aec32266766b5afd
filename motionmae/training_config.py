"""The ``optim`` and ``run`` sections both training configs share: AdamW and its peak-lr rule,
the run's length, batch, precision, logging and checkpoint cadence (composed by
:mod:`motionmae.config`, which resolves the derived values once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from motionmae.config_loading import check
from motionmae.errors import UsageError

LR_SCALINGS = ("linear", "sqrt")


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
    """Length of the run, batch, precision, logging and checkpoint cadence.

    The run's length: ``steps`` optimizer steps, else ``epochs`` passes over the data, else
    :attr:`DEFAULT_STEPS`; the resolved config a run saves has the number of steps
    (:meth:`PretrainConfig.resolve`).
    """

    DEFAULT_STEPS: ClassVar[int] = 1000
    # Settings that hold for the command that gives them: a --resume reads them from its own
    # flags only, never from the run's config.yaml.
    ONE_COMMAND: ClassVar[tuple[str, ...]] = ("resume_with_other_videos",)

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
    # --resume on a training list other than the run's (other videos, or another order) is
    # refused; true continues on the new list, from the start of a new epoch (ONE_COMMAND).
    resume_with_other_videos: bool = False
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
            # Rank 0 alone cannot run a sharded encoder.
            check(self.parallel != "fsdp", f"{key}.probe_every",
                  f"in-run probes do not run under {key}.parallel=fsdp; use ddp, or probe the "
                  "checkpoints with motionmae probe")

    def videos_per_batch(self, clips_per_video: int) -> int:
        """Videos in one process's batch of ``batch_size`` clips when each video gives
        ``clips_per_video`` (``data.num_sample``): a batch holds whole videos."""
        check(self.batch_size % clips_per_video == 0, "run.batch_size",
               f"{self.batch_size} clips is not a multiple of data.num_sample "
               f"{clips_per_video} (a batch holds whole videos, data.num_sample clips each)")
        return self.batch_size // clips_per_video

    def global_batch(self, accum_steps: int, world_size: int) -> int:
        """Clips per optimizer step over all processes (what the peak lr follows)."""
        return self.batch_size * accum_steps * world_size

    def batches_per_epoch(self, num_videos: int, clips_per_video: int, world_size: int,
                          source: str = "the dataset") -> int:
        """Full batches of one process in an epoch of ``num_videos`` videos.

        Raises:
            UsageError: the videos cannot fill one step (every process's batch), naming
                ``source`` (the list) and its size.
        """
        per_batch = self.videos_per_batch(clips_per_video)
        batches = (num_videos // world_size) // per_batch
        if batches < 1:
            processes = f" x {world_size} processes" if world_size > 1 else ""
            clips = f" ({self.batch_size} clips, {clips_per_video} per video)" if (
                clips_per_video > 1) else ""
            raise UsageError(f"{source} has {num_videos} video(s), too few for one step of "
                             f"{per_batch} video(s){clips}{processes}: lower --batch-size "
                             f"(run.batch_size {self.batch_size}) or add videos")
        return batches

    @property
    def by_epochs(self) -> bool:
        """Whether the run's length is counted in epochs (``epochs`` set, ``steps`` not)."""
        return self.steps is None and self.epochs is not None

    def planned_steps(self, batches_per_epoch: int, accum_steps: int) -> int:
        """The run's length in optimizer steps: ``steps``, else ``epochs`` passes of
        ``batches_per_epoch`` loader batches (``accum_steps`` per step), else
        :attr:`DEFAULT_STEPS`."""
        if self.epochs is not None and self.steps is None:
            return max(1, self.epochs * batches_per_epoch // accum_steps)
        return self.steps if self.steps is not None else self.DEFAULT_STEPS

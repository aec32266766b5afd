"""Proof that a component is one file outside the package: a target, a masking kind and a
tracker defined here, registered with the public decorators, then used by the ``motionmae``
command through ``--targets``, ``--masking`` and ``--set tracking.tracker=``, touching no
file of the package (docs/architecture.md, "Add a component").

The facts a component declares on its spec get it the built-ins' treatment: a target that
needs tracks makes the loader track and the model card name the tracker; a masking kind that
trains gets its parameter group, is saved with the model and refused under FSDP; each
component's own run check is asked by the run config's validation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from motionmae.checkpoints.format import latest_checkpoint
from motionmae.cli import main
from motionmae.config import PretrainConfig, load_config
from motionmae.config_loading import ConfigError, check
from motionmae.data import make_synthetic_dataset
from motionmae.masking import MASKINGS, TrainableSampler, register_masking
from motionmae.motion import TRACKERS, register_tracker
from motionmae.targets import TARGETS, TargetContext, TargetsConfig, register_target
from motionmae.tokens import TokenGrid, patchify
from motionmae.train.pretrain import PretrainTask

# -- a target: each tubelet's mean absolute frame difference per patch pixel ----------------


@dataclass
class FrameDiffConfig:
    weight: float = 0.5
    scale: float = 1.0

    def validate(self, key: str) -> None:
        check(self.scale > 0, f"{key}.scale", f"must be > 0, got {self.scale}")


class FrameDiffTarget:
    name = "frame_diff"

    def __init__(self, cfg: FrameDiffConfig, grid: TokenGrid) -> None:
        self.grid, self.scale, self.weight = grid, cfg.scale, cfg.weight
        self.dim = grid.patch * grid.patch

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        """``clip [B, C, T, H, W]`` -> ``[B, L, p*p]``: |frame 1 - frame 0| of each tubelet,
        averaged over colour."""
        clip = batch["clip"]
        pairs = clip.unflatten(2, (self.grid.t, self.grid.tubelet))  # [B, C, t, u, H, W]
        diff = (pairs[:, :, :, -1] - pairs[:, :, :, 0]).abs().mean(1, keepdim=True)
        tokens = patchify(diff.repeat_interleave(self.grid.tubelet, dim=2), self.grid)
        return tokens[..., : self.dim] / self.scale, None


# -- a masking kind: the same random permutation for every clip, from its own seed ----------


@dataclass
class FixedPermutationConfig:
    seed: int = 0


class FixedPermutationMask:
    def __init__(self, cfg: FixedPermutationConfig, grid: TokenGrid, ratio: float) -> None:
        self.num_visible = grid.num_visible(ratio)
        order = torch.randperm(grid.num_tokens, generator=torch.Generator().manual_seed(cfg.seed))
        self.hidden = torch.ones(grid.num_tokens, dtype=torch.bool)
        self.hidden[order[: self.num_visible]] = False

    def __call__(self, batch, generator=None) -> torch.Tensor:
        clip = batch["clip"]
        return self.hidden.to(clip.device).expand(clip.shape[0], -1)


# -- a target that needs tracks: each tubelet's track displacement at each patch -------------


@dataclass
class TrackSpeedConfig:
    weight: float = 1.0
    max_frames: int = 64


def check_track_speed(cfg: TrackSpeedConfig, run) -> None:
    check(run.data.frames <= cfg.max_frames, "targets.track_speed.max_frames",
          f"data.frames {run.data.frames} is more than {cfg.max_frames}")


class TrackSpeedTarget:
    name, dim = "track_speed", 2

    def __init__(self, cfg: TrackSpeedConfig, grid: TokenGrid) -> None:
        self.grid, self.weight = grid, cfg.weight

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        """``tracks [B, T, h*w, 2]`` -> ``[B, L, 2]``: last minus first frame of each tubelet."""
        tubelets = batch["tracks"].unflatten(1, (self.grid.t, self.grid.tubelet))
        return (tubelets[:, :, -1] - tubelets[:, :, 0]).flatten(1, 2), None


# -- a masking kind that trains: one logit per token, hiding where the error is high --------


@dataclass
class LearnedOrderConfig:
    lr: float = 0.05
    loss_weight: float = 1.0


def check_learned_order(cfg: LearnedOrderConfig, run) -> None:
    check(run.optim.accum_steps == 1, "optim.accum_steps",
          "learned_order masking learns from one micro-batch per step")


@dataclass
class OrderDraw:
    mask: torch.Tensor


class OrderSampler(nn.Module):
    """A :class:`TrainableSampler`: visible tokens drawn by Gumbel top-k of ``-logits``."""

    def __init__(self, cfg: LearnedOrderConfig, grid: TokenGrid, ratio: float) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_visible = grid.num_visible(ratio)
        self.logits = nn.Parameter(torch.zeros(grid.num_tokens))

    def forward(self, batch, generator=None) -> OrderDraw:
        clip = batch["clip"]
        noise = torch.rand(clip.shape[0], len(self.logits), generator=generator)
        scores = -self.logits.detach().cpu() - torch.log(-torch.log(noise.clamp_min(1e-9)))
        mask = torch.ones(scores.shape, dtype=torch.bool)
        mask.scatter_(1, scores.topk(self.num_visible, dim=1).indices, False)
        return OrderDraw(mask.to(clip.device))

    def loss(self, draw, token_error, masked_idx):
        hide = torch.log_softmax(self.logits, 0)[masked_idx]  # [B, M]
        loss = -(hide * token_error).mean()
        return loss, {"sampler/order_loss": loss.detach()}


class LearnedOrderMask:
    def __init__(self, cfg: LearnedOrderConfig, grid: TokenGrid, ratio: float) -> None:
        self.sampler = OrderSampler(cfg, grid, ratio)
        self.num_visible = self.sampler.num_visible

    def __call__(self, batch, generator=None) -> torch.Tensor:
        with torch.no_grad():
            return self.sampler(batch, generator).mask


# -- a tracker: every point stays where it was queried -----------------------------------


@dataclass
class StillConfig:
    visible: bool = True


def check_still(cfg: StillConfig, run) -> None:
    check(run.tracking.frame_step == 1, "tracking.frame_step",
          "the still tracker tracks every frame")


class StillTracker:
    calls: ClassVar[list[int]] = []

    def __init__(self, config: StillConfig) -> None:
        self.config = config

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        StillTracker.calls.append(len(frames))
        tracks = np.broadcast_to(queries[None, :, 1:], (len(frames), len(queries), 2))
        return tracks.astype(np.float32).copy(), np.full(tracks.shape[:2], self.config.visible)


@pytest.fixture
def components():
    """Register the components for one test, then take them out again."""

    @register_target("frame_diff", FrameDiffConfig)
    def build_frame_diff(cfg: FrameDiffConfig, ctx: TargetContext) -> FrameDiffTarget:
        return FrameDiffTarget(cfg, ctx.grid)

    @register_target("track_speed", TrackSpeedConfig, needs_tracks=True,
                     check=check_track_speed)
    def build_track_speed(cfg: TrackSpeedConfig, ctx: TargetContext) -> TrackSpeedTarget:
        return TrackSpeedTarget(cfg, ctx.grid)

    register_masking("fixed_perm", FixedPermutationConfig)(FixedPermutationMask)
    register_masking("learned_order", LearnedOrderConfig, trainable=True,
                     check=check_learned_order)(LearnedOrderMask)
    register_tracker("still", StillConfig, check=check_still)(StillTracker)
    StillTracker.calls.clear()
    yield
    for name in ("frame_diff", "track_speed"):
        TARGETS.remove(name)
    for name in ("fixed_perm", "learned_order"):
        MASKINGS.remove(name)
    TRACKERS.remove("still")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("extension-videos")
    return make_synthetic_dataset(root, num_train=4, num_val=2, frames=4, size=32, seed=3)


def test_pretrain_with_a_target_a_masking_kind_and_a_tracker_defined_outside(
        components, videos, tmp_path):
    out = tmp_path / "run"
    assert main([
        "pretrain", "--data", str(videos.train_list), "--out", str(out), "--frames", "4",
        "--size", "32", "--steps", "2", "--batch-size", "2",
        "--targets", "frame_diff,tracks", "--masking", "fixed_perm",
        "--set", "tracking.tracker=still", "--set", "targets.frame_diff.scale=2.0",
        "--set", "masking.fixed_perm.seed=7", "--set", "masking.ratio=0.5",
        "--set", "model.depth=1", "--set", "model.decoder_depth=1",
        "--set", "data.workers=0", "--set", "run.log_every=1"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/frame_diff", "loss/tracks"} <= set(records[-1])
    assert all(np.isfinite(r["loss/frame_diff"]) for r in records)
    assert StillTracker.calls == [4] * 4  # two steps of two clips, tracked in the loader
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["targets"]["frame_diff"] == {"weight": 0.5, "scale": 2.0}
    assert saved["masking"]["fixed_perm"] == {"seed": 7}
    assert saved["tracking"]["still"] == {"visible": True}


def test_a_target_that_needs_tracks_and_a_masking_kind_that_trains_get_the_builtins_treatment(
        components, videos, tmp_path):
    out = tmp_path / "run"
    assert main([
        "pretrain", "--data", str(videos.train_list), "--out", str(out), "--frames", "4",
        "--size", "32", "--steps", "2", "--batch-size", "2",
        "--targets", "track_speed,pixel", "--masking", "learned_order",
        "--set", "tracking.tracker=still", "--set", "masking.ratio=0.5",
        "--set", "optim.warmup_fraction=0", "--set", "model.depth=1",
        "--set", "model.decoder_depth=1", "--set", "data.workers=0",
        "--set", "run.log_every=1"]) == 0
    assert StillTracker.calls == [4] * 4  # the loader tracked for the plugin target
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/track_speed", "loss/pixel", "sampler/order_loss"} <= set(records[-1])
    # The trained sampler is saved with the model, and it trained.
    weights = latest_checkpoint(out / "checkpoints").weights()
    assert weights["sampler.logits"].shape == (8,)
    assert weights["sampler.logits"].abs().max() > 0

    # The model card names the tracker: a selected target needs tracks (no name list says so).
    assert main(["export", "--checkpoint", str(out), "--format", "motionmae", "--out",
                 str(tmp_path / "export")]) == 0
    card = (tmp_path / "export" / "README.md").read_text()
    assert "- Point tracks: `still` tracker" in card
    assert "- Masking: `learned_order`, ratio 0.5; lr=0.05, loss_weight=1" in card


def test_a_trainable_masking_kind_gets_its_parameter_group_and_is_kept_on_resume(components):
    cfg = load_config(PretrainConfig, overrides=[
        "masking.kind=learned_order", "masking.learned_order.lr=0.02", "data.frames=4",
        "data.size=32", "model.depth=1", "model.decoder_depth=1", "run.batch_size=2"]
    ).resolve(num_videos=8)
    task = PretrainTask(cfg)
    assert isinstance(task.sampler, TrainableSampler) and task.model.sampler is task.sampler
    sampler_groups = [g for g in task.parameter_groups(0.05)
                      if any(p is task.sampler.logits for p in g["params"])]
    assert len(sampler_groups) == 1
    assert sampler_groups[0]["params"] == [task.sampler.logits]
    assert sampler_groups[0]["lr_scale"] == pytest.approx(0.02 / cfg.optim.peak_lr(2))
    assert "masking.learned_order" in cfg.fixed_on_resume()
    with pytest.raises(ConfigError, match=r"masking\.kind: learned_order masking does not run "
                       r"under run\.parallel=fsdp"):
        load_config(PretrainConfig, overrides=["masking.kind=learned_order",
                                               "run.parallel=fsdp"])


def test_each_selected_components_run_check_is_asked(components):
    with pytest.raises(ConfigError, match=r"targets\.track_speed\.max_frames: data\.frames 16 "
                       r"is more than 8"):
        load_config(PretrainConfig, overrides=["targets.names=[track_speed]",
                                               "targets.track_speed.max_frames=8"])
    with pytest.raises(ConfigError, match=r"optim\.accum_steps: learned_order masking learns"):
        load_config(PretrainConfig, overrides=["masking.kind=learned_order",
                                               "optim.accum_steps=2"])
    still = ["tracking.tracker=still", "tracking.frame_step=2"]
    with pytest.raises(ConfigError, match=r"tracking\.frame_step: the still tracker"):
        load_config(PretrainConfig, overrides=["targets.names=[track_speed]", *still])
    # Not selected, not asked: a run without tracks does not check its tracker.
    load_config(PretrainConfig, overrides=["targets.names=[pixel]", "masking.kind=tube",
                                           "targets.track_speed.max_frames=8",
                                           "optim.accum_steps=2", *still])


def test_a_default_weight_asks_the_other_targets_specs(components):
    """TrackMAE's 0.25 for tracks next to a feature target: any target whose spec says it
    predicts features, not the name "teacher"."""

    @register_target("clip_features", FrameDiffConfig, predicts_features=True)
    def build(cfg, ctx):
        return FrameDiffTarget(cfg, ctx.grid)

    try:
        assert TargetsConfig(names=["tracks", "clip_features"]).loss_weight("tracks") == 0.25
        assert TargetsConfig(names=["tracks", "frame_diff"]).loss_weight("tracks") == 1.0
    finally:
        TARGETS.remove("clip_features")


def test_component_config_classes_are_found_by_class_name_in_motionmae_config(components):
    import motionmae.config
    from motionmae.config import LearnedMaskingConfig, TracksTargetConfig
    from motionmae.masking.learned import LearnedMaskingConfig as learned_home
    from motionmae.targets.tracks import TracksTargetConfig as tracks_home

    assert TracksTargetConfig is tracks_home and LearnedMaskingConfig is learned_home
    assert motionmae.config.TrackSpeedConfig is TrackSpeedConfig  # a plugin's too
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchConfig'"):
        motionmae.config.NoSuchConfig  # noqa: B018


def test_a_components_settings_are_checked_by_key(components, videos, tmp_path, capsys):
    base = ["pretrain", "--data", str(videos.train_list), "--out", str(tmp_path / "x"),
            "--targets", "frame_diff"]
    for setting, said in (("scale=0", r"targets\.frame_diff\.scale: must be > 0"),
                          ("sclae=2", r"targets\.frame_diff\.sclae: unknown key")):
        assert main(["--debug", *base, "--set", f"targets.frame_diff.{setting}"]) == 2
        assert re.search(rf"{ConfigError.__name__}: {said}", capsys.readouterr().err)


def test_unregistered_names_are_refused_with_the_known_ones(videos, tmp_path, capsys):
    assert main(["pretrain", "--data", str(videos.train_list), "--out", str(tmp_path / "x"),
                 "--targets", "frame_diff"]) == 2
    assert "unknown target 'frame_diff'; known: ['arrow', 'hof', 'hog', 'm3traj', " \
           "'pixel', 'teacher', 'tracks']" in capsys.readouterr().err


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="target 'pixel' is already registered"):
        register_target("pixel", FrameDiffConfig)(lambda cfg, ctx: None)


def test_the_command_loads_plugins_named_by_the_environment(videos, tmp_path):
    plugin = tmp_path / "my_tracker.py"
    plugin.write_text(
        "import numpy as np\n"
        "from dataclasses import dataclass\n"
        "from motionmae.motion import register_tracker\n\n\n"
        "@dataclass\nclass DriftConfig:\n    speed: float = 1.5\n\n\n"
        "@register_tracker('drift', DriftConfig)\nclass DriftTracker:\n"
        "    def __init__(self, config):\n        self.speed = config.speed\n\n"
        "    def track(self, frames, queries):\n"
        "        steps = np.arange(len(frames), dtype=np.float32)[:, None, None]\n"
        "        tracks = queries[None, :, 1:] + steps * self.speed\n"
        "        return tracks.astype(np.float32), np.ones(tracks.shape[:2], bool)\n")
    video = str(videos.train_list.parent / videos.train_list.read_text().split()[0])
    out = tmp_path / "tracks.npz"
    env = {**os.environ, "MOTIONMAE_PLUGINS": str(plugin)}
    result = subprocess.run([sys.executable, "-m", "motionmae", "tracks", video, "--out",
                             str(out), "--grid", "2", "--tracker", "drift"],
                            env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    with np.load(out) as data:
        np.testing.assert_allclose(data["tracks"][-1] - data["tracks"][0], 1.5 * 3)
    missing = {**os.environ, "MOTIONMAE_PLUGINS": str(tmp_path / "nope.py")}
    result = subprocess.run([sys.executable, "-m", "motionmae", "tracks", video, "--out",
                             str(out), "--tracker", "drift"],
                            env=missing, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "MOTIONMAE_PLUGINS: cannot load" in result.stderr and "nope.py" in result.stderr

"""Proof that a component is one file outside the package: a target, a masking kind and a
tracker defined here, registered with the public decorators, then used by the ``motionmae``
command through ``--targets``, ``--masking`` and ``--set tracking.tracker=``, touching no
file of the package (docs/architecture.md, "Add a component")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml

from motionmae.cli import main
from motionmae.config_loading import ConfigError, check
from motionmae.data import make_synthetic_dataset
from motionmae.masking import MASKINGS, register_masking
from motionmae.motion import TRACKERS, register_tracker
from motionmae.targets import TARGETS, TargetContext, register_target
from motionmae.tokens import TokenGrid, patchify

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


# -- a tracker: every point stays where it was queried -----------------------------------


@dataclass
class StillConfig:
    visible: bool = True


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
    """Register the three components for one test, then take them out again."""

    @register_target("frame_diff", FrameDiffConfig)
    def build_frame_diff(cfg: FrameDiffConfig, ctx: TargetContext) -> FrameDiffTarget:
        return FrameDiffTarget(cfg, ctx.grid)

    register_masking("fixed_perm", FixedPermutationConfig)(FixedPermutationMask)
    register_tracker("still", StillConfig)(StillTracker)
    StillTracker.calls.clear()
    yield
    TARGETS.remove("frame_diff")
    MASKINGS.remove("fixed_perm")
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


def test_a_components_settings_are_checked_by_key(components, videos, tmp_path):
    base = ["pretrain", "--data", str(videos.train_list), "--out", str(tmp_path / "x"),
            "--targets", "frame_diff"]
    with pytest.raises(ConfigError, match=r"targets\.frame_diff\.scale: must be > 0"):
        main(["--debug", *base, "--set", "targets.frame_diff.scale=0"])
    with pytest.raises(ConfigError, match=r"targets\.frame_diff\.sclae: unknown key"):
        main(["--debug", *base, "--set", "targets.frame_diff.sclae=2"])


def test_unregistered_names_are_refused_with_the_known_ones(videos, tmp_path, capsys):
    assert main(["pretrain", "--data", str(videos.train_list), "--out", str(tmp_path / "x"),
                 "--targets", "frame_diff"]) == 2
    assert "unknown target 'frame_diff'; known: ['hog', 'm3traj', 'pixel', 'teacher', " \
           "'tracks']" in capsys.readouterr().err


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

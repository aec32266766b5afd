"""``tracking.where``: tracks from the loader workers or made in the training step; ``auto``
resolved once by the run (``step`` on a GPU with a tracker that has a batched form), saved,
kept on resume; refused for a tracker without a batched form; a track cache wins."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml

from motionmae.cli import main
from motionmae.config import ConfigError, PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.motion.hooks import TracksHook
from motionmae.train.pretrain import PretrainTask, build_sample_hooks

MOTION = ["targets.names=[pixel,tracks]", "masking.kind=motion", "data.size=32",
          "data.frames=4", "model.depth=1", "model.decoder_depth=1", "run.batch_size=2"]


def _resolved(*overrides: str) -> PretrainConfig:
    return load_config(PretrainConfig, overrides=[*MOTION, *overrides]).resolve(num_videos=4)


@pytest.fixture
def cuda_present(monkeypatch):
    """``run.device=auto`` picks a GPU (resolving only: nothing runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_tracks_in_the_workers_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a GPU machine too
    cfg = _resolved()
    assert load_config(PretrainConfig).tracking.where == "auto"  # the default
    assert cfg.tracking.where == "workers" and not cfg.tracks_in_step
    assert any(isinstance(h, TracksHook) for h in build_sample_hooks(cfg, cfg.token_grid()))
    assert PretrainTask(cfg).step_tracks is None


@pytest.mark.parametrize("tracker", ["lk", "torch_lk"])
def test_auto_tracks_in_the_step_on_a_gpu(cuda_present, tracker):
    cfg = _resolved(f"tracking.tracker={tracker}")
    assert cfg.tracking.where == "step" and cfg.tracks_in_step
    assert cfg.resolve(num_videos=4) == cfg  # resolved once: idempotent
    assert _resolved("run.device=cuda").tracking.where == "step"
    assert not any(isinstance(h, TracksHook)
                   for h in build_sample_hooks(cfg, cfg.token_grid()))  # the clips only


@pytest.mark.parametrize("setting", ["tracking.tracker=flow", "tracking.lk.reacquire=true",
                                     "run.device=cpu", "tracking.where=workers"])
def test_auto_stays_in_the_workers_without_a_batched_form_or_a_gpu(cuda_present, setting):
    assert _resolved(setting).tracking.where == "workers"


def test_step_with_a_tracker_without_a_batched_form_is_a_config_error():
    for setting, name in (("tracking.tracker=flow", "flow"), ("tracking.lk.reacquire=true",
                                                               "lk")):
        with pytest.raises(ConfigError, match=rf"^tracking\.where: step tracks in the training "
                                              rf"step .* tracking\.tracker={name} has none"):
            load_config(PretrainConfig, overrides=["tracking.where=step", setting])
    with pytest.raises(ConfigError, match=r"^tracking\.where: must be one of \['auto', "
                                          r"'workers', 'step'\], got 'gpu'"):
        load_config(PretrainConfig, overrides=["tracking.where=gpu"])


def test_a_track_cache_wins_over_step(tmp_path, caplog, cuda_present):
    with caplog.at_level(logging.WARNING, logger="motionmae.motion.config"):
        cfg = _resolved("tracking.where=step", f"cache.path={tmp_path / 'cache'}")
    assert cfg.tracking.where == "workers"
    assert "cache.path is set, so tracks are read from the track cache in the loader " \
           "workers" in caplog.text
    hooks = [h for h in build_sample_hooks(cfg, cfg.token_grid()) if isinstance(h, TracksHook)]
    assert len(hooks) == 1 and hooks[0].cache is not None
    caplog.clear()
    assert _resolved(f"cache.path={tmp_path / 'cache'}").tracking.where == "workers"
    assert not caplog.text  # auto says nothing: nothing was asked for


def test_a_run_with_where_step_trains_on_the_cpu_saves_it_and_resumes_with_it(tmp_path):
    """The run tracks in the step with lk's batched form; its losses are those of a run whose
    workers track the same frames with torch_lk (same algorithm and settings, per clip)."""
    videos = make_synthetic_dataset(tmp_path / "videos", num_train=4, num_val=0, frames=8,
                                    size=32, seed=0)
    common = ["--data", str(videos.train_list), "--frames", "4", "--size", "32",
              "--batch-size", "2", "--targets", "pixel,tracks", "--masking", "motion",
              "--set", "model.depth=1", "--set", "model.decoder_depth=1", "--set",
              "data.workers=0", "--set", "data.stride=2", "--set", "run.log_every=1",
              "--set", "run.ckpt_every=2", "--set", "run.device=cpu"]
    out, workers = tmp_path / "step", tmp_path / "workers"
    assert main(["pretrain", *common, "--out", str(out), "--steps", "3",
                 "--set", "tracking.where=step"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["tracking"]["where"] == "step"
    assert main(["pretrain", *common, "--out", str(workers), "--steps", "3", "--set",
                 "tracking.where=workers", "--set", "tracking.tracker=torch_lk"]) == 0
    step_records, worker_records = (
        [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (out, workers))
    assert [r["step"] for r in step_records] == [1, 2, 3]
    assert any(r["loss/tracks"] > 0 for r in step_records)  # some tokens had valid tracks
    for ours, theirs in zip(step_records, worker_records, strict=True):
        for key in ("loss/tracks", "trivial/tracks", "loss/pixel"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    # resumed without naming it, the run keeps tracking in the step
    assert main(["pretrain", *common, "--out", str(out), "--resume", "--steps", "4"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["tracking"]["where"] == "step"

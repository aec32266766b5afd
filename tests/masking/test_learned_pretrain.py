"""``motionmae pretrain --masking learned`` end to end: sampler metrics, checkpoints with the
sampler, exact resume, and a plain encoder for evaluation."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from motionmae.api import load_encoder
from motionmae.checkpoints.format import latest_checkpoint
from motionmae.cli import main
from motionmae.config import PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.train.pretrain import PretrainTask


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned-videos")
    return make_synthetic_dataset(root, num_train=8, num_val=2, frames=8, size=32, seed=4)


SETTINGS = ["model.depth=1", "model.decoder_depth=1", "data.workers=0", "data.flip=false",
            "data.stride=1", "run.log_every=1", "optim.lr=1e-3", "optim.warmup_fraction=0.0",
            "masking.ratio=0.75", "masking.decoder_ratio=0.5", "masking.learned.ppo_epochs=3",
            "masking.learned.use_tracks=true", "masking.learned.lr=2e-3"]


def _pretrain(videos, out, *extra):
    args = ["pretrain", "--data", str(videos.train_list), "--out", str(out), "--frames", "4",
            "--size", "32", "--steps", "4", "--batch-size", "4", "--masking", "learned",
            "--targets", "pixel"]
    for setting in [*SETTINGS, *extra]:
        args += [setting] if setting.startswith("--") else ["--set", setting]
    assert main(args) == 0


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_learned_masking_trains_resumes_exactly_and_leaves_a_plain_encoder(videos, tmp_path):
    full = tmp_path / "full"
    _pretrain(videos, full)
    records = _records(full)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    keys = {"sampler/reward", "sampler/entropy", "sampler/policy_loss", "sampler/value_loss",
            "sampler/clip_fraction", "loss/pixel"}
    assert keys <= set(records[-1])
    assert all(r["sampler/reward"] > 0 for r in records)

    split = tmp_path / "split"
    _pretrain(videos, split, "run.ckpt_every=2", "run.keep_every=2")
    ckpts = split / "checkpoints"
    shutil.rmtree(latest_checkpoint(ckpts).path)  # a crash after step 2
    (ckpts / "latest").write_text("step_00000002\n")
    resumed_from = latest_checkpoint(ckpts).weights()
    assert resumed_from["sampler._extra_state"].shape[0] == 2  # kept rollouts are saved
    lines = (split / "metrics.jsonl").read_text().splitlines()[:2]
    (split / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    _pretrain(videos, split, "run.ckpt_every=2", "run.keep_every=2", "--resume")
    a, b = _records(full), _records(split)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", *keys):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), (ra["step"], key)
    wa = latest_checkpoint(full / "checkpoints").weights()
    wb = latest_checkpoint(ckpts).weights()
    assert wa.keys() == wb.keys()
    assert {"sampler.policy.actor.weight", "sampler._extra_state"} <= set(wa)
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6, msg=key)

    encoder = load_encoder(full)
    assert not any("sampler" in key for key in encoder.state_dict())
    with torch.no_grad():
        tokens = encoder(torch.randn(2, 3, 4, 32, 32))
    assert tokens.shape == (2, 8, encoder.embed_dim)  # all L = 2 * 2 * 2 tokens visible

    video = next(videos.train_list.parent.rglob("*.mp4"))
    assert main(["visualize", "--checkpoint", str(full), str(video), "--out",
                 str(tmp_path / "viz")]) == 0
    assert (tmp_path / "viz" / "sampler.png").stat().st_size > 0


def test_sampler_has_its_own_parameter_group_and_learning_rate():
    cfg = load_config(PretrainConfig, overrides=[
        "data.frames=4", "data.size=32", "masking.kind=learned", "masking.learned.lr=3e-3",
        "optim.base_lr=1e-4", "run.batch_size=8"]).resolve(num_videos=16, world_size=2)
    task = PretrainTask(cfg, world_size=2)
    peak = cfg.optim.peak_lr(8 * 2)
    groups = task.parameter_groups(0.05)
    sampler_params = {id(p) for p in task.sampler.parameters()}
    sampler_groups = [g for g in groups if {id(p) for p in g["params"]} <= sampler_params]
    other_groups = [g for g in groups if not {id(p) for p in g["params"]} & sampler_params]
    assert len(sampler_groups) + len(other_groups) == len(groups)
    assert sum(len(g["params"]) for g in sampler_groups) == len(sampler_params)
    assert all(g["lr_scale"] * peak == pytest.approx(3e-3) for g in sampler_groups)
    assert all(g["lr_scale"] == 1.0 for g in other_groups)
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(task.model.parameters()))


def test_learned_masking_under_torchrun_two_ranks(videos, tmp_path):
    """Data parallel: the sampler runs outside the DDP forward; its gradients are reduced with
    the rest (every parameter gets one each step, so DDP's reducer is satisfied)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
               str(port), "-m", "motionmae", "pretrain", "--data", str(videos.train_list),
               "--out", str(out), "--frames", "4", "--size", "32", "--steps", "2",
               "--batch-size", "2", "--masking", "learned", "--set", "model.depth=1",
               "--set", "model.decoder_depth=1", "--set", "data.workers=0",
               "--set", "run.log_every=1", "--set", "masking.ratio=0.75"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    records = _records(out)
    assert [r["step"] for r in records] == [1, 2]
    assert "sampler/value_loss" in records[-1]

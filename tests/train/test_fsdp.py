"""Fully sharded data parallel (``run.parallel: fsdp``, FSDP2 ``fully_shard``) on 2 CPU ranks
with gloo, launched by ``torchrun``.

One launch trains twice with the same seed, data and world size (the loss curves must be
identical), with gradient accumulation (1 clip x 2 micro-batches per rank). Masks are seeded
per sample (see ``test_distributed.py``), so the sharded run must match a 1-process run of the
same global batch to float tolerance. Its checkpoints hold full tensors: a 1-process run
resumes from the 2-rank checkpoint of step 3 and reproduces step 4.

This file is also the worker script: ``torchrun ... test_fsdp.py LIST OUT``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from test_distributed import PerSampleMask, torchrun

from motionmae.checkpoints.format import latest_checkpoint
from motionmae.config import PretrainConfig, load_config

STEPS = 4  # one epoch: 16 videos = 4 steps x global batch 4


def _config(train_list, out, batch_size: int, accum: int, *extra: str) -> PretrainConfig:
    # Pixel MAE: this harness builds its dataset without the hooks that add tracks.
    return load_config(PretrainConfig, overrides=[
        "targets.names=[pixel]", "masking.kind=tube",
        f"data.train={train_list}", f"run.out={out}", "data.frames=4", "data.stride=2",
        "data.size=32", "data.flip=false", "data.workers=0", "model.depth=2",
        "model.decoder_depth=1", "model.embed_dim=64", "model.num_heads=2",
        "model.decoder_dim=64", "model.decoder_heads=2", f"run.batch_size={batch_size}",
        f"optim.accum_steps={accum}", "run.log_every=1", "optim.lr=1e-3",
        "optim.warmup_fraction=0.0", f"run.steps={STEPS}", "run.ckpt_every=3",
        "run.keep_every=3", "run.parallel=fsdp", *extra,
    ])


def _train(cfg: PretrainConfig, dist=None, resume: bool = False):
    from motionmae.data import VideoDataset, read_video_list
    from motionmae.train.loop import batch_stream, train
    from motionmae.train.pretrain import PretrainTask

    videos = read_video_list(cfg.data.train)
    cfg = cfg.resolve(len(videos), dist.world_size if dist is not None else 1)
    torch.manual_seed(cfg.run.seed)
    task = PretrainTask(cfg)
    task.masking = PerSampleMask(task.masking, cfg.run.seed)
    dataset = VideoDataset(videos, cfg.data, train=True, seed=cfg.run.seed)
    result = train(task, batch_stream(dataset, cfg, dist), cfg, dist=dist, resume=resume)
    return result, task


def _worker(train_list: str, out: str) -> None:
    from torch.distributed.fsdp import FSDPModule

    from motionmae.train.distributed import distributed_session

    with distributed_session() as dist:
        for name in ("a", "b"):
            _, task = _train(_config(train_list, Path(out, name), 1, 2), dist)
            assert isinstance(task.model, FSDPModule)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from motionmae.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("fsdp-videos")
    return make_synthetic_dataset(root, num_train=16, num_val=1, frames=12, size=32, seed=2)


def _losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_fsdp_matches_one_process_and_its_checkpoint_resumes_on_one(videos, tmp_path):
    sharded = tmp_path / "fsdp"
    launched = torchrun(__file__, str(videos.train_list), str(sharded))
    # The predictions are views (a Linear over [B, M, C]); FSDP2's warning about in-place
    # ops on them does not apply (the losses below match one process) and is not shown.
    assert "returned a view" not in launched.stderr
    # Same seed, data and world size: the same loss curve, exactly.
    assert len(_losses(sharded / "a")) == STEPS
    assert _losses(sharded / "a") == _losses(sharded / "b")

    single, task = _train(_config(videos.train_list, tmp_path / "one", 4, 1))
    reference = [record["loss"] for record in single.history]
    assert _losses(sharded / "a") == pytest.approx(reference, rel=1e-4, abs=1e-6)

    # The checkpoint holds the full model (same names and shapes as a 1-process run's) and an
    # optimizer state keyed by parameter name.
    checkpoint = latest_checkpoint(sharded / "a" / "checkpoints")
    assert checkpoint.step == STEPS
    weights = checkpoint.weights()
    expected = task.model.state_dict()
    assert weights.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(weights[key], value, rtol=1e-3, atol=1e-4)
    optimizer_state = checkpoint.state()["optimizer"]
    assert set(optimizer_state["state"]) <= set(expected)

    # One process continues the 2-rank run from its step-3 checkpoint (data position counted
    # over both ranks) and computes the same step 4.
    resumed = tmp_path / "resumed"
    shutil.copytree(sharded / "a", resumed)
    shutil.rmtree(resumed / "checkpoints" / f"step_{STEPS:08d}")
    (resumed / "checkpoints" / "latest").write_text("step_00000003\n")
    result, task = _train(_config(videos.train_list, resumed, 4, 1), resume=True)
    assert result.state.step == STEPS and len(result.history) == 1
    assert result.history[0]["loss"] == pytest.approx(reference[-1], rel=1e-4, abs=1e-6)
    for key, value in task.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-3, atol=1e-4)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])


def test_numbered_optimizer_state_renamed_loads_like_the_original():
    """A DDP or 1-process checkpoint numbers parameters in the optimizer's group order (decay
    and no-decay groups interleave the model's order); renamed, it loads into a sharded run
    through ``set_optimizer_state_dict``. Checked here on a plain model, where both loads
    apply."""
    from motionmae.config import OptimConfig
    from motionmae.train.distributed import load_full_state, optimizer_state_by_name
    from motionmae.train.optim import build_optimizer
    from motionmae.train.pretrain import PretrainTask

    cfg = _config("unused.txt", "unused", 1, 1).resolve(num_videos=1)

    def fresh():
        torch.manual_seed(0)
        task = PretrainTask(cfg)
        optimizer = build_optimizer(task.parameter_groups(0.05), OptimConfig(), 1e-3)
        return task.model, optimizer

    model, optimizer = fresh()
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    numbered = optimizer.state_dict()
    assert len(numbered["param_groups"]) == 2  # weight decay and not: not the model's order

    renamed = optimizer_state_by_name(model, optimizer, numbered)
    names = dict(model.named_parameters())
    for group in renamed["param_groups"]:
        assert all(isinstance(name, str) and name in names for name in group["params"])
    _, direct = fresh()
    direct.load_state_dict(numbered)
    by_name_model, by_name = fresh()
    load_full_state(by_name_model, by_name, model.state_dict(), renamed, sharded=False)
    for a, b in zip(direct.param_groups, by_name.param_groups, strict=True):
        for p, q in zip(a["params"], b["params"], strict=True):
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(direct.state[p][key], by_name.state[q][key],
                                           rtol=0, atol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(by_name_model.state_dict()[key], value)

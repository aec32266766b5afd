"""Data-parallel pretraining: 2 CPU ranks (gloo, launched by ``torchrun`` on 127.0.0.1).

Equivalence design: the loop seeds masks per *(step, micro-batch, rank)*, so ranks draw
different masks for their halves of the global batch, and a 2-rank run cannot reproduce a
1-process run's masks. To compare exactly, both runs here use a mask generator seeded per
*sample* (from ``batch["index"]``): with the same samples per step (the rank-strided
:class:`EpochSampler`), the same per-sample masks and augmentations (``(seed, epoch, index)``),
DDP's averaged gradient equals the 1-process gradient of the same global batch, and the same
global batch gives the same learning rate; so losses and weights agree to float tolerance.

This file is also the worker script: ``torchrun ... test_distributed.py LIST OUT BATCH``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from motionmae.config import PretrainConfig, load_config

STEPS = 3  # one epoch: 12 videos = 3 steps x global batch 4


def _config(train_list, out, batch_size: int, *extra: str) -> PretrainConfig:
    # Pixel MAE: this harness builds its dataset without the hooks that add tracks.
    return load_config(PretrainConfig, overrides=[
        "targets.names=[pixel]", "masking.kind=tube",
        f"data.train={train_list}", f"run.out={out}", "data.frames=4", "data.stride=2",
        "data.size=32", "data.flip=false", "data.workers=0", "model.depth=2",
        "model.decoder_depth=1", f"run.batch_size={batch_size}", "run.log_every=1",
        "optim.lr=1e-3", "optim.warmup_fraction=0.0", f"run.steps={STEPS}",
        "run.ckpt_every=100", *extra,
    ])


class PerSampleMask:
    """Wraps a mask generator: each clip's mask comes from ``(seed, video index)`` only."""

    def __init__(self, inner, seed: int) -> None:
        self.inner, self.seed = inner, seed
        self.num_visible = inner.num_visible

    def __call__(self, batch, generator=None):
        clips = batch["clip"]
        return torch.cat([
            self.inner({"clip": clips[i : i + 1]},
                       torch.Generator().manual_seed(self.seed * 7919 + int(index)))
            for i, index in enumerate(batch["index"].tolist())
        ])


def run_exact(cfg: PretrainConfig, dist=None):
    """Pretrain with per-sample masks; returns the result and the video indices per step."""
    from motionmae.data import VideoDataset, read_video_list
    from motionmae.train.loop import batch_stream, train
    from motionmae.train.pretrain import PretrainTask

    videos = read_video_list(cfg.data.train)
    cfg = cfg.resolve(len(videos), dist.world_size if dist is not None else 1)
    torch.manual_seed(cfg.run.seed)
    task = PretrainTask(cfg)
    task.masking = PerSampleMask(task.masking, cfg.run.seed)
    seen: list[list[int]] = []
    inner_loss = task.loss

    def loss(model, batch, generator):
        seen.append(batch["index"].tolist())
        return inner_loss(model, batch, generator)

    task.loss = loss
    dataset = VideoDataset(videos, cfg.data, train=True, seed=cfg.run.seed)
    result = train(task, batch_stream(dataset, cfg, dist), cfg, dist=dist)
    return result, task, seen


def _worker(train_list: str, out: str, batch_size: int) -> None:
    from motionmae.train.distributed import distributed_session

    with distributed_session() as dist:
        result, task, seen = run_exact(_config(train_list, out, batch_size), dist)
        Path(out, f"rank{dist.rank}.json").write_text(json.dumps(
            {"seen": seen, "bad_video_draws": result.state.bad_video_draws}))
        torch.save(task.model.state_dict(), Path(out, f"rank{dist.rank}.pt"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 or not check, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from motionmae.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("dist-videos")
    return make_synthetic_dataset(root, num_train=12, num_val=2, frames=12, size=32, seed=1)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_equal_one_process_with_the_same_global_batch(videos, tmp_path):
    two = tmp_path / "two"
    torchrun(__file__, str(videos.train_list), str(two), "2")
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in range(2)]
    weights = [torch.load(two / f"rank{r}.pt") for r in range(2)]

    # DDP keeps the replicas identical.
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    # Each sample once per epoch across ranks, no overlap between ranks.
    per_rank = [sorted(i for step in r["seen"] for i in step) for r in ranks]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == list(range(12))
    # Only rank 0 wrote: one metrics record per step, one checkpoint.
    records = _records(two)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert (two / "checkpoints" / "latest").read_text().strip() == f"step_{STEPS:08d}"

    one = tmp_path / "one"
    result, task, seen = run_exact(_config(videos.train_list, one, 4))
    # Same samples per step, same global batch (so the same learning rate).
    for step in range(STEPS):
        assert sorted(seen[step]) == sorted(ranks[0]["seen"][step] + ranks[1]["seen"][step])
    assert [r["lr"] for r in result.history] == [r["lr"] for r in records]
    for a, b in zip(result.history, records, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6), a["step"]
    single = task.model.state_dict()
    for key in single:
        # Adam rescales near-zero gradients, so float noise can reach a tenth of an update.
        torch.testing.assert_close(weights[0][key], single[key], rtol=1e-3, atol=1e-4)


def test_torchrun_cli_pretrain_then_resume_past_a_busy_folder(videos, tmp_path):
    from motionmae.fileio import exclusive
    from motionmae.train.runfolder import LOCK_FILE

    out = tmp_path / "cli"
    start = ["-m", "motionmae", "pretrain", "--data", str(videos.train_list), "--out", str(out)]
    torchrun(*start, "--frames", "4", "--size", "32", "--steps", "2", "--batch-size", "2",
             "--set", "model.depth=1", "--set", "model.decoder_depth=1",
             "--set", "data.workers=0", "--set", "run.log_every=1")
    records = _records(out)
    assert [r["step"] for r in records] == [1, 2]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    # Another process holds the run: rank 0 says who, and no rank waits for it.
    with exclusive(out / LOCK_FILE, "busy"):
        busy = torchrun(*start, "--resume", "--steps", "3", check=False, timeout=60)
    assert busy.returncode != 0
    assert f"another training run is writing here (PID {os.getpid()} " in busy.stderr
    # Every rank resumes (rank 0 decides, from the run's own config.yaml).
    resumed = torchrun(*start, "--resume", "--steps", "3")
    assert [r["step"] for r in _records(out)] == [1, 2, 3]
    # One line for the job, from rank 0, not one per process.
    assert resumed.stderr.count("done: 3 steps, checkpoints in") == 1, resumed.stderr[-2000:]


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))

"""Data-parallel scaling of the training loop: clips/s on 1, 2, ... processes, and efficiency.

Weak scaling: every process keeps the same per-process batch, so ``N`` processes train a global
batch ``N`` times larger. For each world size the script starts ``torchrun --nproc_per_node N``
on itself (gloo on CPU, NCCL on GPUs: :func:`motionmae.train.distributed.distributed_session`
picks), runs the real training loop (``motionmae.train.loop.train``: DDP or FSDP2, the
optimizer, metrics; checkpoints only at the end) on a pretraining task, and reads rank 0's
clips/s (global clips over wall time) from the logged windows after the first (warm-up).

Reported per world size ``N``: clips/s (median over ``--rounds`` measurements, the world sizes
alternating so that a change in the machine's load hits every row alike), speed-up
``clips/s(N) / clips/s(1)`` and efficiency ``speed-up / N``; the 1-process runs of the same
invocation are the reference.

Data: by default clips come from memory (random pixels, decoded once) so the numbers measure
compute and gradient communication; ``--videos LIST`` trains on real files instead (then
decoding competes for the same cores). On CPU, each process gets ``cores // N`` threads so
every row uses the whole machine (a 1-process row with all cores is the fair reference);
``--threads 1`` instead gives every process one thread (then ``N`` processes use ``N`` cores:
the scaling of the method itself, without intra-op threading).

Run on this CPU::

    python benchmarks/scaling.py --world-sizes 1,2

On a node with N GPUs (each process takes ``cuda:LOCAL_RANK``)::

    python benchmarks/scaling.py --world-sizes 1,2,4,8 --device cuda --model base \\
        --frames 16 --size 224 --batch-size 16 --steps 30 [--parallel fsdp]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset


class MemoryClips(Dataset):
    """``num`` pre-made normalised clips ``[3, T, S, S]`` (random pixels), one per index."""

    def __init__(self, num: int, frames: int, size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.clips = torch.randn(num, 3, frames, size, size, generator=generator)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"clip": self.clips[index], "label": torch.tensor(0),
                "index": torch.tensor(index), "bad_videos": torch.tensor(0)}


def _config(args: argparse.Namespace, out: str):
    from motionmae.config import PretrainConfig, load_config

    # Pixel MAE (the measured setting): its dataset below has no hooks that add tracks.
    return load_config(PretrainConfig, overrides=[
        "targets.names=[pixel]", "masking.kind=tube",
        f"run.out={out}", f"model.size={args.model}", f"data.frames={args.frames}",
        f"data.size={args.size}", f"run.batch_size={args.batch_size}",
        f"run.steps={args.steps}", f"run.log_every={args.log_every}",
        f"run.ckpt_every={args.steps}", f"run.device={args.device}",
        f"run.parallel={args.parallel}", f"run.precision={args.precision}",
        f"data.workers={args.workers}", "optim.warmup_fraction=0.0", "masking.ratio=0.9",
        *([f"data.train={args.videos}"] if args.videos else []),
    ])


def _child(args: argparse.Namespace) -> None:
    """One rank of a measurement (started by torchrun)."""
    from motionmae.data import VideoDataset, read_video_list
    from motionmae.train.distributed import distributed_session
    from motionmae.train.loop import batch_stream, train
    from motionmae.train.pretrain import PretrainTask

    with distributed_session() as dist, tempfile.TemporaryDirectory() as scratch:
        cfg = _config(args, str(Path(scratch, "run")))
        if args.videos:
            dataset = VideoDataset(read_video_list(args.videos), cfg.data, train=True)
        else:
            dataset = MemoryClips(args.batch_size * dist.world_size * args.steps,
                                  args.frames, args.size)
        cfg = cfg.resolve(len(dataset), dist.world_size)
        torch.manual_seed(0)
        task = PretrainTask(cfg, world_size=dist.world_size)
        windows: list[float] = []
        train(task, batch_stream(dataset, cfg, dist), cfg, dist=dist,
              on_log=lambda record: windows.append(record["clips_per_s"]))
        if dist.is_main:
            measured = windows[1:] or windows  # the first window holds the warm-up
            Path(args.result).write_text(json.dumps({
                "clips_per_s": sum(measured) / len(measured), "windows": windows,
                "threads": torch.get_num_threads()}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(args: argparse.Namespace, world_size: int) -> dict:
    threads = args.threads or max(1, (os.cpu_count() or 1) // world_size)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch, "result.json")
        child = [a for a in sys.argv[1:] if a != "--child"]
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
                   "--nproc_per_node", str(world_size), "--master_addr", "127.0.0.1",
                   "--master_port", str(_free_port()), __file__, *child, "--child",
                   "--result", str(result)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"world size {world_size} failed:\n{done.stderr[-4000:]}")
        return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world-sizes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=4, help="clips per process and step")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--log-every", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parallel", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--videos", help="train on this list file instead of memory clips")
    parser.add_argument("--workers", type=int, default=0, help="loader workers per process")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: "
                        "cores // processes)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per world size")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    sizes = [int(n) for n in args.world_sizes.split(",")]
    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    for _ in range(args.rounds):
        for n in sizes:
            runs[n].append(_measure(args, n))
    rows = [(n, {"clips_per_s": statistics.median(r["clips_per_s"] for r in runs[n]),
                 "threads": runs[n][0]["threads"],
                 "all": [round(r["clips_per_s"], 2) for r in runs[n]]}) for n in sizes]
    reference = next((r["clips_per_s"] for n, r in rows if n == 1), None)
    print(f"{args.model} {args.frames}x{args.size}, batch {args.batch_size} per process, "
          f"{args.parallel}, {args.device}, {args.steps} steps (first {args.log_every} "
          f"warm-up), data from {'files' if args.videos else 'memory'}")
    print("| processes | threads each | clips/s (median) | speed-up | efficiency | runs |")
    print("|---|---|---|---|---|---|")
    for n, result in rows:
        speedup = result["clips_per_s"] / reference if reference else float("nan")
        print(f"| {n} | {result['threads']} | {result['clips_per_s']:.2f} | {speedup:.2f} | "
              f"{speedup / n:.2f} | {result['all']} |")


if __name__ == "__main__":
    main()

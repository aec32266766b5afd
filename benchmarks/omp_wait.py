"""Training-step time with OpenMP's default (spinning) wait vs ``OMP_WAIT_POLICY=PASSIVE``,
on free cores and on cores shared with another busy process (as loader workers that decode
and track, or a second job, share them).

Each measurement runs in a fresh process (the policy is read once, at torch's import) and
times 8 pretraining steps of the tiny model at 16 x 112 px, batch 8, pixel target, after 2
warm-up steps; the busy neighbour is a second process doing the same steps on one thread.

    .venv/bin/python benchmarks/omp_wait.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

STEP = """
import time, torch
from motionmae.config import PretrainConfig
from motionmae.train.pretrain import PretrainTask
cfg = PretrainConfig()
cfg.data.frames, cfg.data.size = 16, 112
cfg.targets.names, cfg.masking.kind = ["pixel"], "tube"  # a clip-only batch: no tracks
task = PretrainTask(cfg.resolve(num_videos=8))
opt = torch.optim.AdamW(task.model.parameters(), 1e-4)
gen = torch.Generator().manual_seed(0)
batch = {{"clip": torch.randn(8, 3, 16, 112, 112)}}
def step():
    loss, _ = task.loss(task.model, batch, gen)
    loss.backward(); opt.step(); opt.zero_grad()
for _ in range(2):
    step()
start = time.perf_counter()
for _ in range({steps}):
    step()
print((time.perf_counter() - start) / {steps})
"""


def step_seconds(policy: str | None, steps: int = 8) -> float:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", STEP.format(steps=steps)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def busy_neighbour() -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    loop = STEP.format(steps=10_000)
    return subprocess.Popen([sys.executable, "-c", loop], env=env, stdout=subprocess.DEVNULL)


def main() -> None:
    rows = []
    for shared in (False, True):
        neighbour = busy_neighbour() if shared else None
        if neighbour is not None:
            time.sleep(5)  # let it reach its steps
        try:
            default = step_seconds(None)
            passive = step_seconds("PASSIVE")
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
        rows.append(("shared with a busy process" if shared else "free cores", default, passive))
    print("| cores | default wait, s/step | PASSIVE, s/step | default / PASSIVE |")
    print("|---|---|---|---|")
    for name, default, passive in rows:
        print(f"| {name} | {default:.3f} | {passive:.3f} | {default / passive:.2f}x |")


if __name__ == "__main__":
    main()

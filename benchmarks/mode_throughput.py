"""What motion costs end to end: ``motionmae pretrain``'s clips/s in the default motion mode
(``--targets pixel,tracks --masking motion``, tracks made online) against pixel MAE
(``--targets pixel --masking tube``) on real footage, one run after another, alternated.

Each row is a whole ``motionmae pretrain`` process (decoding, augmentation, tracking in the
loader workers, the step, logging) on the motion suite's pooled pretraining clips (real
footage, ``benchmarks/motion_suite.py`` makes them), tiny model, 16 frames at 112 px, batch 8.
clips/s is the median of the logged ``clips_per_s`` over the windows after the first (which
holds the start-up). The rows run A B A B ... for ``--rounds`` rounds so that a change in the
machine's load hits every row alike; the table gives each row's median over rounds and its
ratio to the first row (pixel MAE), and the per-round ratios' range.

Rows: ``pixel`` (the reference), ``motion`` (the library's defaults), plus ``--row
NAME='--set k=v ...'`` for more (e.g. the decoders before issue 23: ``--row 'motion, two
4-block decoders=--set model.decoder_depth=4 --set model.joint_targets=[]'``); ``--env K=V``
in a row sets that run's environment.

Run on an otherwise idle machine (the number is a ratio of two runs on the same cores)::

    nice .venv/bin/python benchmarks/mode_throughput.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from motion_suite import default_data_dir

ROWS: dict[str, list[str]] = {
    "pixel MAE (pixel / tube)": ["--targets", "pixel", "--masking", "tube"],
    "default motion mode (pixel,tracks / motion)": ["--targets", "pixel,tracks",
                                                    "--masking", "motion"],
}
GEOMETRY = ["--set", "data.frames=16", "--set", "data.size=112", "--set", "data.stride=1"]


def run_row(args: list[str], data: Path, steps: int, log_every: int, out: Path) -> float:
    """Median logged clips/s of one ``motionmae pretrain`` run, first window left out.
    ``--env K=V`` items of ``args`` set the run's environment instead of being flags."""
    env = dict(os.environ)
    flags: list[str] = []
    items = iter(args)
    for item in items:
        if item == "--env":
            key, _, value = next(items).partition("=")
            env[key] = value
        else:
            flags.append(item)
    args = flags
    command = [sys.executable, "-m", "motionmae", "pretrain", "--data", str(data), "--out",
               str(out), "--steps", str(steps), "--batch-size", "8", *GEOMETRY,
               "--set", f"run.log_every={log_every}", "--set", f"run.ckpt_every={steps}", *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   env=env)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["clips_per_s"] for r in records if "clips_per_s" in r][1:]
    if not speeds:
        raise SystemExit(f"{out}: fewer than two logged windows; raise --steps")
    return statistics.median(speeds)


def parse_row(text: str) -> tuple[str, list[str]]:
    name, sep, rest = text.partition("=")
    if not sep or not name.strip():
        raise SystemExit(f"--row takes NAME='--set k=v ...', got {text!r}")
    return name.strip(), shlex.split(rest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir() / "pretrain_pool.txt",
                        help="video list (default: the motion suite's pooled pretraining clips)")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--row", action="append", default=[], metavar="NAME='--set k=v'",
                        help="one more row: pretrain flags on top of the default motion mode")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"{args.data} does not exist: run benchmarks/motion_suite.py once "
                         "(it makes the clips), or pass --data LIST")
    rows = dict(ROWS)
    motion = ROWS["default motion mode (pixel,tracks / motion)"]
    rows.update((name, [*motion, *extra]) for name, extra in map(parse_row, args.row))
    speeds: dict[str, list[float]] = {name: [] for name in rows}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for index, (name, flags) in enumerate(rows.items()):
                out = Path(scratch) / f"r{round_index}-{index}"
                speeds[name].append(run_row(flags, args.data, args.steps, args.log_every, out))
                print(f"round {round_index + 1}: {name}: {speeds[name][-1]:.2f} clips/s",
                      flush=True)
    reference = next(iter(rows))
    print(f"\n{args.rounds} rounds of {args.steps} steps x 8 clips, 16x112, tiny, "
          f"{args.data.name}\n")
    print("| row | clips/s (median) | / pixel MAE (median, range over rounds) |")
    print("|---|---:|---:|")
    for name, values in speeds.items():
        ratios = [v / r for v, r in zip(values, speeds[reference], strict=True)]
        print(f"| {name} | {statistics.median(values):.2f} | {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()

"""The chaos check: a small run survives SIGKILL at random moments, a damaged newest
checkpoint, a full disk at each write path, two writers on one run folder; hostile list paths
and files whose loading would run code are refused. Prints a table (scenario, expected,
observed, pass); the exit status is 0 only if every row passes.

Usage::

    python benchmarks/chaos.py                    # every scenario, 20 kills (~10 min)
    python benchmarks/chaos.py --quick            # one row of each kind (under a minute)
    python benchmarks/chaos.py --seed 3 --kills 30 --markdown

Every command runs as ``python -m motionmae`` in a child process (the real exit status and
stderr), tiny (depth-1 model, 4 frames of 32 px, a checkpoint every step), in its own sandbox
folder whose files outside ``--out`` are compared before and after. A full disk is a 64 MB
tmpfs where this machine lets root mount one, and ENOSPC injected at each write path by
``benchmarks/chaos_enospc.py`` (a wrapper around the command; the library has no hooks).
SIGKILL moments are drawn from ``--seed``: while a checkpoint folder is being written, at a
random moment after a new checkpoint, or near the process start; each kill is followed by
``motionmae pretrain --data L --out RUN --resume``. See docs/benchmarks.md for the table.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from chaos_inputs import hostile_lists, payload_control, pickle_payloads
from chaos_runs import Bench, Row
from chaos_training import (
    damaged_checkpoint,
    existing_folder,
    full_disk,
    sigkill,
    tmpfs_full_disk,
    two_writers,
)

Scenario = Callable[[Bench], list[Row]]


def full_scenarios(kills: int) -> list[Scenario]:
    return [
        functools.partial(sigkill, kills=kills),
        damaged_checkpoint,
        full_disk,
        tmpfs_full_disk,
        two_writers,
        existing_folder,
        hostile_lists,
        payload_control,
        pickle_payloads,
    ]


# The fast subset, one row of each kind (tests/benchmarks/test_chaos.py runs each).
QUICK: dict[str, Scenario] = {
    "sigkill during a checkpoint write": functools.partial(sigkill, kills=1, kinds=["write"]),
    "damaged checkpoint": functools.partial(damaged_checkpoint, names=["truncated weights"]),
    "full disk": functools.partial(full_disk, paths=["training state (state.pt)"]),
    "two writers": functools.partial(two_writers, modes=("--resume",)),
    "pickle payload": functools.partial(
        pickle_payloads, only=["pretrain --resume over a pickled state.pt"]),
}


def run_scenarios(bench: Bench, scenarios: list[Scenario]) -> list[Row]:
    """Every scenario's rows; a scenario that breaks is a failed row saying how."""
    rows: list[Row] = []
    for scenario in scenarios:
        try:
            rows.extend(scenario(bench))
        except Exception as error:  # the check itself failed: show it as a row, go on
            name = getattr(getattr(scenario, "func", scenario), "__name__", "scenario")
            rows.append(Row(name, "-", f"the check broke: {type(error).__name__}: {error}",
                            False))
    return rows


def verdict(row: Row) -> str:
    return {True: "yes", False: "NO", None: "skip"}[row.passed]


def table(rows: list[Row], markdown: bool) -> str:
    """The rows as a Markdown table, or as aligned text."""
    cells = [[r.scenario, r.expected, r.observed, verdict(r)] for r in rows]
    header = ["scenario", "expected", "observed", "pass"]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines)
    return "\n\n".join(f"[{row[3]}] {row[0]}\n    expected: {row[1]}\n    observed: {row[2]}"
                       for row in cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the fast subset (one row each)")
    parser.add_argument("--seed", type=int, default=0, help="kill moments and the run's seed")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the killed run")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--work", type=Path, help="keep the sandboxes here (default: a "
                        "temporary folder, removed at the end)")
    args = parser.parse_args()

    root = args.work or Path(tempfile.mkdtemp(prefix="motionmae-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    try:
        bench = Bench(root, seed=args.seed)
        rows = run_scenarios(bench, list(QUICK.values()) if args.quick
                             else full_scenarios(args.kills))
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)
    print(table(rows, args.markdown).replace(f"{root}{os.sep}", ""))  # paths in the sandboxes
    failed = sum(r.passed is False for r in rows)
    print(f"\n{len(rows) - failed} of {len(rows)} rows pass ({failed} fail) in "
          f"{time.perf_counter() - began:.0f} s; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

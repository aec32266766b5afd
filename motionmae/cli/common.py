"""What several commands share: the ``motionmae`` logger, the training progress bar, the
training commands' config (``--resume`` reads the run's) and run (in the job's distributed
context, owning the run folder), and ``--shard i/n``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motionmae.errors import UsageError

log = logging.getLogger("motionmae")


def progress(total: int | None, desc: str) -> tuple[Callable[[dict], None], Callable[[], None]]:
    """A training progress bar: ``(on_log, close)``, ``on_log`` taking the loop's records.
    The bar appears at the first record, so a run that fails while it starts (a missing list,
    a refused resume) prints its error alone; its total is ``total``, else the record's
    ``planned_steps`` (an epoch-counted run's length)."""
    from tqdm import tqdm

    bars: list[tqdm] = []

    def on_log(record: dict) -> None:
        if not bars:
            bars.append(tqdm(total=total or record.get("planned_steps"), desc=desc,
                             unit="step", dynamic_ncols=True))
        bar = bars[0]
        bar.update(record["step"] - bar.n)
        postfix = {"loss": f"{record['loss']:.4f}", "lr": f"{record['lr']:.2e}",
                   "clips/s": f"{record['clips_per_s']:.1f}"}
        bar.set_postfix(postfix, refresh=False)

    def close() -> None:
        for bar in bars:
            bar.close()

    return on_log, close


def load_training_config(cls: type, args: argparse.Namespace, overrides: list[str],
                         base: Callable[[], dict[str, Any]] | None = None) -> Any:
    """The run config of a training command: with ``--resume`` and a saved ``--out``/
    ``config.yaml``, that config with the file and flags over it (changing only what they
    name); otherwise defaults <- ``base()`` <- ``--config`` <- flags."""
    from motionmae.config import load_config, resume_config
    from motionmae.train.runfolder import CONFIG_FILE

    saved = Path(args.out) / CONFIG_FILE
    if args.resume and saved.is_file():
        return resume_config(cls, saved, args.config, overrides)
    return load_config(cls, args.config, overrides, base=base() if base else None)


@dataclass(frozen=True)
class Stopped:
    """A training run that saved a checkpoint and stopped on ``SIGTERM`` or Ctrl-C;
    ``exit_code`` is 128 + the signal's number (143, 130)."""

    exit_code: int


def run_training(name: str, run: Callable[..., Any], cfg: Any, args: argparse.Namespace,
                 steps_done: Callable[[Any], int]) -> Any:
    """Run ``run(cfg, ...)`` (pretrain or finetune) in this process's distributed context,
    owning the run folder (``--resume``, ``--overwrite``: :mod:`motionmae.train.runfolder`),
    with a progress bar on rank 0; its result, or :class:`Stopped` when a signal stopped it
    (a checkpoint was saved). Rank 0 logs the steps done (``steps_done(result)``) and where
    the checkpoints are; the other ranks say nothing (one line per job, not per process)."""
    from motionmae.train.distributed import distributed_session
    from motionmae.train.loop import TrainingInterrupted
    from motionmae.train.runfolder import claim_run_folder

    with (distributed_session() as dist,
          claim_run_folder(Path(cfg.run.out), resume=args.resume, overwrite=args.overwrite,
                           dist=dist) as from_checkpoint):
        # An epoch-counted run's length is known once the run has read its list.
        total = None if cfg.run.by_epochs else cfg.run.planned_steps(0, 1)
        on_log, close = progress(total, name) if dist.is_main else (None, None)
        try:
            result = run(cfg, resume=from_checkpoint, dist=dist, on_log=on_log)
        except TrainingInterrupted as stopped:  # every rank stopped at the same step
            log.warning("%s", stopped)
            return Stopped(stopped.exit_code)
        finally:
            if close is not None:
                close()
        if dist.is_main:
            log.info("done: %d steps, checkpoints in %s", steps_done(result),
                     Path(cfg.run.out) / "checkpoints")
        return result


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard i/n`` as ``(i, n)``."""
    try:
        index, count = (int(x) for x in text.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        raise UsageError(f"--shard must be i/n with 0 <= i < n, "
                         f"got {text!r}") from None
    return index, count


def views_text(clips: int, crops: int) -> str:
    """``2 clips x 3 crops``, ``1 clip x 1 crop``: the views averaged per video."""
    return f"{clips} clip{'s' * (clips != 1)} x {crops} crop{'s' * (crops != 1)}"


def add_training_options(p: argparse.ArgumentParser, set_example: str) -> None:
    """The run-length, batch, ``--set`` and ``--resume`` flags of the training commands."""
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps (default 1000 when "
                        "neither --steps nor --epochs is given)")
    length.add_argument("--epochs", type=int, help="passes over the data")
    p.add_argument("--batch-size", type=int, help="clips per step and process (default 8)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override any config key, e.g. --set {set_example} (repeatable)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its latest checkpoint, with its "
                       "config.yaml (flags change only what they name); without a checkpoint "
                       "yet it starts at step 0, in an empty --out a new run (one command "
                       "starts and requeues a job)")
    start.add_argument("--overwrite", action="store_true",
                       help="delete the run's files in --out (config.yaml, metrics, "
                       "checkpoints, eval/, report/, ...; not others) and start a new run")

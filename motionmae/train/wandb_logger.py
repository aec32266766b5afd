"""Weights & Biases logging of the training loop's records (``run.wandb: true``).

Optional and never required: the loop logs the same records it writes to
``RUN/metrics.jsonl`` (every numeric entry but ``step`` and ``time``, at the record's
``step``; rank 0 only), and the resolved config (``RUN/config.yaml``) as the W&B run's config.
W&B's own files go to ``RUN/wandb/``.

Credentials are W&B's business: it reads ``WANDB_API_KEY`` or the key ``wandb login`` stored;
motionmae has no config key or flag for one (keys on a command line end up in shell
histories and process lists). Other ``WANDB_*`` variables work as W&B documents them;
``run.wandb_mode`` (``online`` / ``offline``) overrides ``WANDB_MODE`` when set.

Resume: the W&B run id is stored in ``RUN/wandb_run_id``; ``--resume`` continues that W&B run.
Steps the interrupted run logged after its last checkpoint are already in the W&B run, and
W&B ignores a step lower than one it has seen, so the resumed run's repeats of those steps
are dropped there (``metrics.jsonl`` keeps the resumed values).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import yaml

from motionmae.config import RunConfig
from motionmae.train.tensorboard import scalars

log = logging.getLogger(__name__)

RUN_ID_FILE = "wandb_run_id"


def _resolved_config(out_dir: Path, run: RunConfig) -> dict[str, Any]:
    """The run's saved ``config.yaml`` (what ``pretrain``/``finetune`` write before training);
    only the ``run`` section when :func:`~motionmae.train.loop.train` is called without one."""
    path = out_dir / "config.yaml"
    if path.is_file():
        return yaml.safe_load(path.read_text())
    return {"run": dataclasses.asdict(run)}


class WandbLogger:
    """One W&B run for one training run folder ``out_dir``.

    Raises ``ImportError`` naming ``pip install wandb`` when the package is missing, so a run
    configured with ``run.wandb: true`` fails before its first step.
    """

    def __init__(self, out_dir: str | Path, run: RunConfig, *, resume: bool) -> None:
        try:
            import wandb
        except ImportError as error:
            raise ImportError("run.wandb: needs the wandb package (pip install wandb, or "
                              "pip install 'motionmae[wandb]')") from error
        out_dir = Path(out_dir)
        id_file = out_dir / RUN_ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
        if resume and run_id is None:
            log.info("run.wandb: %s has no W&B run id (the interrupted run did not log to "
                     "W&B); starting a new W&B run", out_dir)
        self._run = wandb.init(
            project=run.wandb_project,
            entity=run.wandb_entity,
            mode=run.wandb_mode,
            dir=str(out_dir),
            name=out_dir.resolve().name,
            id=run_id,
            resume="allow" if run_id is not None else None,
            config=_resolved_config(out_dir, run),
            # A resumed run may change keys such as run.steps.
            allow_val_change=True,
        )
        id_file.write_text(f"{self._run.id}\n")

    def write(self, record: dict[str, Any]) -> None:
        """The numeric entries of a logged record at ``record["step"]``."""
        self._run.log(scalars(record), step=int(record["step"]))

    def close(self, failed: bool = False) -> None:
        """Finish the W&B run, marked failed (exit code 1) when training raised."""
        self._run.finish(exit_code=1 if failed else 0)

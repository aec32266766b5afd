"""A two-step pretraining run on a few synthetic videos, for the targets' end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path

from motionmae.config import PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.train.pretrain import pretrain


def two_step_records(tmp_path: Path, target: str, overrides: list[str]) -> list[dict]:
    """Pretrain 2 steps (tiny model, 4 frames at 32 px, motion masking, batch 4) with
    ``overrides``; the ``metrics.jsonl`` records that log ``target``."""
    videos = make_synthetic_dataset(tmp_path / "videos", num_train=4, num_val=0, frames=12,
                                    size=32, seed=3)
    out = tmp_path / "run"
    cfg = load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={out}", "data.frames=4", "data.size=32",
        "data.workers=0", "model.depth=2", "model.decoder_depth=1", "run.batch_size=4",
        "run.steps=2", "run.log_every=1", "masking.kind=motion", *overrides])
    assert pretrain(cfg).state.step == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if f"explained/{target}" in r]

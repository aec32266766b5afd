"""A run survives bad videos and storage trouble: 5 % unreadable files are skipped and counted;
an unwritable or too small output folder fails before training (a disk that fills up later:
``test_storage_faults.py``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from motionmae.checkpoints.format import latest_checkpoint
from motionmae.config import PretrainConfig, load_config
from motionmae.data.lists import VideoEntry, read_video_list, write_video_list
from motionmae.data.video_info import VideoReadError
from motionmae.train import preflight
from motionmae.train.distributed import DistInfo
from motionmae.train.pretrain import PretrainTask, pretrain
from motionmae.train.save_resume import Checkpoints

SETTINGS = ["data.frames=4", "data.stride=2", "data.size=32", "data.flip=false",
            "data.workers=0", "model.depth=1", "model.decoder_depth=1", "model.embed_dim=64",
            "model.num_heads=2", "model.decoder_dim=64", "model.decoder_heads=2",
            "run.batch_size=4",
            "run.log_every=1", "optim.lr=1e-3", "optim.warmup_fraction=0.0"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from motionmae.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("resilience-videos"), num_train=19,
                                  num_val=1, frames=8, size=32, seed=5)


def _config(train_list, out, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, overrides=[
        f"data.train={train_list}", f"run.out={out}", *SETTINGS, *extra])


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_run_with_5_percent_bad_files_completes_and_counts_them(videos, tmp_path, caplog):
    good = read_video_list(videos.train_list)
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video\n")
    entries = list(good.entries)
    entries.insert(7, VideoEntry(path=bad, label=0))  # 1 bad of 20
    listing = tmp_path / "train.txt"
    write_video_list(listing, entries, good.classes)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        # One epoch: 5 steps x 4 clips visit every entry once, the bad one included.
        result = pretrain(_config(listing, out, "run.steps=5", "data.on_error=skip"))
    assert result.state.step == 5
    records = _records(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[-1]["bad_video_files"] == result.state.bad_video_files == 1
    assert records[-1]["bad_video_draws"] == result.state.bad_video_draws >= 1
    assert f"skipping bad video {bad}: cannot be opened as media" in caplog.text
    assert (f"{result.state.bad_video_draws} draw(s) of bad video files were replaced by "
            "other videos (data.on_error=skip); 1 bad file(s) in the current list"
            in caplog.text)
    with pytest.raises(VideoReadError, match=rf"{bad}: cannot be opened as media"):
        pretrain(_config(listing, tmp_path / "strict", "run.steps=5", "data.on_error=raise"))


def test_unwritable_output_folder_fails_before_training(videos, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(preflight.OutputFolderError,
                       match=rf"output folder {blocker / 'run'} is not writable: .*directory"):
        pretrain(_config(videos.train_list, blocker / "run", "run.steps=2"))


def test_too_little_free_space_fails_before_training(videos, tmp_path, monkeypatch):
    real = preflight.shutil.disk_usage

    def nearly_full(path):
        return real(path)._replace(free=3_000_000)  # 3 MB: less than two checkpoints

    monkeypatch.setattr(preflight.shutil, "disk_usage", nearly_full)
    out = tmp_path / "run"
    with pytest.raises(preflight.OutputFolderError,
                       match=rf"not enough free space for checkpoints in {out}: 3\.0 MB free, "
                             r"about \d+\.\d MB needed \(2 checkpoint\(s\)"):
        pretrain(_config(videos.train_list, out, "run.steps=4", "run.ckpt_every=2"))
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()


def test_the_free_space_estimate_is_close_to_a_real_checkpoint(videos, tmp_path):
    cfg = _config(videos.train_list, tmp_path / "run", "run.steps=2", "run.ckpt_every=2")
    pretrain(cfg)
    model = PretrainTask(cfg.resolve(num_videos=cfg.run.batch_size)).model
    estimate = preflight.checkpoint_bytes(model.state_dict().values(), model.parameters())
    written = latest_checkpoint(tmp_path / "run" / "checkpoints").path.iterdir()
    real_size = sum(f.stat().st_size for f in written)
    assert 0.9 * real_size < estimate < 1.1 * real_size, (estimate, real_size)


def test_free_space_counts_the_kept_checkpoints_and_the_one_being_written(tmp_path):
    """Two kept (run.keep_last) and a third complete before the oldest is pruned; those
    already on disk need no more room."""
    model = torch.nn.Linear(2, 2)
    checkpoints = Checkpoints(tmp_path, model, torch.optim.AdamW(model.parameters()), dict,
                              keep_last=2, keep_every=None, sharded=False, dist=DistInfo())
    assert checkpoints.copies_to_fit(0, total_steps=6, every=2) == 3
    assert checkpoints.copies_to_fit(0, total_steps=4, every=2) == 2
    assert checkpoints.copies_to_fit(0, total_steps=1, every=2) == 1
    for step in (2, 4):
        (tmp_path / f"step_{step:08d}").mkdir()
    assert checkpoints.copies_to_fit(4, total_steps=10, every=2) == 1
    checkpoints.keep_last = 1
    (tmp_path / "step_00000004").rmdir()
    assert checkpoints.copies_to_fit(2, total_steps=10, every=2) == 1

"""A run's config is checked without being changed (``validate``) and resolved once
(``resolve``: the masking ratio, the run's length, the peak lr), and the resolved config is
what the run saves; configs saved before (ratio null, no lr) still resume. The trainer's
batches come from one :class:`BatchStream`, which resumes exactly and counts bad videos."""

from __future__ import annotations

import pytest
import torch
import yaml

from motionmae.cli import main
from motionmae.config import (
    ConfigError,
    FinetuneConfig,
    PretrainConfig,
    RunConfig,
    load_config,
    resume_config,
    to_dict,
)
from motionmae.data import make_synthetic_dataset
from motionmae.data.stream import BatchStream
from motionmae.errors import UsageError
from motionmae.train.pretrain import pretrain

SETTINGS = ["--frames", "4", "--size", "32", "--batch-size", "2", "--set", "model.depth=1",
            "--set", "model.decoder_depth=1", "--set", "data.workers=0", "--set",
            "data.stride=2", "--set", "run.ckpt_every=2"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("resolve-videos")
    return make_synthetic_dataset(root, num_train=4, num_val=0, frames=8, size=32, seed=2)


def test_validate_checks_without_changing_the_config():
    cfg = load_config(PretrainConfig, overrides=["data.size=112"])
    before = to_dict(cfg)
    cfg.validate()
    assert to_dict(cfg) == before
    assert (cfg.masking.ratio, cfg.optim.lr, cfg.run.steps) == (None, None, None)


def test_resolve_fills_ratio_steps_and_lr_once():
    cfg = load_config(PretrainConfig, overrides=["data.size=112", "run.batch_size=2"])
    resolved = cfg.resolve(num_videos=10, world_size=2)
    assert resolved.masking.ratio == 0.75  # 392 tokens: below VideoMAE's 1,568
    assert resolved.run.steps == RunConfig.DEFAULT_STEPS == 1000  # neither steps nor epochs
    assert resolved.optim.lr == cfg.optim.peak_lr(2 * 2) == 3e-4  # the floor below batch 256
    assert resolved.resolve(num_videos=10, world_size=2) == resolved  # idempotent
    assert cfg.masking.ratio is None and cfg.run.steps is None  # a copy
    by_epochs = load_config(FinetuneConfig, overrides=["run.epochs=3", "run.batch_size=2",
                                                       "optim.accum_steps=2"])
    # 10 videos over 1 process: 5 batches an epoch, 2 per step -> 3 * 5 // 2 = 7 steps.
    assert by_epochs.resolve(num_videos=10).run.steps == 7
    with pytest.raises(UsageError, match=r"the training list has 1 video\(s\), too few for "
                                        r"one step of 2 video\(s\)"):
        by_epochs.resolve(num_videos=1)


def test_resolve_picks_the_blocks_per_decoder_by_the_decoder_count():
    def depth(*overrides: str) -> int:
        cfg = load_config(PretrainConfig, overrides=["data.size=112", *overrides])
        return cfg.resolve(num_videos=10).model.decoder_depth

    assert load_config(PretrainConfig).model.decoder_depth is None  # picked by resolve
    assert depth() == 2  # the default pixel + tracks: two decoders
    assert depth("targets.names=[pixel]", "masking.kind=tube") == 4  # VideoMAE's one decoder
    assert depth("targets.names=[pixel,tracks]", "model.joint_targets=[pixel,tracks]") == 4
    assert depth("targets.names=[pixel,tracks,hog]",
                 "model.joint_targets=[pixel,hog]") == 2  # a joint decoder and one more
    assert depth("targets.names=[pixel,tracks]", "model.decoder_depth=3") == 3  # as set
    with pytest.raises(ConfigError, match=r"^model\.decoder_depth: must be >= 1"):
        load_config(PretrainConfig, overrides=["model.decoder_depth=0"])


def test_a_run_saved_with_four_blocks_per_decoder_resumes_with_them(tmp_path):
    saved = to_dict(load_config(PretrainConfig, overrides=[
        "targets.names=[pixel,tracks]", "masking.kind=motion", "model.decoder_depth=4"]))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    resumed = resume_config(PretrainConfig, tmp_path / "config.yaml", overrides=["run.steps=9"])
    assert resumed.resolve(num_videos=10).model.decoder_depth == 4
    del saved["model"]["decoder_depth"]  # a model section saved without the key: 4 then
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    resumed = resume_config(PretrainConfig, tmp_path / "config.yaml")
    assert resumed.resolve(num_videos=10).model.decoder_depth == 4


def test_cross_section_rules_are_config_errors_naming_their_key():
    with pytest.raises(ConfigError, match=r"^run\.probe_every: in-run probes do not run under "
                                          r"run\.parallel=fsdp"):
        load_config(PretrainConfig, overrides=[
            "run.parallel=fsdp", "run.probe_every=10", "run.probe_train=a.txt",
            "run.probe_val=b.txt"])
    with pytest.raises(ConfigError, match=r"^data\.train: a list file of training videos"):
        pretrain(load_config(PretrainConfig))


def test_the_saved_config_is_resolved_and_an_older_one_resumes(videos, tmp_path):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(videos.train_list), "--out", str(out),
                 "--steps", "2", *SETTINGS]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["masking"]["ratio"] == 0.75 and saved["run"]["steps"] == 2
    assert saved["optim"]["lr"] == pytest.approx(3e-4)  # batch 2: the rule's floor
    # A resolved config resumes: a longer run, its numbers kept.
    assert main(["pretrain", "--data", str(videos.train_list), "--out", str(out), "--resume",
                 "--steps", "3"]) == 0
    resumed = yaml.safe_load((out / "config.yaml").read_text())
    assert resumed["run"]["steps"] == 3 and resumed["masking"] == saved["masking"]
    # As older code saved it: the ratio null, no lr (both picked when training).
    saved["masking"]["ratio"] = None
    del saved["optim"]["lr"]
    saved["run"]["steps"] = 3
    (out / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert main(["pretrain", "--data", str(videos.train_list), "--out", str(out), "--resume",
                 "--steps", "4"]) == 0
    again = yaml.safe_load((out / "config.yaml").read_text())
    assert (again["masking"]["ratio"], again["optim"]["lr"], again["run"]["steps"]) == (
        0.75, pytest.approx(3e-4), 4)


class _Items(torch.utils.data.Dataset):
    """Items that say their index and epoch; item 3 stands for a replaced bad video."""

    def __init__(self, size: int) -> None:
        self.size, self.epoch = size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        bad = int(index == 3)
        return {"index": torch.tensor(index), "epoch": torch.tensor(self.epoch),
                "bad_videos": torch.tensor(bad), "bad_files": "x.mp4\tunreadable" * bad}


def test_the_batch_stream_resumes_exactly_and_counts_bad_draws():
    stream = BatchStream(_Items(6), 2, seed=5)
    batches = [next(stream) for _ in range(7)]  # 3 batches an epoch: into the third epoch
    assert [int(b["epoch"][0]) for b in batches] == [0, 0, 0, 1, 1, 1, 2]
    assert sorted(i for b in batches[:3] for i in b["index"].tolist()) == list(range(6))
    assert all("bad_videos" not in b and "bad_files" not in b for b in batches)
    assert (stream.epoch, stream.samples_in_epoch) == (2, 2)
    drawn = sum(3 in b["index"].tolist() for b in batches)  # item 3: twice or three times
    assert drawn >= 2 and stream.flush_bad_videos(lambda x: x) == (drawn, None)
    assert stream.flush_bad_videos(lambda x: x) == (0, None)
    resumed = BatchStream(_Items(6), 2, seed=5)
    resumed.seek(1, 4)  # after batch 5 of the run above
    for expected in batches[5:]:
        assert torch.equal(next(resumed)["index"], expected["index"])

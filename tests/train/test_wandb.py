"""``run.wandb``: the logged records, the resolved config and the run id reach Weights & Biases.

A fake ``wandb`` module stands in for the package (not a test dependency); one test runs the
real package in offline mode when it is installed and reads back the run file it wrote.
"""

import json
import struct
import sys
import time
import types

import pytest
import yaml

from motionmae.config import ConfigError, FinetuneConfig, PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.train.finetune import finetune
from motionmae.train.pretrain import pretrain
from motionmae.train.wandb_logger import RUN_ID_FILE


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("wandb_videos"), num_train=4,
                                  num_val=2, frames=8, size=32, seed=3)


def _config(videos, out, *extra, cls=PretrainConfig):
    return load_config(cls, overrides=[
        f"data.train={videos.train_list}", f"run.out={out}", "data.frames=4", "data.stride=1",
        "data.size=32", "data.workers=0", "model.depth=1", "run.batch_size=2", "run.steps=3",
        "run.log_every=1", "run.wandb=true", *extra])


class FakeRun:
    def __init__(self, kwargs: dict, run_id: str) -> None:
        self.kwargs = kwargs
        self.id = kwargs["id"] or run_id
        self.logged: list[tuple[int, dict]] = []
        self.exit_code: int | None = None

    def log(self, data: dict, step: int) -> None:
        assert self.exit_code is None, "logged after finish"
        self.logged.append((step, dict(data)))

    def finish(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code


@pytest.fixture
def fake_wandb(monkeypatch):
    """A ``wandb`` module whose ``init`` records its arguments; ``.runs`` lists the runs."""
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**kwargs):
        run = FakeRun(kwargs, run_id=f"fake{len(module.runs)}")
        module.runs.append(run)
        return run

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_records_config_and_run_id(videos, tmp_path, fake_wandb):
    out = tmp_path / "run"
    pretrain(_config(videos, out, "run.wandb_project=proj", "run.wandb_mode=offline"))
    (run,) = fake_wandb.runs
    assert run.kwargs["project"] == "proj" and run.kwargs["mode"] == "offline"
    assert run.kwargs["entity"] is None and run.kwargs["dir"] == str(out)
    assert run.kwargs["id"] is None and run.kwargs["resume"] is None
    assert run.kwargs["config"] == yaml.safe_load((out / "config.yaml").read_text())
    assert run.kwargs["config"]["run"]["wandb_project"] == "proj"
    records = _records(out)
    assert [step for step, _ in run.logged] == [r["step"] for r in records] == [1, 2, 3]
    for (_, logged), record in zip(run.logged, records, strict=True):
        assert {"loss", "loss/pixel", "lr", "grad_norm", "clips_per_s"} <= set(logged)
        assert "step" not in logged and "time" not in logged
        for name in ("loss", "loss/pixel", "lr"):
            assert logged[name] == pytest.approx(record[name], rel=1e-9)
    assert run.exit_code == 0
    assert (out / RUN_ID_FILE).read_text().strip() == "fake0"


def test_resume_continues_the_same_wandb_run(videos, tmp_path, fake_wandb):
    out = tmp_path / "run"
    pretrain(_config(videos, out, "run.steps=2"))
    pretrain(_config(videos, out, "run.steps=4"), resume=True)
    first, resumed = fake_wandb.runs
    assert resumed.kwargs["id"] == first.id == "fake0" and resumed.kwargs["resume"] == "allow"
    assert resumed.kwargs["config"]["run"]["steps"] == 4
    assert [step for step, _ in first.logged] == [1, 2]
    assert [step for step, _ in resumed.logged] == [3, 4]
    # A fresh run in the same folder (no --resume) is a new W&B run.
    pretrain(_config(videos, out, "run.steps=1"))
    assert fake_wandb.runs[2].kwargs["id"] is None
    assert (out / RUN_ID_FILE).read_text().strip() == "fake2"


def test_failed_training_marks_the_wandb_run_failed(videos, tmp_path, fake_wandb):
    def crash(record):
        raise RuntimeError("progress display broke")

    with pytest.raises(RuntimeError, match="progress display broke"):
        pretrain(_config(videos, tmp_path / "run"), on_log=crash)
    (run,) = fake_wandb.runs
    assert [step for step, _ in run.logged] == [] and run.exit_code == 1


def test_finetune_logs_its_config(videos, tmp_path, fake_wandb):
    out = tmp_path / "ft"
    finetune(_config(videos, out, "run.steps=2", "data.test_clips=1", "data.test_crops=1",
                     cls=FinetuneConfig))
    (run,) = fake_wandb.runs
    assert run.kwargs["config"]["finetune"]["checkpoint"] is None
    assert [step for step, _ in run.logged] == [1, 2] and run.exit_code == 0


def test_off_by_default(videos, tmp_path, fake_wandb):
    pretrain(_config(videos, tmp_path / "run", "run.wandb=false", "run.steps=1"))
    assert fake_wandb.runs == [] and not (tmp_path / "run" / RUN_ID_FILE).exists()


def test_missing_package_fails_before_the_first_step(videos, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    with pytest.raises(ImportError, match=r"run\.wandb: needs the wandb package \(pip install "
                                          r"wandb"):
        pretrain(_config(videos, tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_has_no_key_for_an_api_key_and_checks_the_mode():
    with pytest.raises(ConfigError, match=r"run\.wandb_api_key"):
        load_config(PretrainConfig, overrides=["run.wandb_api_key=secret"])
    with pytest.raises(ConfigError, match=r"run\.wandb_mode: must be online, offline or null"):
        load_config(PretrainConfig, overrides=["run.wandb_mode=disabled"])


def _history(run_file) -> list[dict]:
    """History rows of a W&B transaction log (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    raw, block, pos, pieces, rows = run_file.read_bytes(), 32768, 7, [], []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        pieces.append(raw[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            pieces = []
            if record.WhichOneof("record_type") == "history":
                rows.append({"/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def test_real_wandb_offline(videos, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "run"
    pretrain(_config(videos, out, "run.steps=1", "run.wandb_mode=offline"))
    time.sleep(1)  # W&B names a local run folder by the second it started
    pretrain(_config(videos, out, "run.steps=2", "run.wandb_mode=offline"), resume=True)
    run_id = (out / RUN_ID_FILE).read_text().strip()
    files = sorted((out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 2  # the first run and its resumption, under one id
    rows = [row for f in files for row in _history(f)]
    records = _records(out)
    assert [row["_step"] for row in rows] == [r["step"] for r in records] == [1, 2]
    for row, record in zip(rows, records, strict=True):
        assert row["loss"] == pytest.approx(record["loss"], rel=1e-6)
        assert row["loss/pixel"] == pytest.approx(record["loss/pixel"], rel=1e-6)

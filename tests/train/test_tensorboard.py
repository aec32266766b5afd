"""``run.tensorboard``: the logged records also land in TensorBoard event files."""

import json
import sys

import pytest

from motionmae.config import PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.train.pretrain import pretrain
from motionmae.train.tensorboard import TensorBoardWriter


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("tb_videos"), num_train=4, num_val=0,
                                  frames=8, size=32, seed=2)


def _config(videos, out, *extra):
    return load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={out}", "data.frames=4", "data.stride=1",
        "data.size=32", "data.workers=0", "model.depth=1", "model.decoder_depth=1",
        "run.batch_size=2", "run.steps=3", "run.log_every=1", *extra])


def test_scalars_match_metrics_jsonl(videos, tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    pretrain(_config(videos, tmp_path / "run", "run.tensorboard=true"))
    records = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    events = accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"loss", "loss/pixel", "lr", "grad_norm", "clips_per_s"} <= set(events.Tags()["scalars"])
    assert "time" not in events.Tags()["scalars"] and "step" not in events.Tags()["scalars"]
    for name in ("loss", "lr"):
        scalars = events.Scalars(name)
        assert [s.step for s in scalars] == [r["step"] for r in records] == [1, 2, 3]
        assert [s.value for s in scalars] == pytest.approx([r[name] for r in records], rel=1e-6)


def test_off_by_default_writes_nothing(videos, tmp_path):
    pretrain(_config(videos, tmp_path / "run"))
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_missing_package_names_the_option(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ImportError, match=r"run\.tensorboard: needs the tensorboard package"):
        TensorBoardWriter(tmp_path / "tb")

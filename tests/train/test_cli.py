"""The command line end to end on tiny settings (in-process, through ``cli.main``)."""

import json

import numpy as np
import pytest

from motionmae.cli import main
from motionmae.data import make_synthetic_dataset


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-videos")
    return make_synthetic_dataset(root, num_train=8, num_val=4, frames=8, size=32, seed=2)


@pytest.fixture(scope="module")
def run_dir(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-run") / "run"
    code = main([
        "pretrain", "--data", str(videos.train_list), "--out", str(out), "--frames", "4",
        "--size", "32", "--steps", "3", "--batch-size", "4", "--targets", "pixel,tracks",
        "--masking", "motion", "--set", "model.depth=1", "--set", "model.decoder_depth=1",
        "--set", "data.workers=0", "--set", "data.flip=false", "--set", "run.log_every=1",
    ])
    assert code == 0
    return out


def test_pretrain_writes_checkpoint_metrics_and_config(run_dir):
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert {"loss/pixel", "loss/tracks"} <= set(records[-1])
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_00000003"
    assert "tracks" in (run_dir / "config.yaml").read_text()


def test_features_probe_report_export(run_dir, videos, tmp_path, capsys):
    out = tmp_path / "val.npz"
    assert main(["features", "--checkpoint", str(run_dir), "--data", str(videos.val_list),
                 "--out", str(out), "--workers", "0"]) == 0
    with np.load(out) as data:
        assert data["features"].shape == (4, 192)
        assert len(data["paths"]) == 4
    assert main(["probe", "--checkpoint", str(run_dir), "--train", str(videos.train_list),
                 "--val", str(videos.val_list), "--kind", "knn", "--workers", "0",
                 "--out", str(run_dir / "eval" / "knn.json")]) == 0
    assert "knn probe: top-1" in capsys.readouterr().out
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "index.html").is_file()
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "hf"),
                 "--format", "hf"]) == 0
    assert (tmp_path / "hf" / "config.json").is_file()


def test_tracks_command(tmp_path, videos):
    video = next(p for p in (videos.train_list.parent).rglob("*.mp4"))
    out = tmp_path / "t.npz"
    assert main(["tracks", str(video), "--out", str(out), "--grid", "4",
                 "--draw", str(tmp_path / "t.mp4")]) == 0
    with np.load(out) as data:
        assert data["tracks"].shape == (8, 16, 2) and data["visible"].shape == (8, 16)
    assert (tmp_path / "t.mp4").stat().st_size > 0


def test_config_error_exits_2_and_names_key(videos, tmp_path, capsys):
    code = main(["pretrain", "--data", str(videos.train_list), "--out", str(tmp_path / "x"),
                 "--set", "masking.ratoi=0.5"])
    assert code == 2
    assert "masking.ratoi: unknown key" in capsys.readouterr().err


def test_an_epoch_counted_run_shows_its_length_in_the_bar(videos, tmp_path, capsys):
    """The bar appears at the first record; with --epochs its total is the run's length
    (8 videos / batch 4 = 2 steps an epoch, 2 epochs), known once the run has read its list."""
    capsys.readouterr()
    assert main(["pretrain", "--data", str(videos.train_list), "--out", str(tmp_path / "run"),
                 "--frames", "4", "--size", "32", "--epochs", "2", "--batch-size", "4",
                 "--set", "model.depth=1", "--set", "model.decoder_depth=1",
                 "--set", "data.workers=0", "--set", "run.log_every=1"]) == 0
    bar = [x for x in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if x.startswith("pretrain:")]
    assert bar and all("/4 [" in x for x in bar), bar

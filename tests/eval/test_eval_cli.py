"""``motionmae finetune``, ``evaluate``, ``features --tokens`` and ``probe`` from cached
features, end to end through ``cli.main`` on tiny settings."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from motionmae.checkpoints.format import CheckpointError
from motionmae.cli import main
from motionmae.eval import load_classifier
from motionmae.models import VideoClassifier, create_encoder
from motionmae.tokens import TokenGrid

TINY = ["--set", "data.workers=0", "--set", "data.flip=false", "--set", "run.log_every=1"]


@pytest.fixture(scope="module")
def pretrained(tiny_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-pretrain") / "run"
    assert main(["pretrain", "--data", str(tiny_videos.train_list), "--out", str(out),
                 "--frames", "4", "--size", "32", "--steps", "1", "--batch-size", "3",
                 "--set", "model.depth=1", "--set", "model.decoder_depth=1", "--set",
                 "data.stride=2", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def finetuned(tiny_videos, pretrained, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-finetune") / "run"
    assert main(["finetune", "--checkpoint", str(pretrained), "--train",
                 str(tiny_videos.train_list), "--val", str(tiny_videos.val_list), "--out",
                 str(out), "--steps", "2", "--batch-size", "3", *TINY]) == 0
    return out


def test_finetune_inherits_the_checkpoint_geometry_and_evaluates(finetuned, capsys):
    config = yaml.safe_load((finetuned / "config.yaml").read_text())
    assert (config["data"]["frames"], config["data"]["size"], config["data"]["stride"]) == \
        (4, 32, 2)
    assert config["finetune"]["checkpoint"].endswith("run")
    assert (finetuned / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    report = json.loads((finetuned / "eval" / "val.json").read_text())
    assert len(report["predictions"]) == 9 and report["step"] == 2
    assert (finetuned / "eval" / "val.csv").is_file()


def test_evaluate_writes_metrics_and_predictions(finetuned, tiny_videos, tmp_path, capsys):
    out = tmp_path / "eval" / "val.json"
    assert main(["evaluate", "--checkpoint", str(finetuned), "--data",
                 str(tiny_videos.val_list), "--clips", "2", "--crops", "3", "--workers", "0",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "top-1" in printed and "2 clips x 3 crops" in printed
    report = json.loads(out.read_text())
    assert report["views"] == {"clips": 2, "crops": 3}
    assert report["classes"] == tiny_videos.classes
    assert len(report["metrics"]["confusion"]) == 9
    rows = list(csv.DictReader((tmp_path / "eval" / "val.csv").open()))
    assert [r["label_name"] for r in rows] == [line.split()[1] for line in
                                               tiny_videos.val_list.read_text().splitlines()]


def test_evaluate_needs_a_classifier(pretrained, tiny_videos, tmp_path, capsys):
    argv = ["evaluate", "--checkpoint", str(pretrained), "--data", str(tiny_videos.val_list),
            "--out", str(tmp_path / "x.json"), "--workers", "0"]
    assert main(argv) == 3  # a data error (motionmae.errors): one line, no traceback
    assert "no classification head" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no classification head"):
        main(["--debug", *argv])


def test_finetune_from_scratch_and_flag_errors(tiny_videos, pretrained, tmp_path, capsys):
    out = tmp_path / "scratch"
    assert main(["finetune", "--scratch", "--model", "tiny", "--train",
                 str(tiny_videos.train_list), "--out", str(out), "--steps", "1",
                 "--batch-size", "3", "--set", "data.frames=4", "--set", "data.size=32",
                 "--set", "model.depth=1", *TINY]) == 0
    assert (out / "checkpoints" / "latest").is_file() and not (out / "eval").exists()
    assert main(["finetune", "--checkpoint", str(pretrained), "--model", "tiny", "--train",
                 str(tiny_videos.train_list), "--out", str(out)]) == 2  # usage
    assert "--model applies to --scratch only" in capsys.readouterr().err
    code = main(["finetune", "--checkpoint", str(pretrained), "--train",
                 str(tiny_videos.train_list), "--out", str(tmp_path / "bad"),
                 "--set", "finetune.mixup=-1"])
    assert code == 2 and "finetune.mixup: must be >= 0" in capsys.readouterr().err


def test_probes_from_one_cached_token_pass(pretrained, tiny_videos, tmp_path, capsys):
    files = {}
    for split, listing in (("train", tiny_videos.train_list), ("val", tiny_videos.val_list)):
        files[split] = tmp_path / f"{split}.npz"
        assert main(["features", "--checkpoint", str(pretrained), "--data", str(listing),
                     "--out", str(files[split]), "--tokens", "--workers", "0"]) == 0
    with np.load(files["train"]) as data:
        assert data["features"].shape == (9, 2 * 2 * 2, 192)
        assert data["features"].dtype == np.float16
    out = tmp_path / "probes.json"
    assert main(["probe", "--features-train", str(files["train"]), "--features-val",
                 str(files["val"]), "--kind", "linear,knn,attentive", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for kind in ("linear", "knn", "attentive"):
        assert f"{kind} probe: top-1" in printed
    results = json.loads(out.read_text())
    assert [r["kind"] for r in results] == ["linear", "knn", "attentive"]
    assert all(r["num_train"] == 9 and r["num_val"] == 9 for r in results)
    capsys.readouterr()
    assert main(["probe", "--checkpoint", str(pretrained), "--features-train",
                 str(files["train"]), "--features-val", str(files["val"])]) == 2
    assert "motionmae probe: error: give either --checkpoint" in capsys.readouterr().err
    assert main(["probe", "--features-train", str(files["train"]), "--features-val",
                 str(files["val"]), "--kind", "linear,svm"]) == 2
    assert "--kind takes a comma-separated list" in capsys.readouterr().err


def test_evaluate_an_official_fine_tuned_videomae_file(tiny_videos, tmp_path, capsys):
    # A mean-pooling classifier (no final norm) saved in the official fine-tuned layout:
    # top-level encoder keys, fc_norm + head, fixed positions (not saved) -> 16 x 224 clips.
    torch.manual_seed(0)
    grid = TokenGrid(frames=16, height=224, width=224)
    model = VideoClassifier(create_encoder("tiny", grid, depth=1, difference_gain=0.0),
                            num_classes=5,
                            head_init_scale=1.0)
    model.encoder.norm = torch.nn.Identity()
    state = {k.removeprefix("encoder."): v for k, v in model.state_dict().items()}
    path = tmp_path / "videomae_finetuned.pth"
    torch.save({"model": state}, path)
    loaded, description = load_classifier(path)
    clip = torch.randn(1, 3, 16, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip), model.eval()(clip), atol=1e-5, rtol=1e-5)
    assert description["kind"] == "videomae" and description["classes"] is None
    listing = tmp_path / "numbers.txt"  # integer labels: the file has no class names
    entries = tiny_videos.val_list.read_text().splitlines()[:5]
    listing.write_text("".join(f"{tiny_videos.val_list.parent / e.split()[0]} {i}\n"
                               for i, e in enumerate(entries)))
    out = tmp_path / "official.json"
    assert main(["evaluate", "--checkpoint", str(path), "--data", str(listing), "--out",
                 str(out), "--workers", "0"]) == 0
    report = json.loads(out.read_text())
    assert len(report["predictions"]) == 5 and len(report["metrics"]["per_class"]) == 5

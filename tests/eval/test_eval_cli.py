"""``motionmae finetune``, ``evaluate``, ``features --tokens`` and ``probe`` from cached
features, end to end through ``cli.main`` on tiny settings; labels matched by class name."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from motionmae.checkpoints.format import CheckpointError
from motionmae.cli import main
from motionmae.data import read_video_list
from motionmae.errors import DATA
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
    assert main(["--debug", *argv]) == 3  # the traceback too, and the same status
    err = capsys.readouterr().err
    assert "Traceback" in err and f"{CheckpointError.__name__}: " in err


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
        assert data["classes"].tolist() == tiny_videos.classes
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


def test_probe_refuses_features_files_of_two_encoders(pretrained, finetuned, tiny_videos,
                                                       tmp_path, capsys, caplog):
    def features(checkpoint, listing, name, *extra):
        out = tmp_path / f"{name}.npz"
        assert main(["features", "--checkpoint", str(checkpoint), "--data", str(listing),
                     "--out", str(out), "--workers", "0", *extra]) == 0
        return str(out)

    train = features(pretrained, tiny_videos.train_list, "train")
    same = features(pretrained, tiny_videos.val_list, "val")
    other = features(finetuned, tiny_videos.val_list, "val-finetuned")
    views = features(pretrained, tiny_videos.val_list, "val-2-clips", "--clips", "2")
    capsys.readouterr()
    assert main(["probe", "--features-train", train, "--features-val", same]) == 0
    # The fine-tuned encoder makes features of the same size: only the origin tells.
    assert main(["probe", "--features-train", train, "--features-val", other]) == DATA
    err = capsys.readouterr().err
    assert "val-finetuned.npz: made by another encoder than" in err
    assert f"checkpoints {finetuned} and {pretrained}" in err
    # More views at test time is a choice: warned, not refused.
    assert main(["probe", "--features-train", train, "--features-val", views]) == 0
    assert any("averaged over other views" in r.getMessage() and "test_clips 2 against 1"
               in r.getMessage() for r in caplog.records)


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


def _without_class(listing, name, out):
    """``listing`` without the videos of class ``name`` (paths made absolute)."""
    lines = [line.split() for line in listing.read_text().splitlines()]
    out.write_text("".join(f"{listing.parent / path} {label}\n" for path, label in lines
                           if label != name))
    return out


def test_probe_scores_val_videos_by_class_name_not_list_position(pretrained, tiny_videos,
                                                                 tmp_path, capsys):
    # The training videos themselves as val: the probe fits them all. Without "down" (the
    # first name in sorted order) a list numbering its own names would shift every label.
    train = str(tiny_videos.train_list)
    reduced = _without_class(tiny_videos.train_list, "down", tmp_path / "no-down.txt")
    results = {}
    for name, val in (("full", train), ("reduced", str(reduced))):
        out = tmp_path / f"{name}.json"
        assert main(["probe", "--checkpoint", str(pretrained), "--train", train, "--val", val,
                     "--workers", "0", "--out", str(out)]) == 0
        results[name] = json.loads(out.read_text())
    assert results["full"]["top1"] == results["reduced"]["top1"] == 1.0
    assert results["reduced"]["num_val"] == 8
    printed = capsys.readouterr().out
    assert "(chance 1/9 = 11.1%, val majority class 11.1%; 9 train / 9 val clips)" in printed
    assert "(chance 1/9 = 11.1%, val majority class 12.5%; 9 train / 8 val clips)" in printed
    # Every val clip is a training video here: said on the line and in the JSON.
    assert results["full"]["val_from_train"] == 9 and results["reduced"]["val_from_train"] == 8
    assert "9 val clips)  NOT HELD OUT: 9 of 9 val clips are from training videos" in printed
    assert "NOT HELD OUT: 8 of 8 val clips are from training videos" in printed


def test_probe_and_finetune_on_held_out_videos_say_nothing_else(pretrained, tiny_videos,
                                                                tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert main(["probe", "--checkpoint", str(pretrained), "--train",
                 str(tiny_videos.train_list), "--val", str(tiny_videos.val_list),
                 "--workers", "0", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["val_from_train"] == 0
    assert "NOT HELD OUT" not in capsys.readouterr().out


def test_finetune_on_its_own_training_videos_says_the_score_is_not_held_out(
        pretrained, tiny_videos, tmp_path, capsys, caplog):
    # The validation list names the training videos by another path (relative, with "./").
    train = tiny_videos.train_list
    val = tmp_path / "val.txt"
    val.write_text("".join(f"{train.parent}/./{line}\n"
                           for line in train.read_text().splitlines()[:3]))
    out = tmp_path / "run"
    assert main(["finetune", "--checkpoint", str(pretrained), "--train", str(train), "--val",
                 str(val), "--out", str(out), "--steps", "1", "--batch-size", "3", *TINY]) == 0
    assert "NOT HELD OUT: 3 of 3 val videos are in the training list" in capsys.readouterr().out
    assert json.loads((out / "eval" / "val.json").read_text())["val_from_train"] == 3
    assert any("3 of 3 videos are also in" in r.getMessage() for r in caplog.records)


def test_label_errors_are_one_line_before_any_video_is_decoded(pretrained, finetuned,
                                                                tiny_videos, tmp_path, capsys,
                                                                caplog):
    # Every list names a video that does not exist: the label check must come first.
    unknown = tmp_path / "unknown.txt"
    unknown.write_text(f"{tmp_path / 'missing.mp4'} jump\n"
                       + tiny_videos.val_list.read_text().replace("000000.mp4", "x"))
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text(f"{tmp_path / 'missing.mp4'}\n")
    train = str(tiny_videos.train_list)
    cases = {
        "probe": (["--checkpoint", str(pretrained), "--train", train, "--val", str(unknown)],
                  f"{unknown}: class 'jump' unknown to {train} (its classes: down, left, "
                  "right, rotate_ccw, rotate_cw and 4 more)"),
        "evaluate": (["--checkpoint", str(finetuned), "--data", str(unknown), "--out",
                      str(tmp_path / "e.json")],
                     f"{unknown}: class 'jump' unknown to {finetuned}"),
        "finetune": (["--checkpoint", str(pretrained), "--train", train, "--val",
                      str(unknown), "--out", str(tmp_path / "ft"), "--steps", "1", *TINY],
                     f"{unknown}: class 'jump' unknown to {train}"),
    }
    for command, (argv, message) in cases.items():
        capsys.readouterr()
        assert main([command, *argv, "--workers", "0"] if command != "finetune"
                    else [command, *argv]) == DATA, command
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("motionmae ")]
        assert "Traceback" not in err and len(errors) == 1, err
        assert errors[0].startswith(f"motionmae {command}: error: {message}"), err
    # A val list that shares videos with train and has an unknown class: the error alone,
    # no warning about the shared videos first (the command ends anyway).
    shared = tmp_path / "shared.txt"
    first = read_video_list(tiny_videos.train_list).entries[0]
    shared.write_text(f"{first.path} down\n{tmp_path / 'missing.mp4'} jump\n")
    capsys.readouterr()
    with caplog.at_level("WARNING"):
        assert main(["probe", "--checkpoint", str(pretrained), "--train", train, "--val",
                     str(shared), "--workers", "0"]) == DATA
    assert "class 'jump' unknown" in capsys.readouterr().err
    assert not any("also in" in r.getMessage() for r in caplog.records), caplog.text
    assert main(["probe", "--checkpoint", str(pretrained), "--train", str(unlabelled),
                 "--val", train, "--workers", "0"]) == DATA
    assert capsys.readouterr().err == (f"motionmae probe: error: {unlabelled}: 1 of 1 videos "
                                       "have no label; a probe needs a label for every "
                                       "video\n")


def test_evaluate_scores_the_same_videos_the_same_without_a_class(finetuned, tiny_videos,
                                                                  tmp_path):
    rows = {}
    reduced = _without_class(tiny_videos.val_list, "down", tmp_path / "no-down.txt")
    for name, listing in (("full", tiny_videos.val_list), ("reduced", reduced)):
        assert main(["evaluate", "--checkpoint", str(finetuned), "--data", str(listing),
                     "--workers", "0", "--out", str(tmp_path / f"{name}.json")]) == 0
        report = json.loads((tmp_path / f"{name}.json").read_text())
        rows[name] = {r["path"]: (r["label_name"], r["prediction_name"], r["correct"])
                      for r in report["predictions"]}
    assert len(rows["reduced"]) == 8
    assert rows["reduced"] == {p: r for p, r in rows["full"].items() if r[0] != "down"}


def test_probe_refuses_a_pickled_features_file_in_one_line(tmp_path, capsys):
    payload = np.empty(1, dtype=object)
    payload[0] = {"a": 1}
    path = tmp_path / "train.npz"
    np.savez(path, features=payload, labels=np.zeros(1, np.int64), paths=np.asarray(["a"]))
    assert main(["probe", "--features-train", str(path), "--features-val", str(path)]) == DATA
    err = capsys.readouterr().err
    assert err.startswith(f"motionmae probe: error: {path}: refused: an array of Python "
                          "objects is never loaded") and len(err.splitlines()) == 1

"""Fine-tuning: loss, optimizer groups, initialisation, the run end to end with exact resume,
the final evaluation (by the command, after training)."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motionmae.api import load_encoder
from motionmae.checkpoints.format import CheckpointError, latest_checkpoint
from motionmae.cli import main
from motionmae.config import ConfigError, FinetuneConfig, PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset, read_video_list
from motionmae.data.mixing import smooth_targets
from motionmae.eval import evaluate_videos, load_classifier
from motionmae.models import DropPath, VideoClassifier, create_encoder
from motionmae.tokens import TokenGrid
from motionmae.train.finetune import (
    build_task,
    evaluate_finetuned,
    finetune,
    set_drop_path,
    soft_target_cross_entropy,
)
from motionmae.train.optim import build_optimizer
from motionmae.train.pretrain import pretrain

COMMON = ["data.frames=4", "data.stride=2", "data.size=32", "data.flip=false",
          "data.workers=0", "run.log_every=1", "optim.warmup_fraction=0.0", "optim.lr=1e-3"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune-videos")
    return make_synthetic_dataset(root, num_train=12, num_val=9, frames=12, size=32, seed=5)


@pytest.fixture(scope="module")
def pretrained(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "run"
    pretrain(load_config(PretrainConfig, overrides=[
        *COMMON, f"data.train={videos.train_list}", f"run.out={out}", "model.depth=2",
        "model.decoder_depth=1", "run.batch_size=4", "run.steps=2"]))
    return out


def _config(videos, out, *extra) -> FinetuneConfig:
    return load_config(FinetuneConfig, overrides=[
        *COMMON, f"data.train={videos.train_list}", f"data.val={videos.val_list}",
        f"run.out={out}", "model.depth=2", "run.batch_size=4", *extra])


def test_soft_target_cross_entropy_matches_torch():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    torch.testing.assert_close(soft_target_cross_entropy(logits, F.one_hot(labels, 5).float()),
                               F.cross_entropy(logits, labels))
    torch.testing.assert_close(
        soft_target_cross_entropy(logits.bfloat16(), smooth_targets(labels, 5, 0.1)),
        F.cross_entropy(logits.bfloat16().float(), labels, label_smoothing=0.1))


def test_layer_decay_gives_each_depth_its_learning_rate(videos, tmp_path):
    cfg = _config(videos, tmp_path, "finetune.layer_decay=0.5", "model.depth=3")
    task = build_task(cfg, num_classes=9, classes=None)
    optimizer = build_optimizer(task.parameter_groups(0.05), cfg.optim, lr=0.8)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups
             for p in g["params"]}
    named = dict(task.model.named_parameters())
    expected = {  # depth 3: embedding 0, blocks 1..3, head 4 -> 0.8 * 0.5 ** (4 - depth)
        "encoder.patch_embed.proj.weight": (0.8 * 0.5**4, 0.05),
        "encoder.patch_embed.proj.bias": (0.8 * 0.5**4, 0.0),
        "encoder.blocks.0.attn.qkv.weight": (0.8 * 0.5**3, 0.05),
        "encoder.blocks.1.mlp.fc1.weight": (0.8 * 0.5**2, 0.05),
        "encoder.blocks.2.norm1.weight": (0.8 * 0.5, 0.0),
        "encoder.norm.weight": (0.8, 0.0),
        "fc_norm.bias": (0.8, 0.0),
        "head.weight": (0.8, 0.05),
    }
    for name, (lr, decay) in expected.items():
        assert lr_of[id(named[name])] == (pytest.approx(lr), decay), name
    assert len(lr_of) == len(named)  # every parameter is optimised


def test_drop_path_rises_linearly_over_the_blocks(videos, tmp_path):
    task = build_task(_config(videos, tmp_path, "model.depth=3", "finetune.drop_path=0.2"),
                      9, None)
    blocks = task.model.encoder.blocks
    assert not isinstance(blocks[0].drop_path, DropPath)
    assert [b.drop_path.p for b in blocks[1:]] == [pytest.approx(0.1), pytest.approx(0.2)]
    set_drop_path(task.model.encoder, 0.0)
    assert not any(isinstance(b.drop_path, DropPath) for b in blocks)


def test_start_from_a_pretraining_run(videos, pretrained, tmp_path):
    cfg = _config(videos, tmp_path, f"finetune.checkpoint={pretrained}")
    task = build_task(cfg, 9, None)
    init = load_encoder(pretrained).state_dict()
    for name, value in task.model.encoder.state_dict().items():
        torch.testing.assert_close(value, init[name], msg=name)
    assert task.model.head.weight.abs().max() < 1e-3  # small head
    assert task.describe()["init"] == {"checkpoint": str(pretrained), "kind": "pretrain"}
    with pytest.raises(ConfigError, match=r"data.size: clips of 4 frames at 64 px do not match"):
        build_task(_config(videos, tmp_path, f"finetune.checkpoint={pretrained}",
                           "data.size=64"), 9, None)


def test_duplicate_keys_are_rejected_with_their_name(videos, tmp_path):
    with pytest.raises(ConfigError, match=r"model\.drop_path: fine-tuning sets stochastic depth"):
        _config(videos, tmp_path, "model.drop_path=0.1")
    with pytest.raises(ConfigError, match=r"optim\.layer_decay: fine-tuning sets layer-wise"):
        _config(videos, tmp_path, "optim.layer_decay=0.75")


def _losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


SPLIT = ["run.steps=4", "run.ckpt_every=2", "run.keep_every=2", "finetune.erasing.prob=0.5"]


def test_finetune_resumes_exactly_and_evaluates(videos, pretrained, tmp_path):
    init = f"finetune.checkpoint={pretrained}"
    full = tmp_path / "full"
    finetune(_config(videos, full, init, "run.steps=4", "finetune.erasing.prob=0.5"))
    split = tmp_path / "split"
    finetune(_config(videos, split, init, *SPLIT))
    # A crash after step 2: drop the later checkpoint and log lines, then resume.
    ckpts = split / "checkpoints"
    shutil.rmtree(latest_checkpoint(ckpts).path)
    (ckpts / "latest").write_text("step_00000002\n")
    lines = (split / "metrics.jsonl").read_text().splitlines()[:2]
    (split / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    cfg = _config(videos, split, init, *SPLIT)
    result = finetune(cfg, resume=True)
    assert result.train.state.step == 4
    a, b = _losses(full), _losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 5))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    wa = latest_checkpoint(full / "checkpoints").weights()
    wb = latest_checkpoint(ckpts).weights()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)
    # The final model, evaluated on data.val; the checkpoint reloads as the same model.
    evaluation = evaluate_finetuned(cfg, result)
    report = json.loads((split / "eval" / "val.json").read_text())
    assert report["step"] == 4 and len(report["predictions"]) == 9
    assert report["metrics"]["top1"] == pytest.approx(evaluation.metrics.top1)
    model, description = load_classifier(split)
    assert description["classes"] == videos.classes and description["kind"] == "finetune"
    again = evaluate_videos(model, read_video_list(videos.val_list), cfg.data, batch_size=9)
    np.testing.assert_allclose(again.predictions.probs, evaluation.predictions.probs,
                               atol=1e-6)
    # load_encoder reads a fine-tuned checkpoint's encoder like a pretrained one's
    assert load_encoder(split)(torch.randn(1, 3, 4, 32, 32)).shape == (1, 2 * 2 * 2, 192)


def test_finetune_trains_only_and_the_command_evaluates(videos, tmp_path, caplog):
    settings = [*COMMON, "model.depth=2", "run.steps=1"]
    lib = tmp_path / "library"
    cfg = _config(videos, lib, *settings)
    result = finetune(cfg)
    assert len(result.val_videos) == 9 and not (lib / "eval").exists()  # data.val read only
    evaluation = evaluate_finetuned(cfg, result)
    assert evaluation is not None and (lib / "eval" / "val.csv").is_file()
    # The command trains then evaluates, the same model on the same videos.
    cli = tmp_path / "command"
    with caplog.at_level(logging.DEBUG):
        assert main(["finetune", "--scratch", "--train", str(videos.train_list), "--val",
                     str(videos.val_list), "--out", str(cli), "--batch-size", "4",
                     *(arg for s in settings for arg in ("--set", s))]) == 0
    messages = [r.getMessage() for r in caplog.records]
    evaluated = next(i for i, m in enumerate(messages) if m.startswith("val ("))
    done = next(i for i, m in enumerate(messages) if m.startswith("done: 1 steps"))
    assert evaluated < done  # evaluated inside the run, before it says it is done
    ours, theirs = (json.loads((out / "eval" / "val.json").read_text()) for out in (lib, cli))
    assert ours.pop("checkpoint") == str(lib / "checkpoints" / "step_00000001")
    assert theirs.pop("checkpoint") == str(cli / "checkpoints" / "step_00000001")
    assert ours == theirs and ours["step"] == 1 and len(ours["predictions"]) == 9
    assert (lib / "eval" / "val.csv").read_text() == (cli / "eval" / "val.csv").read_text()


def test_loss_falls_when_fitting_few_videos_without_augmentation(videos, tmp_path):
    four = tmp_path / "four.txt"  # 4 videos of 4 classes: every step sees all of them
    lines = videos.train_list.read_text().splitlines()[:4]
    four.write_text("".join(f"{videos.train_list.parent / line}\n" for line in lines))
    cfg = _config(videos, tmp_path / "fit", f"data.train={four}", "data.val=null",
                  "run.steps=24", "data.scales=[1.0]", "finetune.mixup=0", "finetune.cutmix=0",
                  "finetune.smoothing=0", "finetune.randaugment.num_ops=0",
                  "finetune.erasing.prob=0", "finetune.drop_path=0", "optim.lr=2e-3",
                  "optim.weight_decay=0")
    result = finetune(cfg)
    losses = [r["loss"] for r in result.train.history]
    assert losses[0] == pytest.approx(1.386, abs=0.05)  # ln 4: the small head starts uniform
    assert sum(losses[-5:]) / 5 < 0.3 * losses[0], losses


def test_bf16_step_and_pretraining_checkpoint_has_no_head(videos, pretrained, tmp_path):
    cfg = _config(videos, tmp_path / "bf16", "run.steps=1", "run.precision=bf16",
                  "data.val=null")
    result = finetune(cfg)
    assert evaluate_finetuned(cfg, result) is None and torch.isfinite(torch.tensor(
        result.train.history[-1]["loss"]))
    with pytest.raises(CheckpointError, match="'pretrain' checkpoint has no classification"):
        load_classifier(pretrained)


def test_torchrun_two_ranks_finetune(videos, tmp_path):
    from test_distributed import torchrun  # the launcher the pretraining tests use

    out = tmp_path / "ddp"
    torchrun("-m", "motionmae", "finetune", "--scratch", "--train", str(videos.train_list),
             "--val", str(videos.val_list), "--out", str(out), "--steps", "2",
             "--batch-size", "2", "--set", "model.depth=1", "--set", "data.frames=4",
             "--set", "data.size=32", "--set", "data.workers=0", "--set", "run.log_every=1",
             "--set", "data.flip=false")
    assert [r["step"] for r in map(json.loads, (out / "metrics.jsonl").open())] == [1, 2]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    assert len(json.loads((out / "eval" / "val.json").read_text())["predictions"]) == 9


def test_start_from_an_official_file_without_final_norm(videos, tmp_path):
    # An official fine-tuned layout (mean pooling: fc_norm, no final norm, fixed positions)
    # is built at the run's clip size; the fine-tuned checkpoint remembers the missing norm.
    torch.manual_seed(0)
    source = VideoClassifier(create_encoder("tiny", TokenGrid(16, 224, 224), depth=1), 3)
    source.encoder.norm = torch.nn.Identity()
    path = tmp_path / "official.pth"
    torch.save({"model": {k.removeprefix("encoder."): v
                          for k, v in source.state_dict().items()}}, path)
    out = tmp_path / "from-official"
    finetune(_config(videos, out, f"finetune.checkpoint={path}", "run.steps=1",
                     "data.val=null"))
    model, description = load_classifier(out)
    assert description["encoder"] == {"final_norm": False, "layer_norm_eps": 1e-6}
    assert isinstance(model.encoder.norm, torch.nn.Identity)
    assert model.encoder.grid == TokenGrid(4, 32, 32)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():  # the encoder (blocks only, no norm) as the checkpoint stores it
        torch.testing.assert_close(load_encoder(out)(clip), model.encoder(clip))

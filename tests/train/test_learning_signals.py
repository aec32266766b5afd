"""What tells a user a run learns: the peak learning rate rule at any batch, the trivial
predictor's loss and the fraction explained in the records, and in-run linear probes."""

import json
import math
import re
from pathlib import Path

import pytest

from motionmae.config import ConfigError, OptimConfig, PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.train.pretrain import pretrain
from motionmae.viz.report import build_report

RECIPES = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(root, num_train=12, num_val=6, frames=12, size=32, seed=1)


def _config(videos, out, *extra) -> PretrainConfig:
    return load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={out}", "data.frames=4", "data.stride=2",
        "data.size=32", "data.workers=0", "model.depth=2", "model.decoder_depth=1",
        "run.batch_size=4", "run.log_every=1", "run.device=cpu", "optim.warmup_fraction=0.0",
        *extra])


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# The peak learning rate


@pytest.mark.parametrize(("batch", "expected"), [
    (8, 3e-4),         # sqrt: 1.5e-4 * sqrt(8/256) = 2.65e-5, raised to the floor 3e-4
    (64, 3e-4),        # sqrt: 7.5e-5, floor
    (256, 1.5e-4),     # the reference batch: base_lr, the floor no longer applies
    (2048, 1.2e-3),    # linear above: 1.5e-4 * 8, the VideoMAE recipe's rate
])
def test_default_rule(batch, expected):
    assert OptimConfig().peak_lr(batch) == pytest.approx(expected)


@pytest.mark.parametrize(("batch", "linear", "sqrt"), [
    (8, 1.5e-4 * 8 / 256, 1.5e-4 * math.sqrt(8 / 256)),
    (64, 1.5e-4 / 4, 1.5e-4 / 2),
    (256, 1.5e-4, 1.5e-4),
    (2048, 1.2e-3, 1.2e-3),
])
def test_rules_without_a_floor(batch, linear, sqrt):
    assert OptimConfig(lr_scaling="linear", min_peak_lr=None).peak_lr(batch) == pytest.approx(
        linear)
    assert OptimConfig(lr_scaling="sqrt", min_peak_lr=None).peak_lr(batch) == pytest.approx(sqrt)


def test_floor_reference_batch_and_explicit_lr():
    # The floor may lift a small batch above base_lr ("constant below the reference")...
    assert OptimConfig(min_peak_lr=1e-3).peak_lr(8) == pytest.approx(1e-3)
    assert OptimConfig(min_peak_lr=1e-3).peak_lr(255) == pytest.approx(1e-3)
    assert OptimConfig(min_peak_lr=5e-5).peak_lr(8) == pytest.approx(5e-5)
    assert OptimConfig(min_peak_lr=5e-5).peak_lr(64) == pytest.approx(7.5e-5)  # sqrt above it
    # Fine-tuning's default base_lr 1e-3: sqrt above the floor from batch 24 on.
    assert OptimConfig(base_lr=1e-3).peak_lr(64) == pytest.approx(5e-4)
    # ...but only below the reference batch: at and above it the papers' rule holds.
    assert OptimConfig(min_peak_lr=1e-3).peak_lr(256) == pytest.approx(1.5e-4)
    assert OptimConfig(base_lr=1e-5, min_peak_lr=1e-3).peak_lr(512) == pytest.approx(2e-5)
    assert OptimConfig(reference_batch=16, lr_scaling="linear", min_peak_lr=None).peak_lr(
        64) == pytest.approx(6e-4)
    assert OptimConfig(lr=3e-3).peak_lr(8) == OptimConfig(lr=3e-3).peak_lr(4096) == 3e-3


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*pretrain.yaml")), ids=lambda p: p.stem)
def test_paper_recipes_keep_their_papers_rate(path):
    # Each recipe's header states its global batch; its papers scale 1.5e-4 linearly by
    # batch / 256 at any batch (TrackMAE's global 128 included).
    cfg = load_config(PretrainConfig, path)
    batch = int(re.search(r"^# Per-GPU batch: \d+ \(global (\d+)", path.read_text(),
                          re.M).group(1))
    assert cfg.optim.peak_lr(batch) == pytest.approx(cfg.optim.base_lr * batch / 256)
    assert cfg.optim.base_lr == 1.5e-4


def test_rule_is_described():
    assert OptimConfig().lr_rule(8) == ("peak lr 3.00e-04 (base_lr 1.50e-04, sqrt scaling "
                                        "below batch 256, floor 3.00e-04, global batch 8)")
    assert OptimConfig().lr_rule(2048) == ("peak lr 1.20e-03 (base_lr 1.50e-04, linear scaling "
                                           "at and above batch 256, global batch 2048)")
    assert OptimConfig(lr=1e-3).lr_rule(8) == "peak lr 1.00e-03 (optim.lr, global batch 8)"


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lr_scaling=cubic", r"optim\.lr_scaling: must be one of \['linear', 'sqrt'\]"),
    ("optim.reference_batch=0", r"optim\.reference_batch: must be >= 1"),
    ("optim.min_peak_lr=0", r"optim\.min_peak_lr: must be > 0 or null"),
])
def test_rule_settings_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, overrides=[override])


def test_pretrain_logs_the_peak_lr_and_its_rule(videos, tmp_path, caplog):
    cfg = _config(videos, tmp_path / "run", "run.steps=1", "optim.accum_steps=2")
    with caplog.at_level("INFO", logger="motionmae.train.pretrain"):
        result = pretrain(cfg)
    assert ("peak lr 3.00e-04 (base_lr 1.50e-04, sqrt scaling below batch 256, floor "
            "3.00e-04, global batch 8)") in caplog.text
    assert result.history[0]["lr"] == pytest.approx(3e-4)  # what the schedule used


# ---------------------------------------------------------------------------------------------
# The trivial predictor in the records


def test_records_hold_trivial_loss_and_explained_fraction(videos, tmp_path):
    run = tmp_path / "run"
    pretrain(_config(videos, run, "run.steps=3", "targets.names=[pixel,hog]"))
    records = _records(run)
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        for name in ("pixel", "hog"):
            loss, trivial = record[f"loss/{name}"], record[f"trivial/{name}"]
            assert trivial > 0
            # One step per record: the logged fraction is that step's 1 - loss / trivial.
            assert record[f"explained/{name}"] == pytest.approx(1 - loss / trivial, rel=1e-5)
    # norm-pix targets are z-scored per patch: the batch mean is ~0 and the variance ~1.
    assert records[0]["trivial/pixel"] == pytest.approx(1.0, abs=0.1)


def test_a_visible_target_adds_its_visible_loss(videos):
    """``targets.visible``: the step's loss is the hidden tokens' losses plus
    ``visible_weight`` x the target's weight x its loss on the visible tokens; the other
    targets and the hidden losses are as without it."""
    import torch

    from motionmae.train.pretrain import PretrainTask

    def step_loss(*extra):
        cfg = _config(videos, "unused", "targets.names=[pixel,hog]", "masking.kind=tube", *extra)
        task = PretrainTask(cfg.resolve(num_videos=cfg.run.batch_size))
        torch.manual_seed(0)
        task.model.load_state_dict(reference)
        batch = {"clip": torch.randn(4, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))}
        return task.loss(task.model, batch, torch.Generator().manual_seed(2))

    cfg = _config(videos, "unused", "targets.names=[pixel,hog]", "masking.kind=tube")
    reference = PretrainTask(cfg.resolve(num_videos=cfg.run.batch_size)).model.state_dict()
    base, base_parts = step_loss()
    total, parts = step_loss("targets.visible=[hog]", "targets.visible_weight=0.5")
    assert set(parts) - set(base_parts) == {"loss_visible/hog"}
    for name in base_parts:
        torch.testing.assert_close(parts[name], base_parts[name])
    torch.testing.assert_close(total, base + 0.5 * parts["loss_visible/hog"])
    assert parts["loss_visible/hog"] > 0


# ---------------------------------------------------------------------------------------------
# In-run probes


def test_probe_needs_both_lists_and_a_logged_step():
    with pytest.raises(ConfigError, match=r"run\.probe_train: a labelled list file is required "
                                          r"with run\.probe_every"):
        load_config(PretrainConfig, overrides=["run.probe_every=10"])
    with pytest.raises(ConfigError, match=r"run\.probe_val: a labelled list file is required"):
        load_config(PretrainConfig, overrides=["run.probe_every=10", "run.probe_train=a.txt"])
    with pytest.raises(ConfigError, match=r"run\.probe_every: must be a multiple of "
                                          r"run\.log_every 10"):
        load_config(PretrainConfig, overrides=["run.probe_every=15", "run.probe_train=a.txt",
                                               "run.probe_val=b.txt"])


def test_run_with_probe_every_logs_probe_accuracy(videos, tmp_path):
    run = tmp_path / "run"
    cfg = _config(videos, run, "run.steps=3", "run.probe_every=2",
                  f"run.probe_train={videos.train_list}", f"run.probe_val={videos.val_list}")
    result = pretrain(cfg)
    records = _records(run)
    probed = {r["step"]: r["probe/linear"] for r in records if "probe/linear" in r}
    assert sorted(probed) == [2, 3]  # every 2 steps, and the last one
    # Top-1 on the 6 val clips: a multiple of 1/6.
    for accuracy in probed.values():
        assert 0 <= accuracy <= 1 and (accuracy * 6) == pytest.approx(round(accuracy * 6))
    assert all("loss" in r for r in records)  # probes join the step's record
    assert result.history == records
    page = build_report(run).read_text()
    assert "probe.png" in page and "in-run probe/linear" in page


def test_probe_restores_the_encoder_mode(videos):
    import torch

    from motionmae.eval.probing import TrainingProbe
    from motionmae.train.pretrain import PretrainTask

    cfg = _config(videos, "unused")
    task = PretrainTask(cfg.resolve(num_videos=cfg.run.batch_size))
    probe = TrainingProbe.for_pretraining(task.describe(), videos.train_list, videos.val_list,
                                          workers=0, batch_size=6, precision="fp32")
    encoder = task.model.encoder
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.train()
    values = probe(encoder, torch.device("cpu"))
    assert encoder.training  # extract_features switched it to eval mode for the features
    assert set(values) == {"probe/linear"} and 0 <= values["probe/linear"] <= 1
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key]), key  # frozen: no weight changed

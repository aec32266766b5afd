"""End-to-end behaviour of the training loop on tiny synthetic videos."""

import json
from importlib import metadata

import pytest
import torch

from motionmae.checkpoints.format import latest_checkpoint
from motionmae.config import PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.train.pretrain import pretrain


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(root, num_train=12, num_val=6, frames=12, size=32, seed=1)


def _config(videos, out, **extra) -> PretrainConfig:
    overrides = [
        f"data.train={videos.train_list}",
        f"run.out={out}",
        "data.frames=4",
        "data.stride=2",
        "data.size=32",
        "data.flip=false",
        "data.workers=0",
        "model.depth=2",
        "model.decoder_depth=1",
        "run.batch_size=4",
        "run.log_every=1",
        "optim.lr=1e-3",
        "optim.warmup_fraction=0.0",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_config(PretrainConfig, overrides=overrides)


def _losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records}


SPLIT = {"run.steps": 8, "run.ckpt_every": 4, "run.keep_every": 4}


def test_resume_continues_exactly(videos, tmp_path):
    full = tmp_path / "full"
    pretrain(_config(videos, full, **{"run.steps": 8}))
    split = tmp_path / "split"
    pretrain(_config(videos, split, **SPLIT))
    # Simulate a crash after step 4: drop the later checkpoint and metrics, then resume.
    ckpts = split / "checkpoints"
    latest = latest_checkpoint(ckpts)
    assert latest.step == 8
    import shutil

    shutil.rmtree(latest.path)
    (ckpts / "latest").write_text("step_00000004\n")
    lines = (split / "metrics.jsonl").read_text().splitlines()[:4]
    (split / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    result = pretrain(_config(videos, split, **SPLIT),
                      resume=True)
    assert result.state.step == 8
    a, b = _losses(full), _losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    wa = latest_checkpoint(full / "checkpoints").weights()
    wb = latest_checkpoint(ckpts).weights()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def test_resume_without_checkpoint_is_an_error(videos, tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        pretrain(_config(videos, tmp_path / "empty", **{"run.steps": 2}), resume=True)


def test_overfit_one_batch_drives_loss_down(videos, tmp_path):
    # A dataset of one video, seen again and again: the pixel loss must fall a lot.
    one = tmp_path / "one.txt"
    first = videos.train_list.read_text().splitlines()[0]
    path, _, label = first.partition(" ")
    from pathlib import Path

    source = Path(path) if Path(path).is_absolute() else videos.train_list.parent / path
    one.write_text("\n".join([f"{source} {label}"] * 4) + "\n")
    cfg = _config(videos, tmp_path / "overfit", **{
        "run.steps": 100, "data.train": str(one), "data.scales": "[1.0]",
        "masking.ratio": 0.5, "optim.lr": 3e-3, "optim.weight_decay": 0.0,
    })
    result = pretrain(cfg)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < 0.4 * losses[0], losses


def test_same_seed_same_curve(videos, tmp_path):
    a = pretrain(_config(videos, tmp_path / "a", **{"run.steps": 3}))
    b = pretrain(_config(videos, tmp_path / "b", **{"run.steps": 3}))
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]


def test_run_records_its_environment_for_the_report(videos, tmp_path):
    from motionmae.viz.runfiles import environment

    pretrain(_config(videos, tmp_path / "run", **{"run.steps": 1}))
    recorded = json.loads((tmp_path / "run" / "env.json").read_text())
    assert recorded["device"] == "cpu" and recorded["world size"] == 1
    assert recorded["torch"] == metadata.version("torch")
    values, source = environment(tmp_path / "run")
    assert values == recorded and "recorded by the training run" in source


def _rewrite_saved_description(checkpoint, description: dict) -> None:
    """Write ``description`` as the checkpoint's config.json, as an older version wrote it
    (the manifest's size and hash updated, so it still verifies)."""
    from motionmae.checkpoints.format import MANIFEST, sha256_file

    config_file = checkpoint.path / "config.json"
    config_file.write_text(json.dumps(description))
    manifest_file = checkpoint.path / MANIFEST
    manifest = json.loads(manifest_file.read_text())
    manifest["files"]["config.json"] = {"size": config_file.stat().st_size,
                                        "sha256": sha256_file(config_file)}
    manifest_file.write_text(json.dumps(manifest))


def test_a_run_from_before_difference_gain_loads_and_resumes_as_it_was_trained(videos, tmp_path):
    """A checkpoint whose saved model section predates ``model.difference_gain`` was trained
    on plain frames: it loads as gain 0, and resuming it under today's default (4) is refused
    with the setting to pass."""
    import motionmae

    run = tmp_path / "old"
    pretrain(_config(videos, run, **{"run.steps": 2, "model.difference_gain": 0.0}))
    checkpoint = latest_checkpoint(run / "checkpoints")
    config_file = checkpoint.path / "config.json"
    description = json.loads(config_file.read_text())
    del description["model"]["difference_gain"]  # as written before the key existed
    del description["config"]["model"]["difference_gain"]
    _rewrite_saved_description(checkpoint, description)
    assert motionmae.load_encoder(run).patch_embed.difference_gain == 0.0
    with pytest.raises(ValueError, match=r"model.difference_gain=0.0.*--set "
                                         r"model.difference_gain=0.0"):
        pretrain(_config(videos, run, **{"run.steps": 4}), resume=True)
    result = pretrain(_config(videos, run, **{"run.steps": 4, "model.difference_gain": 0.0}),
                      resume=True)
    assert result.state.step == 4


def _as_written_before_component_sections(config: dict) -> dict:
    """A saved run config in the layout of before the components owned their sections:
    every target's section, masking.rho and CoTracker's settings flat, no tracker sections."""
    old = json.loads(json.dumps(config))
    old["masking"]["rho"] = old["masking"].pop("motion", {"rho": 0.5})["rho"]
    old["masking"].setdefault("learned", {})
    for name in ("pixel", "tracks", "hog", "m3traj", "teacher"):
        old["targets"].setdefault(name, {})
    tracking = old["tracking"]
    cotracker = tracking.pop("cotracker", {})
    tracking.pop(tracking["tracker"], None)
    tracking.update(cotracker_checkpoint=cotracker.get("checkpoint"),
                    cotracker_variant=cotracker.get("variant", "offline"),
                    cotracker_code=cotracker.get("code"))
    return old


def test_a_run_folder_from_before_component_sections_loads_visualizes_and_resumes(
        videos, tmp_path):
    import yaml

    import motionmae
    from motionmae.config import from_dict
    from motionmae.viz.reconstruct import visualize

    run = tmp_path / "old"
    cfg = _config(videos, run, **{"run.steps": 2, "targets.names": "[pixel,tracks]",
                                  "masking.kind": "motion", "masking.motion.rho": 0.25})
    pretrain(cfg)
    checkpoint = latest_checkpoint(run / "checkpoints")
    config_file = checkpoint.path / "config.json"
    description = json.loads(config_file.read_text())
    old = _as_written_before_component_sections(description["config"])
    assert "rho" in old["masking"] and "cotracker_variant" in old["tracking"]
    description["config"] = old
    _rewrite_saved_description(checkpoint, description)
    (run / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))

    # The same (resolved) run, read from either layout.
    assert from_dict(PretrainConfig, old) == cfg.resolve(num_videos=cfg.run.batch_size)
    assert motionmae.load_encoder(run) is not None
    video = videos.val_list.parent / videos.val_list.read_text().split()[0]
    assert visualize(run, video, tmp_path / "pictures")
    resumed = load_config(PretrainConfig, run / "config.yaml", ["run.steps=3"])
    assert resumed.masking.motion.rho == 0.25
    assert pretrain(resumed, resume=True).state.step == 3

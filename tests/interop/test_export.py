"""``export``: motionmae checkpoints to self-contained motionmae / HF folders with a model card."""

import json
import logging

import pytest
import torch
from videomae_reference import official_state_dict, reference_encoder

import motionmae
from motionmae.checkpoints.encoders import encoder_from_checkpoint
from motionmae.checkpoints.format import resolve_checkpoint, save_checkpoint, verify
from motionmae.config import PretrainConfig, load_config
from motionmae.errors import UsageError
from motionmae.interop import InteropError, export
from motionmae.interop.export import model_card
from motionmae.train.pretrain import PretrainTask

TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture
def run_dir(tmp_path):
    """A run folder with one checkpoint (step 120) of a tiny two-target model."""
    cfg = load_config(PretrainConfig, overrides=[
        "model.embed_dim=64", "model.depth=2", "model.num_heads=2", "model.decoder_dim=32",
        "model.decoder_heads=2", "model.decoder_depth=1", "data.frames=4", "data.size=32",
        "data.train=/data/k400/train.txt", "targets.names=pixel,hog", "masking.kind=tube",
        "masking.ratio=0.75", "run.steps=200", "run.batch_size=4", f"run.out={tmp_path}/run",
    ])
    torch.manual_seed(0)
    task = PretrainTask(cfg)
    with torch.no_grad():
        for param in task.model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    run = tmp_path / "run"
    state = {"optimizer": {"state": {}, "param_groups": []},
             "train_state": {"step": 120, "epoch": 3, "samples_in_epoch": 8,
                             "skipped_steps": 0, "bad_video_files": 2, "bad_video_draws": 9}}
    save_checkpoint(run / "checkpoints", 120, task.model.state_dict(), task.describe(), state)
    (run / "metrics.jsonl").write_text(
        json.dumps({"step": 110, "loss": 0.91, "loss/pixel": 0.8, "lr": 1e-4}) + "\n"
        + json.dumps({"step": 120, "loss": 0.87, "loss/pixel": 0.75, "lr": 1e-4}) + "\n"
    )
    return run


def _clip(batch=2):
    return torch.randn(batch, 3, 4, 32, 32, generator=torch.Generator().manual_seed(3))


def test_motionmae_export_loads_and_has_a_model_card(tmp_path, run_dir):
    out = export(run_dir, "motionmae", tmp_path / "export")
    verify(out)  # manifest over weights + config
    reference, _ = encoder_from_checkpoint(resolve_checkpoint(run_dir))
    clip = _clip()
    with torch.no_grad():
        torch.testing.assert_close(motionmae.load_encoder(out)(clip), reference(clip),
                                   atol=0, rtol=0)
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "pretrain" and config["config"]["masking"]["ratio"] == 0.75
    card = (out / "README.md").read_text()
    for text in ("`pixel` (weight 1", "`hog` (weight 1", "Masking: `tube`, ratio 0.75",
                 "/data/k400/train.txt", "120 steps (epoch 3) of 200 steps planned",
                 "Bad video files skipped: 2", "Draws of a bad video replaced by another "
                 "video: 9", "loss 0.87", "[B, 3, 4, 32, 32]", "motionmae.load_encoder"):
        assert text in card, text


def test_hf_export_loads_in_transformers_and_motionmae(tmp_path, run_dir):
    transformers = pytest.importorskip("transformers")
    out = export(run_dir / "checkpoints", "hf", tmp_path / "hf")
    reference, _ = encoder_from_checkpoint(resolve_checkpoint(run_dir))
    model = transformers.VideoMAEModel.from_pretrained(out).eval()
    clip = _clip()
    with torch.no_grad():
        expected = reference(clip)
        torch.testing.assert_close(model(clip.transpose(1, 2)).last_hidden_state, expected,
                                   **TOL)
        torch.testing.assert_close(motionmae.load_encoder(out)(clip), expected, **TOL)
    card = (out / "README.md").read_text()
    assert "VideoMAEModel.from_pretrained" in card and "Masking: `tube`" in card
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["image_mean"] == [0.485, 0.456, 0.406]


def test_model_card_of_a_checkpoint_from_before_the_two_bad_video_counts():
    """Such checkpoints saved the replaced draws alone, as ``bad_videos``: never files."""
    card = model_card({"config": {"run": {"batch_size": 2}}}, "motionmae", "old-run",
                      {"step": 5, "bad_videos": 7})
    assert "- Draws of a bad video replaced by another video: 7" in card
    assert "Bad video files" not in card


@pytest.mark.parametrize(("targets", "masking", "tracker"), [
    (["pixel"], {"kind": "learned", "learned": {"use_tracks": True}}, True),
    (["pixel"], {"kind": "learned"}, False),
    (["pixel", "tracks"], {"kind": "tube"}, True),
    (["pixel"], {"kind": "motion", "rho": 0.4}, True),  # saved before masking.motion.rho
    (["pixel"], {"kind": "tube"}, False),
])
def test_model_card_names_the_tracker_when_a_selected_component_needs_tracks(
        targets, masking, tracker):
    """The specs say, as configured: learned masking reads tracks with use_tracks only."""
    config = {"targets": {"names": targets}, "masking": {"ratio": 0.9, **masking},
              "tracking": {"tracker": "flow"}}
    card = model_card({"config": config}, "motionmae", "run")
    assert ("- Point tracks: `flow` tracker" in card) == tracker
    if masking["kind"] == "motion":
        assert "- Masking: `motion`, ratio 0.9; rho=0.4" in card


def test_export_refuses_to_overwrite_and_unknown_formats(tmp_path, run_dir):
    out = export(run_dir, "motionmae", tmp_path / "export")
    with pytest.raises(UsageError, match=r"already holds an export .*--overwrite"):
        export(run_dir, "motionmae", out)
    export(run_dir, "hf", out, overwrite=True)
    with pytest.raises(ValueError, match="format must be one of"):
        export(run_dir, "onnx", tmp_path / "x")


def test_official_checkpoint_converted_to_motionmae(tmp_path):
    sd = official_state_dict("pretrain", dim=192, depth=1, pos="buffer")
    torch.save({"model": sd}, tmp_path / "videomae.pth")
    out = export(tmp_path / "videomae.pth", "motionmae", tmp_path / "converted")
    clip = _clip(batch=1)
    with torch.no_grad():
        torch.testing.assert_close(motionmae.load_encoder(out)(clip),
                                   reference_encoder(sd, clip, heads=3), atol=1e-5, rtol=1e-5)
    assert "Converted from a videomae checkpoint" in (out / "README.md").read_text()

    finetuned = official_state_dict("finetune", dim=192, depth=1, pos="buffer")
    torch.save({"model": finetuned}, tmp_path / "finetuned.pth")
    with pytest.raises(InteropError, match="export it as 'hf'"):
        export(tmp_path / "finetuned.pth", "motionmae", tmp_path / "converted2")
    out = export(tmp_path / "finetuned.pth", "hf", tmp_path / "converted3")
    assert json.loads((out / "config.json").read_text())["use_mean_pooling"] is True
    transformers = pytest.importorskip("transformers")
    model = transformers.VideoMAEModel.from_pretrained(out).eval()  # no final layernorm
    with torch.no_grad():
        torch.testing.assert_close(model(clip.transpose(1, 2)).last_hidden_state,
                                   reference_encoder(finetuned, clip, heads=3, prefix=""), **TOL)


@pytest.mark.parametrize("optim, text", [
    ({"base_lr": 1.5e-4}, "0.00015 x batch / 256"),  # a run config from before the rule
    ({"base_lr": 1.5e-4, "lr_scaling": "sqrt", "min_peak_lr": 3e-4, "reference_batch": 256},
     "0.00015 x batch / 256 (sqrt below batch 256, floor 0.0003)"),
    ({"base_lr": 1e-3, "lr_scaling": "linear", "min_peak_lr": None, "reference_batch": 512},
     "0.001 x batch / 512"),
])
def test_model_card_states_the_lr_rule(optim, text):
    from motionmae.interop.export import _lr_rule_text

    assert _lr_rule_text(optim) == text



def test_hf_export_of_a_finetuned_run_says_its_head_is_not_in_it(tmp_path, caplog):
    """transformers' classifier cannot hold this head (it pools without the encoder's final
    norm): the export is the encoder, and says so in the log and the model card."""
    from motionmae.cli import main
    from motionmae.data import make_synthetic_dataset

    videos = make_synthetic_dataset(tmp_path / "videos", num_train=4, num_val=1, frames=8,
                                    size=32, seed=0)
    run = tmp_path / "ft"
    assert main(["finetune", "--scratch", "--model", "tiny", "--train", str(videos.train_list),
                 "--out", str(run), "--steps", "1", "--batch-size", "2", "--set",
                 "data.frames=4", "--set", "data.size=32", "--set", "model.depth=1",
                 "--set", "data.workers=0"]) == 0
    with caplog.at_level(logging.WARNING):
        out = export(run, "hf", tmp_path / "hf")
    said = ("the classification head (fc_norm, head; 4 classes) is not in this export: "
            "transformers' VideoMAEForVideoClassification")
    assert said in caplog.text
    assert said in (out / "README.md").read_text()
    assert json.loads((out / "config.json").read_text())["architectures"] == ["VideoMAEModel"]

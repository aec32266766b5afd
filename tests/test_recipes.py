"""The paper recipes in ``configs/``: each loads through the config loader, its header states
a consistent GPU count, per-GPU batch and ``torchrun`` command, and a model built from it runs
one training step at reduced size (tiny ViT, 4 frames of 32 px, batch 2) through the same
entry points as the command line."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from motionmae.cli import build_parser
from motionmae.config import ConfigError, FinetuneConfig, PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.data.formats import parse_spec

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))
PRETRAIN = [p for p in RECIPES if "finetune" not in yaml.safe_load(p.read_text())]
FINETUNE = [p for p in RECIPES if p not in PRETRAIN]

# What every reduced run changes; everything else (masking, targets, decoders, optimiser,
# augmentation) stays as the recipe says.
REDUCED = ["model.size=tiny", "model.depth=2", "data.frames=4", "data.size=32", "data.workers=0",
           "run.batch_size=2", "run.steps=1", "run.epochs=null", "run.precision=fp32",
           "run.device=cpu", "run.log_every=1"]


def _kind(path: Path) -> type:
    return FinetuneConfig if path in FINETUNE else PretrainConfig


def _header(path: Path) -> str:
    """The comment block before the first key, without the ``# `` prefixes."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines)


def _torchrun(header: str) -> list[str]:
    """The header's ``torchrun`` command (with its ``\\`` continuation lines) as argv."""
    lines = header.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("torchrun "))
    command = []
    for line in lines[start:]:
        command.append(line.strip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            break
    return shlex.split(" ".join(command))


def _option(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def test_every_kind_of_recipe_is_there():
    names = {p.name for p in RECIPES}
    assert {"videomae_vitb_k400_pretrain.yaml", "videomae_vitb_ssv2_pretrain.yaml",
            "trackmae_vitb_k400_pixel_tracks_pretrain.yaml",
            "trackmae_vitb_k400_clip_tracks_pretrain.yaml", "m3video_vitb_ssv2_pretrain.yaml",
            "tats_vitb_ssv2_pretrain.yaml", "adamae_vitb_ssv2_pretrain.yaml",
            "videomae_vitb_k400_finetune.yaml", "videomae_vitb_ssv2_finetune.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_its_header_agrees(path):
    cfg = load_config(_kind(path), path)  # unknown keys and bad values raise ConfigError
    header = _header(path)
    assert "Source:" in header and "GPUs:" in header and "Per-GPU batch:" in header

    gpus = int(re.search(r"^GPUs: (\d+)", header, re.M).group(1))
    per_gpu, global_batch = (int(x) for x in re.search(
        r"^Per-GPU batch: (\d+) \(global (\d+)", header, re.M).groups())
    argv = _torchrun(header)
    nodes = int(_option(argv, "--nnodes", "1"))
    assert nodes * int(_option(argv, "--nproc_per_node")) == gpus
    assert cfg.run.batch_size == per_gpu
    assert gpus * per_gpu * cfg.optim.accum_steps == global_batch
    if nodes > 1:
        assert "--rdzv_endpoint" in argv
    else:
        assert "--standalone" in argv

    # The command after `-m motionmae` is a valid motionmae invocation of this very file.
    assert argv[argv.index("-m") + 1] == "motionmae"
    cli = argv[argv.index("-m") + 2:]
    args = build_parser().parse_args(cli)
    assert args.command == ("finetune" if path in FINETUNE else "pretrain")
    assert args.config == f"configs/{path.name}"
    specs = [cfg.data.train, cfg.data.val]
    if args.command == "pretrain":
        assert args.data == cfg.data.train  # the command and the file name the same data
        specs.append(args.data)
    else:
        assert args.checkpoint == cfg.finetune.checkpoint
        specs += [args.train, args.val]
    for spec in filter(None, specs):
        parse_spec(spec)  # a real dataset format with known options (docs/datasets.md)


TRACKMAE = [p for p in PRETRAIN if p.name.startswith("trackmae_")]


@pytest.mark.parametrize("path", TRACKMAE, ids=lambda p: p.stem)
def test_trackmae_recipes_keep_the_official_targets_and_say_what_they_lose(path):
    cfg = load_config(PretrainConfig, path)
    tracks = cfg.targets.tracks
    assert (tracks.norm, tracks.windows, tracks.upsample_mode, tracks.upsample,
            tracks.use_visibility) == ("patch", "official", "align_corners", 2, False)
    assert cfg.tracking.tracker == "lk"  # the CPU default; the header names CoTracker's keys
    if "teacher" in cfg.targets.names:
        assert cfg.targets.teacher.norm == "zscore"  # TrackMAE's CLIP target
    header = _header(path)
    assert "translates rigidly" in header and "Remaining differences" in header
    for key in ("tracking.tracker=cotracker", "tracking.cotracker.checkpoint",
                "tracking.cotracker.variant", "tracking.cotracker.code"):
        assert key in header, key
    assert "cannot" not in header  # CoTracker can be given to the loader


def test_a_typo_in_a_recipe_is_refused(tmp_path):
    # What the load test relies on: a key the config does not have is an error.
    text = (ROOT / "configs" / "videomae_vitb_k400_pretrain.yaml").read_text()
    broken = tmp_path / "typo.yaml"
    broken.write_text(text.replace("  ratio: 0.9", "  ration: 0.9"))
    with pytest.raises(ConfigError, match=r"masking\.ration: unknown key"):
        load_config(PretrainConfig, broken)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    # 24 frames: room for 4 frames at stride 4 and for M3Video's 6-frame trajectories.
    return make_synthetic_dataset(tmp_path_factory.mktemp("recipe_videos"), num_train=4,
                                  num_val=2, frames=24, size=32, seed=3)


@pytest.fixture(scope="module")
def clip_teacher(tmp_path_factory):
    """A tiny randomly initialised CLIPVisionModel folder, as ``save_pretrained`` writes it."""
    transformers = pytest.importorskip("transformers")
    import torch

    folder = tmp_path_factory.mktemp("clip-teacher")
    torch.manual_seed(0)
    config = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=4,
                                           image_size=32, patch_size=8)
    transformers.CLIPVisionModel(config).save_pretrained(folder)
    return folder


def _pretrain_reduced(path: Path, videos, out: Path, teacher: Path | None):
    from motionmae.train.pretrain import pretrain

    overrides = [*REDUCED, f"data.train={videos.train_list}", f"run.out={out}"]
    if teacher is not None:
        overrides.append(f"targets.teacher.path={teacher}")
    cfg = load_config(PretrainConfig, path, overrides)
    return cfg, pretrain(cfg)


@pytest.mark.parametrize("path", PRETRAIN, ids=lambda p: p.stem)
def test_pretrain_recipe_runs_one_step(path, videos, tmp_path, request):
    recipe = load_config(PretrainConfig, path)
    teacher = (request.getfixturevalue("clip_teacher") if "teacher" in recipe.targets.names
               else None)
    cfg, result = _pretrain_reduced(path, videos, tmp_path / "run", teacher)
    assert result.state.step == 1
    record = result.history[-1]
    assert record["loss"] > 0 and record["skipped_steps"] == 0
    for name in recipe.targets.names:  # every target of the recipe was trained
        assert f"loss/{name}" in record
    # The recipe's own settings survived the reduction.
    assert (cfg.masking, cfg.targets.names) == (recipe.masking, recipe.targets.names)
    assert cfg.model.decoder_depth == recipe.model.decoder_depth
    saved = json.loads((tmp_path / "run" / "checkpoints" / "step_00000001" / "config.json")
                       .read_text())
    assert saved["config"]["masking"]["kind"] == recipe.masking.kind


@pytest.fixture(scope="module")
def pretrained(videos, tmp_path_factory):
    """A one-step run of the VideoMAE K400 recipe, as the fine-tuning recipes' checkpoint."""
    out = tmp_path_factory.mktemp("pretrained") / "run"
    _pretrain_reduced(ROOT / "configs" / "videomae_vitb_k400_pretrain.yaml", videos, out, None)
    return out


@pytest.mark.parametrize("path", FINETUNE, ids=lambda p: p.stem)
def test_finetune_recipe_runs_one_step(path, videos, pretrained, tmp_path):
    from motionmae.train.finetune import evaluate_finetuned, finetune

    recipe = load_config(FinetuneConfig, path)
    cfg = load_config(FinetuneConfig, path, [
        *(o for o in REDUCED if not o.startswith("model.")), f"finetune.checkpoint={pretrained}",
        f"data.train={videos.train_list}", f"data.val={videos.val_list}",
        "data.test_clips=1", "data.test_crops=1", f"run.out={tmp_path / 'run'}"])
    result = finetune(cfg)
    assert result.train.state.step == 1
    assert result.train.history[-1]["skipped_steps"] == 0
    evaluation = evaluate_finetuned(cfg, result)
    assert evaluation is not None and evaluation.metrics is not None
    # The recipe's fine-tuning settings survived the reduction.
    assert cfg.finetune == dataclasses.replace(recipe.finetune, checkpoint=str(pretrained))

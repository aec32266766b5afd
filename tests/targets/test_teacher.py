"""The frozen-teacher target: loading each family from a save_pretrained folder, what the
teacher sees, which tokens it keeps, the token grid, normalisation, freezing, errors, weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from teacher_folders import IMAGE, PATCH, REGISTERS, write_teacher

from motionmae.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ConfigError,
    PretrainConfig,
    TargetsConfig,
    load_config,
)
from motionmae.data.transforms import normalize
from motionmae.targets import TeacherTargetConfig, build_targets
from motionmae.targets.teacher import (
    TeacherTarget,
    footprint_weights,
    normalize_features,
    tubelet_frames,
    use_bf16,
)
from motionmae.targets.teacher_models import read_teacher_spec
from motionmae.tokens import TokenGrid
from motionmae.train.pretrain import PretrainTask

transformers = pytest.importorskip("transformers")

FAMILIES = ("clip_vision_model", "clip", "siglip_vision_model", "dinov2",
            "dinov2_with_registers")
PREFIX = {"clip_vision_model": 1, "clip": 1, "siglip_vision_model": 0, "dinov2": 1,
          "dinov2_with_registers": 1 + REGISTERS}
GRID = TokenGrid(frames=4, height=64, width=64, tubelet=2, patch=16)  # 2 x 4 x 4 tokens


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("teachers")
    return {family: write_teacher(root / family, family) for family in FAMILIES}


def make_target(folder: Path, grid: TokenGrid = GRID, **overrides) -> TeacherTarget:
    cfg = TeacherTargetConfig(path=str(folder), **{"norm": "none", **overrides})
    return TeacherTarget(cfg, grid, IMAGENET_MEAN, IMAGENET_STD)


def uint8_clip(frames: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random frames ``[T, S, S, 3]`` uint8 (blurred noise: resampling is well posed)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((frames, 3, size // 4, size // 4))).float()
    fine = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (fine * 255).round().byte().permute(0, 2, 3, 1).numpy()


def capture_inputs(target: TeacherTarget) -> list[torch.Tensor]:
    """Record every batch of pixels the target's teacher is fed."""
    seen: list[torch.Tensor] = []
    target.teacher(torch.device("cpu")).register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()))
    return seen


def reference_patches(folder: Path, family: str, pixels: torch.Tensor) -> torch.Tensor:
    """Patch tokens by a plain Hugging Face forward: ``last_hidden_state`` minus CLS/register
    tokens, CLIP's ``post_layernorm`` applied (HF applies it only to the pooled CLS)."""
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    tower = model.vision_model if family == "clip" else model
    with torch.no_grad():
        kwargs = {} if family.startswith("dinov2") else {"interpolate_pos_encoding": True}
        hidden = tower(pixel_values=pixels, **kwargs).last_hidden_state
        patches = hidden[:, PREFIX[family]:]
        if family.startswith("clip"):
            patches = getattr(tower, "vision_model", tower).post_layernorm(patches)
    return patches


# -- loading, tokens, shapes ----------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_keeps_exactly_its_patch_tokens(folders, family):
    target = make_target(folders[family])
    assert (target.spec.model_type, target.spec.prefix_tokens) == (family, PREFIX[family])
    teacher = target.teacher(torch.device("cpu"))
    pixels = torch.randn(2, 3, IMAGE, IMAGE + 2 * PATCH)  # non-square: interpolated positions
    out = teacher(pixels)
    assert out.shape == (2, IMAGE // PATCH, IMAGE // PATCH + 2, 32)
    expected = reference_patches(folders[family], family, pixels)
    torch.testing.assert_close(out.flatten(1, 2), expected, atol=1e-5, rtol=1e-5)


def test_full_clip_folder_gives_the_vision_tower(folders):
    """A CLIPModel folder (image + text) loads as its vision tower: same features as the
    tower of the full model."""
    full = transformers.CLIPModel.from_pretrained(str(folders["clip"])).eval()
    target = make_target(folders["clip"])
    pixels = torch.randn(1, 3, IMAGE, IMAGE)
    tower = target.teacher(torch.device("cpu")).tower
    assert sum(p.numel() for p in tower.parameters()) == sum(
        p.numel() for p in full.vision_model.parameters())
    with torch.no_grad():
        ours = tower(pixel_values=pixels).last_hidden_state
        theirs = full.vision_model(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(ours, theirs)


def test_values_shape_frames_and_identity_grid(folders):
    """Teacher grid == student grid (32 px / 8 = 64 px / 16 = 4): the target is the teacher's
    patch features of frame ``frame`` of each tubelet, in (t, h, w) token order."""
    clip = torch.randn(2, 3, 4, 64, 64)
    for frame in (0, 1):
        target = make_target(folders["dinov2"], frame=frame)
        values, weight = target({"clip": clip})
        assert values.shape == (2, GRID.num_tokens, 32) and values.dtype == torch.float32
        assert weight is None
        seen = capture_inputs(target)
        target({"clip": clip})
        assert seen[0].shape == (4, 3, IMAGE, IMAGE)  # B * t frames, resized 64 -> 32
        direct = target.teacher(torch.device("cpu"))(seen[0])  # [4, 4, 4, D]
        torch.testing.assert_close(values, direct.reshape(2, GRID.num_tokens, 32))
    frames = tubelet_frames(clip, 2, 1)
    torch.testing.assert_close(frames[3], clip[1, :, 3])  # clip 1, tubelet 1, frame 1


def test_area_halves_the_teacher_grid_by_block_means(folders):
    """Teacher input 64 px -> 8x8 patches onto the 4x4 token grid: ``area`` averages 2x2
    blocks, ``bilinear`` samples between them (the same 2x2 mean at a 2x ratio)."""
    clip = torch.randn(1, 3, 2, 64, 64)
    grid = TokenGrid(frames=2, height=64, width=64, tubelet=2, patch=16)
    for mode in ("area", "bilinear"):
        target = make_target(folders["clip_vision_model"], grid, size=64, grid_resize=mode)
        values, _ = target({"clip": clip})
        seen = capture_inputs(target)
        target({"clip": clip})
        full = target.teacher(torch.device("cpu"))(seen[0])  # [1, 8, 8, D]
        pooled = F.avg_pool2d(full.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
        torch.testing.assert_close(values, pooled.reshape(1, 16, 32), atol=1e-5, rtol=1e-5)


def test_footprint_weights_known_answers():
    torch.manual_seed(0)
    grid = torch.randn(1, 5, 7, 3)  # [1, g_h, g_w, D]
    for n_h, n_w in ((4, 4), (3, 9), (7, 2)):
        k_h, k_w = np.arange(n_h), np.arange(n_w)
        rows = footprint_weights(k_h * 5 / n_h, (k_h + 1) * 5 / n_h, 5, "bilinear")
        cols = footprint_weights(k_w * 7 / n_w, (k_w + 1) * 7 / n_w, 7, "bilinear")
        ours = torch.einsum("ih,jw,bhwd->bijd", torch.from_numpy(rows).float(),
                            torch.from_numpy(cols).float(), grid)
        theirs = F.interpolate(grid.permute(0, 3, 1, 2), size=(n_h, n_w), mode="bilinear",
                               align_corners=False).permute(0, 2, 3, 1)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    area = footprint_weights(np.array([0.5, 2.0]), np.array([1.5, 3.0]), 3, "area")
    np.testing.assert_allclose(area, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    outside = footprint_weights(np.array([-2.0]), np.array([-1.0]), 3, "area")
    np.testing.assert_allclose(outside, [[1.0, 0.0, 0.0]])
    assert np.allclose(footprint_weights(np.array([0.2]), np.array([0.9]), 1, "bilinear"), 1.0)


# -- what the teacher sees ------------------------------------------------------------------


@pytest.mark.parametrize("family", ["clip_vision_model", "siglip_vision_model", "dinov2"])
def test_teacher_sees_its_own_processor_normalisation(folders, family):
    """From the ImageNet-normalised clip the teacher gets exactly what its own image processor
    makes of the same uint8 frames (its mean/std, never ImageNet's for CLIP/SigLIP)."""
    frames = uint8_clip(4, IMAGE)
    clip = normalize(frames, IMAGENET_MEAN, IMAGENET_STD)[None]  # [1, 3, T, 32, 32]
    target = make_target(folders[family], TokenGrid(4, IMAGE, IMAGE, 2, 16))
    seen = capture_inputs(target)
    target({"clip": clip})
    processor = transformers.AutoImageProcessor.from_pretrained(str(folders[family]))
    expected = processor(images=list(frames[0::2]), return_tensors="pt", do_resize=False,
                         do_center_crop=False)["pixel_values"]
    torch.testing.assert_close(seen[0], expected, atol=2e-5, rtol=0)
    if family != "dinov2":  # ImageNet-normalised pixels would be far off
        assert (clip[0, :, 0::2].transpose(0, 1) - expected).abs().max() > 0.1


def test_resize_matches_the_processor_within_one_grey_level(folders):
    """64 px frames to CLIP's 32 px input: the processor's bicubic PIL resize on uint8 and ours
    on floats agree to one grey level (1/255/std = 0.015 in normalised units)."""
    frames = uint8_clip(2, 64, seed=3)
    clip = normalize(frames, IMAGENET_MEAN, IMAGENET_STD)[None]
    target = make_target(folders["clip_vision_model"], TokenGrid(2, 64, 64, 2, 16))
    seen = capture_inputs(target)
    target({"clip": clip})
    processor = transformers.AutoImageProcessor.from_pretrained(
        str(folders["clip_vision_model"]))
    expected = processor(images=[frames[0]], return_tensors="pt")["pixel_values"]
    assert seen[0].shape == expected.shape == (1, 3, IMAGE, IMAGE)
    assert (seen[0] - expected).abs().max() < 0.016


def test_folder_without_processor_uses_family_defaults(folders):
    spec = read_teacher_spec(folders["dinov2_with_registers"])
    assert (spec.mean, spec.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert (spec.input_size, spec.resample, spec.scale) == (IMAGE, "bicubic", 1.0)
    assert read_teacher_spec(folders["clip"]).mean == (0.48145466, 0.4578275, 0.40821073)


# -- normalisation modes ---------------------------------------------------------------------


def test_norm_modes(folders):
    clip = torch.randn(2, 3, 4, 64, 64)
    raw, _ = make_target(folders["clip_vision_model"], norm="none")({"clip": clip})
    layer, _ = make_target(folders["clip_vision_model"], norm="layer")({"clip": clip})
    zscore, _ = make_target(folders["clip_vision_model"], norm="zscore")({"clip": clip})
    torch.testing.assert_close(layer.mean(-1), torch.zeros(2, GRID.num_tokens), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(layer.var(-1, correction=0), torch.ones(2, GRID.num_tokens),
                               atol=1e-3, rtol=0)
    # TrackMAE's CLIP target: per channel over each clip's L tokens, unbiased, std + 1e-6
    mean = raw.mean(dim=1, keepdim=True)
    std = ((raw - mean).square().sum(dim=1, keepdim=True) / (GRID.num_tokens - 1)).sqrt()
    torch.testing.assert_close(zscore, (raw - mean) / (std + 1e-6))
    torch.testing.assert_close(zscore.mean(1), torch.zeros(2, 32), atol=1e-5, rtol=0)
    # each clip's statistics are its own: z-scoring one clip alone gives the same values
    torch.testing.assert_close(normalize_features(raw[1:], "zscore"), zscore[1:])
    assert not torch.allclose(raw, layer, atol=0.1)


def test_zscore_is_trackmaes_unbiased_per_channel_form_with_eps_after_the_root():
    # Clip 0: channel 0 is [1, 3] (mean 2, unbiased std sqrt 2), channel 1 is constant,
    # channel 2 is [0, 2e-6] (std 1.41e-6, the size of the eps: z = -+0.41).
    # Clip 1 is clip 0 times 10 plus 5: z-scores are per clip, so channels 0 and 1 agree.
    clip0 = torch.tensor([[1.0, 4.0, 0.0], [3.0, 4.0, 2e-6]], dtype=torch.float64)
    values = torch.stack([clip0, clip0 * 10 + 5])
    z = normalize_features(values, "zscore")
    half = 2**-0.5 * (2**0.5 / (2**0.5 + 1e-6))
    torch.testing.assert_close(z[0, :, 0], torch.tensor([-half, half], dtype=torch.float64))
    assert torch.equal(z[0, :, 1], torch.zeros(2, dtype=torch.float64))
    tiny = 1e-6 / (2**0.5 * 1e-6 + 1e-6)  # sqrt(var + eps) would give ~1e-3 here
    torch.testing.assert_close(z[0, :, 2], torch.tensor([-tiny, tiny], dtype=torch.float64))
    torch.testing.assert_close(z[1, :, :2], z[0, :, :2], atol=1e-6, rtol=0)


def test_bf16_precision_runs_the_teacher_under_autocast(folders):
    clip = torch.randn(1, 3, 4, 64, 64)
    fp32 = make_target(folders["dinov2"], precision="fp32")
    bf16 = make_target(folders["dinov2"], precision="bf16")
    dtypes = []
    linear = next(m for m in bf16.teacher(torch.device("cpu")).modules()
                  if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    reference, _ = fp32({"clip": clip})
    values, _ = bf16({"clip": clip})
    assert set(dtypes) == {torch.bfloat16} and values.dtype == torch.float32
    assert F.cosine_similarity(values, reference, dim=-1).min() > 0.99
    assert not use_bf16("auto", torch.device("cpu"))  # slower than fp32 on most CPUs


# -- frozen ---------------------------------------------------------------------------------


def test_teacher_is_frozen_through_a_training_step(folders):
    cfg = load_config(PretrainConfig, overrides=[
        "targets.names=[teacher,pixel]", "masking.kind=tube",
        f"targets.teacher.path={folders['siglip_vision_model']}",
        "data.frames=4", "data.size=32", "model.depth=1", "model.decoder_depth=1"]
    ).resolve(num_videos=8)
    task = PretrainTask(cfg)
    target = task.targets["teacher"]
    clip = torch.randn(2, 3, 4, 32, 32)
    teacher = target.teacher(torch.device("cpu"))
    before = {name: p.clone() for name, p in teacher.named_parameters()}
    optimizer = torch.optim.AdamW([p for g in task.parameter_groups(0.05) for p in g["params"]],
                                  lr=1e-2)
    task.model.train()
    teacher.train()  # a caller switching modes must not enable dropout & co
    loss, parts = task.loss(task.model, {"clip": clip}, torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    assert parts["loss/teacher"] > 0
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for name, p in teacher.named_parameters():
        assert torch.equal(p, before[name]), name
    assert not any(p is q for p in task.model.parameters() for q in teacher.parameters())


# -- errors ---------------------------------------------------------------------------------


def test_errors_say_what_to_provide(folders, tmp_path):
    with pytest.raises(ConfigError, match=r"targets\.teacher\.path: .*nowhere does not exist; "
                       r"give a local folder written by save_pretrained"):
        read_teacher_spec(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"has no config\.json, so it is not a Hugging Face "
                       r"model folder; give a local folder written by save_pretrained"):
        read_teacher_spec(empty)
    vit = tmp_path / "vit"
    vit.mkdir()
    (vit / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (vit / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"model_type 'vit', which is not a supported teacher "
                       r"\(supported: clip_vision_model, clip, siglip_vision_model, siglip, "
                       r"dinov2, dinov2_with_registers\); give a local folder"):
        read_teacher_spec(vit)
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text(
        (folders["dinov2"] / "config.json").read_text())
    with pytest.raises(ConfigError, match=r"has a config\.json but no weights \(one of "
                       r"model\.safetensors"):
        read_teacher_spec(weightless)
    with pytest.raises(ConfigError, match=r"targets\.teacher\.path: the teacher target needs a "
                       r"local Hugging Face model folder"):
        load_config(PretrainConfig, overrides=["targets.names=[teacher]"])
    with pytest.raises(ConfigError, match=r"targets\.teacher\.frame: must be < "
                       r"model\.tubelet_size 2, got 2"):
        load_config(PretrainConfig, overrides=[
            "targets.names=[teacher]", f"targets.teacher.path={folders['dinov2']}",
            "targets.teacher.frame=2"])
    with pytest.raises(ConfigError, match=r"targets\.teacher\.size: 36 px is not a multiple of "
                       r"the teacher's patch size 8"):
        make_target(folders["dinov2"], size=36)


# -- loss weights -----------------------------------------------------------------------------


@pytest.mark.parametrize(("names", "explicit", "expected"), [
    (["pixel", "tracks"], None, 1.0),
    (["teacher", "tracks"], None, 0.25),
    (["teacher", "pixel", "tracks"], None, 0.25),
    (["teacher", "tracks"], 0.5, 0.5),
    (["pixel", "tracks"], 2.0, 2.0),
])
def test_tracks_weight_defaults_to_trackmae_lambda(folders, names, expected, explicit):
    overrides = [f"targets.names=[{','.join(names)}]",
                 f"targets.teacher.path={folders['dinov2']}"]
    if explicit is not None:
        overrides.append(f"targets.tracks.weight={explicit}")
    cfg = load_config(PretrainConfig, overrides=overrides)
    assert cfg.targets.loss_weight("tracks") == expected
    targets = build_targets(cfg.targets, GRID, cfg.data)
    assert targets["tracks"].weight == expected
    if "teacher" in names:
        assert targets["teacher"].weight == 1.0
    assert TargetsConfig().tracks.weight is None  # unset until resolved against the names

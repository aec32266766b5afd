"""Trust: files from elsewhere (checkpoints, caches, official weights, configs) never run code.

Each load path gets a file whose unpickling (or YAML construction) would create a marker
file; the load must fail or ignore it, and the marker must not exist. A source scan keeps new
load calls honest: every ``torch.load`` passes ``weights_only=True``, every ``np.load``
``allow_pickle=False``, and nothing calls ``pickle.load`` or an unsafe YAML loader.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import motionmae
from motionmae.checkpoints.format import MANIFEST, STATE, latest_checkpoint, save_checkpoint
from motionmae.config import ConfigError, PretrainConfig, load_config
from motionmae.fileio import sha256_file

PACKAGE = Path(motionmae.__file__).parent


class Exploit:
    """Unpickling it runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _poison_checkpoint(root: Path, marker: Path) -> Path:
    """A checkpoint whose state.pt carries the exploit and whose manifest is consistent (an
    attacker who can write the file can write the manifest too)."""
    model = torch.nn.Linear(2, 2)
    checkpoint = save_checkpoint(root, 1, model.state_dict(), {"kind": "test"},
                                 {"train_state": {"step": 1}})
    torch.save({"optimizer": {}, "train_state": {"step": 1}, "payload": Exploit(marker)},
               checkpoint.path / STATE)
    manifest = json.loads((checkpoint.path / MANIFEST).read_text())
    file = checkpoint.path / STATE
    manifest["files"][STATE] = {"size": file.stat().st_size, "sha256": sha256_file(file)}
    (checkpoint.path / MANIFEST).write_text(json.dumps(manifest))
    return checkpoint.path


def test_the_exploit_works_when_unpickled(tmp_path):
    """The control: without the guards the marker would appear."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Exploit(marker)))
    assert marker.exists()


def test_checkpoint_training_state_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    folder = _poison_checkpoint(tmp_path / "checkpoints", marker)
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    assert checkpoint is not None and checkpoint.path == folder  # integrity alone passes it
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        checkpoint.state()
    assert not marker.exists()


def test_resume_refuses_a_poisoned_checkpoint(tmp_path):
    from motionmae.data import make_synthetic_dataset
    from motionmae.train.pretrain import PretrainTask, pretrain

    videos = make_synthetic_dataset(tmp_path / "videos", num_train=2, num_val=1, frames=4,
                                    size=32, seed=0)
    marker = tmp_path / "pwned"
    cfg = load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={tmp_path / 'run'}", "data.frames=4",
        "data.size=32", "data.workers=0", "model.depth=1", "model.decoder_depth=1",
        "run.batch_size=1", "run.steps=2"])
    folder = _poison_checkpoint(tmp_path / "run" / "checkpoints", marker)
    # Real weights, so only the training state can stop the resume.
    weights = PretrainTask(cfg.resolve(num_videos=2)).model.state_dict()
    real = save_checkpoint(tmp_path / "scratch", 1, weights, {"kind": "pretrain"})
    (folder / "model.safetensors").write_bytes((real.path / "model.safetensors").read_bytes())
    manifest = json.loads((folder / MANIFEST).read_text())
    file = folder / "model.safetensors"
    manifest["files"][file.name] = {"size": file.stat().st_size, "sha256": sha256_file(file)}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        pretrain(cfg, resume=True)
    assert not marker.exists()


def test_export_of_a_poisoned_checkpoint_does_not_run_it(tmp_path):
    from motionmae.interop.export import _train_state

    marker = tmp_path / "pwned"
    folder = _poison_checkpoint(tmp_path / "checkpoints", marker)
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        _train_state(latest_checkpoint(folder.parent))
    assert not marker.exists()


def test_track_cache_entry_with_a_pickle_is_a_corrupt_miss(tmp_path, caplog):
    from motionmae.cache import ClipLayout
    from motionmae.data.video_writer import write_video
    from motionmae.motion.cache import CacheSettings, TrackCache

    video = tmp_path / "clip.mp4"
    write_video(video, np.zeros((4, 32, 32, 3), np.uint8))
    cache = TrackCache(tmp_path / "cache", CacheSettings(decode_size=32,
                                                                layout=ClipLayout(2, 1)))
    shard = cache.shard_path(cache.key(video))
    shard.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = Exploit(marker)
    with shard.open("wb") as handle:
        np.savez(handle, tracks=payload, checksum=np.zeros(32, np.uint8))
    assert cache.get(video) is None
    assert "corrupt entry" in caplog.text and "allow_pickle" in caplog.text
    assert not marker.exists() and not shard.exists()


def test_official_pth_with_a_pickle_is_refused(tmp_path):
    from motionmae.interop import InteropError

    marker = tmp_path / "pwned"
    path = tmp_path / "videomae.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "payload": Exploit(marker)}, path)
    with pytest.raises(InteropError, match="refused"):
        motionmae.load_encoder(path)
    assert not marker.exists()


def test_features_file_with_a_pickle_is_refused(tmp_path):
    from motionmae.eval.features import load_features

    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = Exploit(marker)
    path = tmp_path / "features.npz"
    np.savez(path, features=payload, labels=np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_features(path)
    assert not marker.exists()


YAML_EXPLOIT = "!!python/object/apply:os.system ['touch {marker}']"


def test_yaml_config_cannot_construct_objects(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "run.yaml"
    config.write_text(f"run:\n  out: {YAML_EXPLOIT.format(marker=marker)}\n")
    with pytest.raises(ConfigError, match=r"refused: could not determine a constructor for "
                       r"the tag 'tag:yaml\.org,2002:python/object/apply:os\.system'"):
        load_config(PretrainConfig, config)
    # An override value YAML cannot read safely stays the literal text.
    exploit = YAML_EXPLOIT.format(marker=marker)
    assert load_config(PretrainConfig, overrides=[f"run.out={exploit}"]).run.out == exploit
    with pytest.raises(ConfigError, match=r"run\.batch_size"):
        load_config(PretrainConfig, overrides=[f"run.batch_size={exploit}"])
    assert not marker.exists()


def _unsafe_loads(source: str) -> list[str]:
    """Load calls that could unpickle or construct objects, as ``line: code``."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        name = node.func.attr
        keywords = {k.arg: k.value for k in node.keywords}
        unsafe = (
            (owner == "torch" and name == "load"
             and not _is_constant(keywords.get("weights_only"), True))
            or (owner in ("np", "numpy") and name == "load"
                and not _is_constant(keywords.get("allow_pickle"), False))
            or (owner == "pickle" and name in ("load", "loads"))
            or (owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"))
        )
        if unsafe:
            problems.append(f"{node.lineno}: {ast.unparse(node)}")
    return problems


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def test_scan_finds_unsafe_calls():
    assert _unsafe_loads("import torch\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
                         "np.load(p)\npickle.loads(b)\nyaml.load(s)\n") == [
        "2: torch.load(p)", "3: torch.load(p, weights_only=False)", "4: np.load(p)",
        "5: pickle.loads(b)", "6: yaml.load(s)"]
    assert _unsafe_loads("torch.load(p, weights_only=True)\nnp.load(p, allow_pickle=False)\n"
                         "yaml.safe_load(s)\n") == []


def test_no_load_call_in_the_package_can_run_code():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        problems = _unsafe_loads(path.read_text(encoding="utf-8"))
        if problems:
            found[str(path.relative_to(PACKAGE))] = problems
    assert found == {}

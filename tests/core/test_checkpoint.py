import json

import pytest
import torch

from motionmae.checkpoints.format import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
    verify,
)


def _save(root, step, value):
    return save_checkpoint(root, step, {"w": torch.full((3,), float(value))}, {"step": step},
                           {"train_state": {"step": step}})


def test_round_trip_and_latest(tmp_path):
    root = tmp_path / "checkpoints"
    _save(root, 10, 1.0)
    _save(root, 20, 2.0)
    latest = latest_checkpoint(root)
    assert latest.step == 20
    assert torch.equal(latest.weights()["w"], torch.full((3,), 2.0))
    assert latest.state()["train_state"]["step"] == 20
    assert latest.config() == {"step": 20}


def test_corrupt_latest_falls_back_to_previous(tmp_path):
    root = tmp_path / "checkpoints"
    _save(root, 10, 1.0)
    newest = _save(root, 20, 2.0)
    data = bytearray((newest.path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (newest.path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        verify(newest.path)
    assert latest_checkpoint(root).step == 10


def test_half_written_folder_is_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    _save(root, 10, 1.0)
    partial = root / "step_00000020"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"garbage")
    assert latest_checkpoint(root).step == 10


def test_prune_keeps_last_and_every_nth(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (100, 200, 300, 400):
        _save(root, step, step)
    prune_checkpoints(root, keep_last=1, keep_every=200)
    assert [c.step for c in list_checkpoints(root)] == [200, 400]


def test_resolve_accepts_run_folder_checkpoint_folder_and_file(tmp_path):
    root = tmp_path / "run" / "checkpoints"
    ckpt = _save(root, 5, 1.0)
    assert resolve_checkpoint(tmp_path / "run").path == ckpt.path
    assert resolve_checkpoint(ckpt.path).path == ckpt.path
    assert resolve_checkpoint(ckpt.path / "model.safetensors").path == ckpt.path
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "missing")


def test_state_refuses_pickled_code(tmp_path):
    root = tmp_path / "checkpoints"
    ckpt = _save(root, 1, 1.0)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, ckpt.path / "state.pt")
    with pytest.raises(Exception, match=r"(?i)weights_only|unsupported|global"):
        ckpt.state()


def test_manifest_lists_every_file(tmp_path):
    ckpt = _save(tmp_path / "checkpoints", 3, 1.0)
    manifest = json.loads((ckpt.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "config.json", "state.pt"}

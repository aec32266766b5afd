import errno
import json

import pytest
import torch

from motionmae.checkpoints import format as checkpoint_format
from motionmae.checkpoints.format import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    recover_latest,
    remove_leftovers,
    resolve_checkpoint,
    save_checkpoint,
    verify,
)
from motionmae.fileio import StorageError


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


def test_prune_keeps_the_last_two_by_default(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        _save(root, step, step)
        prune_checkpoints(root)
    assert [c.step for c in list_checkpoints(root)] == [2, 3]


def test_a_corrupt_manifest_is_a_checkpoint_error(tmp_path):
    ckpt = _save(tmp_path / "checkpoints", 3, 1.0)
    manifest = ckpt.path / "manifest.json"
    for damaged in (b"\xff\xfe\x00", b'{"files": 3}', b'{"files": {"state.pt": {}}}', b"[]"):
        manifest.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=r"manifest\.json is corrupt"):
            verify(ckpt.path)


def test_a_full_disk_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    _save(root, 10, 1.0)
    before = sorted(p.name for p in root.iterdir())
    real = checkpoint_format.write_file

    def full_at_state(path, payload):
        if path.name == "state.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, payload)

    monkeypatch.setattr(checkpoint_format, "write_file", full_at_state)
    with pytest.raises(OSError, match="No space left"):
        _save(root, 20, 2.0)
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint_format, "atomic_write_text",
                        lambda path, text: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError, match="full"):  # the new folder never becomes latest
        _save(root, 20, 2.0)
    assert sorted(p.name for p in root.iterdir()) == before
    assert latest_checkpoint(root).step == 10


def test_the_newest_complete_checkpoint_wins_over_the_pointer(tmp_path, caplog):
    root = tmp_path / "checkpoints"
    _save(root, 10, 1.0)
    _save(root, 20, 2.0)
    (root / "latest").write_text("step_00000010\n")  # killed before the pointer moved
    assert latest_checkpoint(root).step == 20
    assert "names 'step_00000010'; the newest complete checkpoint is step_00000020" in caplog.text


def test_remove_leftovers_takes_only_what_killed_writes_left(tmp_path):
    root = tmp_path / "checkpoints"
    ckpt = _save(root, 10, 1.0)
    (root / ".step_00000020.abc123.tmp").mkdir()
    (root / ".step_00000020.abc123.tmp" / "model.safetensors").write_bytes(b"partial")
    (root / ".latest.x9.tmp").write_text("step_00000020\n")
    (root / "notes.txt").write_text("mine\n")
    removed = remove_leftovers(root)
    assert sorted(p.name for p in removed) == [".latest.x9.tmp", ".step_00000020.abc123.tmp"]
    assert sorted(p.name for p in root.iterdir()) == ["latest", "notes.txt", ckpt.path.name]


def test_recover_latest_repairs_the_folder_a_resume_reads(tmp_path, caplog):
    """What a resume continues from: the leftovers of a killed write removed, ``latest``
    moved to the newest complete checkpoint, the other files left alone."""
    root = tmp_path / "checkpoints"
    assert recover_latest(root) is None  # no folder yet: nothing to resume
    _save(root, 10, 1.0)
    newest = _save(root, 20, 2.0)
    (root / "latest").write_text("step_00000010\n")  # killed before the pointer moved
    (root / ".step_00000030.abc123.tmp").mkdir()
    (root / "notes.txt").write_text("mine\n")
    caplog.set_level("INFO")
    assert recover_latest(root) == newest
    assert (root / "latest").read_text() == "step_00000020\n"
    assert sorted(p.name for p in root.iterdir()) == [
        "latest", "notes.txt", "step_00000010", "step_00000020"]
    assert ".step_00000030.abc123.tmp, left by a checkpoint write that was killed" in caplog.text


def test_recover_latest_on_a_full_disk_is_a_storage_error_naming_the_pointer(tmp_path,
                                                                              monkeypatch):
    root = tmp_path / "checkpoints"
    _save(root, 10, 1.0)
    _save(root, 20, 2.0)
    (root / "latest").write_text("step_00000010\n")
    monkeypatch.setattr(checkpoint_format, "atomic_write_text",
                        lambda path, text: (_ for _ in ()).throw(
                            OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(StorageError, match=f"^could not write {root / 'latest'}: No space "
                       "left on device$"):
        recover_latest(root)
    assert (root / "latest").read_text() == "step_00000010\n"

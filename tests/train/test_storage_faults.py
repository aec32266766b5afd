"""Nothing lost on a full disk or a damaged checkpoint.

A full disk (``OSError(ENOSPC)`` injected into each function that writes a run's files) ends
the command with one line and exit status 4, leaves ``latest`` on the previous checkpoint, and
once space is freed ``--resume`` reaches the uninterrupted run's weights and metrics. A
damaged newest checkpoint (truncated, flipped bytes, no manifest) is passed over for the one
before, which the default ``run.keep_last=2`` keeps, and set aside so the resumed run's
pruning keeps two good ones; a broken ``latest`` pointer or a
checkpoint the pointer never reached costs nothing; what a killed write left is removed.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from motionmae.checkpoints import format as checkpoint_format
from motionmae.cli import main
from motionmae.data import badvideos
from motionmae.data.lists import VideoEntry, read_video_list, write_video_list
from motionmae.data.loader import EpochSampler
from motionmae.errors import ENVIRONMENT
from motionmae.train import records

STEPS, BATCH = 4, 2
SETTINGS = ["data.frames=4", "data.stride=2", "data.size=32", "data.flip=false",
            "data.workers=0", "data.on_error=skip", "model.depth=1", "model.decoder_depth=1",
            "model.embed_dim=64", "model.num_heads=2", "model.decoder_dim=64",
            "model.decoder_heads=2", f"run.batch_size={BATCH}", f"run.steps={STEPS}",
            "run.log_every=1", "run.ckpt_every=2", "optim.lr=1e-3",
            "optim.warmup_fraction=0.0"]


@pytest.fixture(scope="module")
def listing(tmp_path_factory) -> Path:
    """Nine videos and an unreadable one that step 3 draws (so bad_videos.tsv is written
    after the checkpoint of step 2)."""
    from motionmae.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("storage-videos")
    videos = make_synthetic_dataset(root, num_train=9, num_val=1, frames=8, size=32, seed=5)
    good = read_video_list(videos.train_list)
    sampler = EpochSampler(len(good.entries) + 1, seed=0)
    third_step = list(sampler)[2 * BATCH]
    broken = root / "broken.mp4"
    broken.write_text("not a video\n")
    entries = list(good.entries)
    entries.insert(third_step, VideoEntry(path=broken, label=0))
    path = root / "train.txt"
    write_video_list(path, entries, good.classes)
    return path


def _pretrain(listing: Path, out: Path, *flags: str) -> int:
    sets = [arg for item in SETTINGS for arg in ("--set", item)]
    return main(["pretrain", "--data", str(listing), "--out", str(out), *sets, *flags])


@pytest.fixture(scope="module")
def reference(listing, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("storage-reference") / "run"
    assert _pretrain(listing, out) == 0
    assert (out / "bad_videos.tsv").read_text().startswith(str(listing.parent / "broken.mp4"))
    return out


def _deterministic_records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in records.WALL_CLOCK_FIELDS}
            for line in lines]


def _assert_same_run(out: Path, reference: Path) -> None:
    """Same final weights (bit for bit) and the same records, step for step."""
    final = f"checkpoints/step_{STEPS:08d}/model.safetensors"
    mine, theirs = load_file(out / final), load_file(reference / final)
    assert mine.keys() == theirs.keys()
    for key in theirs:
        assert torch.equal(mine[key], theirs[key]), key
    assert _deterministic_records(out) == _deterministic_records(reference)


def _full_disk(path: Path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def _failing_write_file(name: str):
    """format.write_file that fills the disk at file ``name`` of the step-4 checkpoint (after
    writing half of it)."""
    real = checkpoint_format.write_file

    def write_file(path: Path, payload) -> None:
        if path.name == name and f".step_{STEPS:08d}." in path.parent.name:
            path.write_bytes(bytes(payload)[: len(payload) // 2])
            raise _full_disk(path)
        real(path, payload)

    return checkpoint_format, "write_file", write_file


def _failing_latest():
    real = checkpoint_format.atomic_write_text

    def atomic_write_text(path: Path, text: str) -> None:
        if path.name == "latest" and text.strip() == f"step_{STEPS:08d}":
            raise _full_disk(path)
        real(path, text)

    return checkpoint_format, "atomic_write_text", atomic_write_text


def _failing_append(module, name: str):
    """``module.append_text`` that fills the disk at file ``name`` from step 3 on."""
    real = module.append_text

    def append_text(path: Path, text: str) -> None:
        if path.name == name and (name != "metrics.jsonl" or json.loads(text)["step"] >= 3):
            raise _full_disk(path)
        real(path, text)

    return module, "append_text", append_text


def _failing_environment():
    real = records.atomic_write_text

    def atomic_write_text(path: Path, text: str) -> None:
        if path.name == "env.json":
            raise _full_disk(path)
        real(path, text)

    return records, "atomic_write_text", atomic_write_text


# (fault, what the one-line error names, the checkpoint folders left)
WRITE_PATHS = {
    "weights": (lambda: _failing_write_file("model.safetensors"),
                "could not write the checkpoint of step 4", ["step_00000002"]),
    "state.pt": (lambda: _failing_write_file("state.pt"),
                 "could not write the checkpoint of step 4", ["step_00000002"]),
    "manifest": (lambda: _failing_write_file("manifest.json"),
                 "could not write the checkpoint of step 4", ["step_00000002"]),
    "latest": (_failing_latest, "could not write the checkpoint of step 4", ["step_00000002"]),
    "metrics.jsonl": (lambda: _failing_append(records, "metrics.jsonl"),
                      "metrics.jsonl: No space left on device", ["step_00000002"]),
    "bad_videos.tsv": (lambda: _failing_append(badvideos, "bad_videos.tsv"),
                       "bad_videos.tsv: No space left on device", ["step_00000002"]),
}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("motionmae pretrain: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _assert_left_at_step_2(out: Path, kept: list[str]) -> None:
    root = out / "checkpoints"
    assert (root / "latest").read_text().strip() == "step_00000002"
    assert sorted(p.name for p in root.iterdir()) == ["latest", *kept]  # no temporary files


@pytest.mark.parametrize("write_path", WRITE_PATHS)
def test_a_full_disk_is_one_line_and_resume_continues(listing, reference, tmp_path, capsys,
                                                      monkeypatch, write_path):
    fault, named, kept = WRITE_PATHS[write_path]
    out = tmp_path / "run"
    monkeypatch.setattr(*fault())
    assert _pretrain(listing, out) == ENVIRONMENT
    monkeypatch.undo()  # space freed
    line = _one_error_line(capsys)
    assert named in line and "No space left on device" in line, line
    assert "'latest' still names step_00000002; free space" in line and "--resume" in line
    _assert_left_at_step_2(out, kept)
    assert _pretrain(listing, out, "--resume") == 0
    _assert_same_run(out, reference)


def test_a_full_disk_at_env_json_on_resume(listing, reference, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(*_failing_write_file("state.pt"))
    assert _pretrain(listing, out) == ENVIRONMENT
    monkeypatch.undo()
    capsys.readouterr()
    monkeypatch.setattr(*_failing_environment())
    assert _pretrain(listing, out, "--resume") == ENVIRONMENT
    monkeypatch.undo()
    line = _one_error_line(capsys)
    assert f"could not write {out / 'env.json'}: No space left on device" in line, line
    _assert_left_at_step_2(out, ["step_00000002"])
    assert _pretrain(listing, out, "--resume") == 0
    _assert_same_run(out, reference)


def _truncate(checkpoint: Path) -> None:
    state = checkpoint / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def _flip_bytes(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))


def _drop_manifest(checkpoint: Path) -> None:
    (checkpoint / "manifest.json").unlink()


@pytest.mark.parametrize("damage,reason", [
    (_truncate, "state.pt does not match its checksum"),
    (_flip_bytes, "model.safetensors does not match its checksum"),
    (_drop_manifest, "no manifest.json"),
])
def test_resume_falls_back_from_a_damaged_newest_checkpoint(listing, reference, tmp_path,
                                                            caplog, damage, reason):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    newest = out / "checkpoints" / f"step_{STEPS:08d}"
    damage(newest)
    with caplog.at_level(logging.WARNING):
        assert _pretrain(listing, out, "--resume") == 0
    assert f"passing over the damaged checkpoint {newest}: {reason}" in caplog.text
    checkpoint_format.verify(newest)  # written again by steps 3 and 4
    assert (out / "checkpoints" / "latest").read_text() == f"{newest.name}\n"
    _assert_same_run(out, reference)


def test_a_damaged_newest_checkpoint_is_set_aside_so_pruning_keeps_the_good_ones(
        listing, reference, tmp_path, caplog):
    """Resumed with checkpoints on other steps than the damaged one's, the run would never
    rewrite it: counted among the two kept, it would leave one good checkpoint."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    root = out / "checkpoints"
    damaged = root / f"step_{STEPS:08d}"
    _flip_bytes(damaged)
    with caplog.at_level(logging.WARNING):
        assert _pretrain(listing, out, "--resume", "--set", "run.ckpt_every=3",
                         "--set", f"run.steps={STEPS + 2}") == 0
    assert (f"moved the damaged checkpoint {damaged.name} to {damaged.name}.damaged"
            in caplog.text)
    kept = [c.path.name for c in checkpoint_format.list_checkpoints(root)]
    assert kept == ["step_00000003", f"step_{STEPS + 2:08d}"]
    assert (root / f"{damaged.name}.damaged").is_dir()
    for name in kept:
        checkpoint_format.verify(root / name)
    assert (root / "latest").read_text() == f"step_{STEPS + 2:08d}\n"
    # Damaged again at the same step, it does not overwrite the first copy.
    (root / f"step_{STEPS + 2:08d}").rename(damaged)
    _flip_bytes(damaged)
    assert checkpoint_format.recover_latest(root).step == 3
    assert (root / f"{damaged.name}.damaged.1").is_dir()
    assert (root / "latest").read_text() == "step_00000003\n"


@pytest.mark.parametrize("pointer", [b"\xff\xfe\x00garbage", b"step_00000009\n", b""])
def test_a_broken_latest_pointer_costs_nothing(listing, reference, tmp_path, caplog, pointer):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "checkpoints" / "latest").write_bytes(pointer)
    with caplog.at_level(logging.WARNING):
        assert _pretrain(listing, out, "--resume") == 0
    assert (f"{out / 'checkpoints' / 'latest'} names " in caplog.text
            and "the newest complete checkpoint is step_00000004: using it" in caplog.text)
    assert (out / "checkpoints" / "latest").read_text() == "step_00000004\n"  # mended
    _assert_same_run(out, reference)


def test_what_a_killed_write_left_is_removed_or_adopted(listing, reference, tmp_path, caplog):
    """A SIGKILL leaves a temporary checkpoint folder, a temporary ``latest``, or a complete
    checkpoint whose ``latest`` update never happened."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    root = out / "checkpoints"
    shutil.copytree(root / "step_00000004", root / ".step_00000006.k3j2_x.tmp")
    (root / ".latest.a8c1.tmp").write_text("step_00000006\n")
    (root / "latest").write_text("step_00000002\n")  # killed before step 4 became latest
    with caplog.at_level(logging.INFO):
        assert _pretrain(listing, out, "--resume") == 0
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000002",
                                                      "step_00000004"]
    assert "'step_00000002'; the newest complete checkpoint is step_00000004" in caplog.text
    assert (root / "latest").read_text() == "step_00000004\n"
    _assert_same_run(out, reference)

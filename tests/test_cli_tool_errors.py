"""``visualize``, ``tracks`` and ``extract-tracks``: what a user gets wrong ends as one line
and a telling exit status, before any work (through ``cli.main``, as a user runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

# The module's pretrain and fine-tune runs, and its error-line reader.
from test_cli_errors import _one_line, checkpoints  # noqa: F401  (a fixture, used by runs)

from motionmae.checkpoints.format import latest_checkpoint
from motionmae.cli import main
from motionmae.data import read_video_list
from motionmae.errors import DATA, USAGE


@pytest.fixture(scope="module")
def runs(checkpoints: dict[str, Path],  # noqa: F811
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``checkpoints`` (a pretrain and a fine-tune run), an 'hf' export of the first, and a
    video of their list."""
    hf = tmp_path_factory.mktemp("cli-tools") / "hf"
    assert main(["export", "--checkpoint", str(checkpoints["pretrain"]), "--format", "hf",
                 "--out", str(hf)]) == 0
    return {**checkpoints, "hf": hf,
            "video": read_video_list(checkpoints["list"]).entries[0].path}


def test_visualize_an_exported_encoder_is_a_data_error(runs: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "v"
    capsys.readouterr()
    assert main(["visualize", "--checkpoint", str(runs["hf"]), str(runs["video"]),
                 "--out", str(out)]) == DATA
    assert _one_line(capsys.readouterr().err, "visualize") == (
        f"motionmae visualize: error: {runs['hf']}: an exported encoder (no decoders, no "
        "pretraining config); visualize needs a pretraining run folder or checkpoint (with "
        "its decoders)")
    assert not out.exists()


def test_visualize_a_finetuning_run_says_it_needs_a_pretraining_one(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "v"
    checkpoint = latest_checkpoint(runs["finetune"] / "checkpoints").path
    for given in (runs["finetune"], checkpoint):
        capsys.readouterr()
        assert main(["visualize", "--checkpoint", str(given), str(runs["video"]),
                     "--out", str(out)]) == DATA
        assert _one_line(capsys.readouterr().err, "visualize") == (
            f"motionmae visualize: error: {checkpoint}: a fine-tuning checkpoint (a "
            "classifier); visualize needs a pretraining run folder or checkpoint (with its "
            "decoders)")
    assert not out.exists()


def test_visualize_a_pretraining_run_still_draws(runs: dict[str, Path], tmp_path: Path) -> None:
    assert main(["visualize", "--checkpoint", str(runs["pretrain"]), str(runs["video"]),
                 "--out", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "mask.png").is_file()


@pytest.mark.parametrize("draw", ["t.avi", "t"])
def test_tracks_draw_suffix_is_checked_before_tracking(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, draw: str) -> None:
    out, drawn = tmp_path / "t.npz", tmp_path / draw
    capsys.readouterr()
    assert main(["tracks", str(runs["video"]), "--out", str(out), "--grid", "4",
                 "--draw", str(drawn)]) == USAGE
    suffix = repr(Path(draw).suffix)
    assert _one_line(capsys.readouterr().err, "tracks") == (
        f"motionmae tracks: error: --draw {drawn}: unsupported suffix {suffix}; use one of "
        ".mp4, .gif, .png")
    assert not out.exists() and not drawn.exists()  # nothing tracked, nothing written


def test_tracks_draw_suffix_any_case(runs: dict[str, Path], tmp_path: Path) -> None:
    assert main(["tracks", str(runs["video"]), "--out", str(tmp_path / "t.npz"), "--grid", "4",
                 "--draw", str(tmp_path / "t.GIF")]) == 0
    assert (tmp_path / "t.npz").is_file() and (tmp_path / "t.GIF").is_file()


def test_tracks_cotracker_without_checkpoint_names_the_flag(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "t.npz"
    capsys.readouterr()
    assert main(["tracks", str(runs["video"]), "--out", str(out), "--tracker",
                 "cotracker"]) == USAGE
    assert _one_line(capsys.readouterr().err, "tracks") == (
        "motionmae tracks: error: --tracker cotracker needs --checkpoint FILE: the local "
        "CoTracker3 checkpoint (scaled_offline.pth, from "
        "https://huggingface.co/facebook/cotracker3)")
    assert not out.exists()


def test_cotracker_help_names_the_real_config_keys(runs: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "scaled_offline.pth"
    capsys.readouterr()
    assert main(["tracks", str(runs["video"]), "--out", str(tmp_path / "t.npz"), "--tracker",
                 "cotracker", "--checkpoint", str(missing)]) == DATA
    line = _one_line(capsys.readouterr().err, "tracks")
    assert line.startswith(f"motionmae tracks: error: CoTracker checkpoint not found: {missing} "
                           "(expected scaled_offline.pth for variant='offline'). CoTracker3's "
                           "checkpoint is scaled_offline.pth"), line
    assert "given as --checkpoint (motionmae tracks), tracking.cotracker.checkpoint and " \
           "tracking.cotracker.variant (a run's config)" in line, line
    assert "tracking.cotracker_" not in line, line  # not the legacy key names


def test_cotracker_code_help_names_the_real_config_key(tmp_path: Path) -> None:
    from motionmae.motion import make_tracker

    checkpoint = tmp_path / "scaled_offline.pth"
    checkpoint.write_bytes(b"")
    with pytest.raises(FileNotFoundError) as error:
        make_tracker("cotracker", checkpoint=checkpoint, code=tmp_path / "no-clone")
    message = str(error.value)
    assert "name the clone in tracking.cotracker.code" in message, message
    assert "tracking.cotracker_" not in message, message


def test_extract_tracks_missing_video_reads_file_not_found(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "gone.mp4"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{runs['video']} 0\n{missing} 1\n")
    capsys.readouterr()
    assert main(["extract-tracks", "--data", str(listing), "--cache", str(tmp_path / "c"),
                 "--set", "data.frames=4", "--set", "data.size=32"]) == DATA
    captured = capsys.readouterr()
    assert "1 tracked, 0 already cached, 1 failed" in captured.out
    failed = [line for line in captured.err.splitlines() if line.startswith("  failed: ")]
    assert failed == [f"  failed: {missing}: file not found"], captured.err


def test_extract_tracks_takes_a_run_folder_as_config(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    cache = tmp_path / "c"
    assert main(["extract-tracks", "--data", str(runs["list"]), "--cache", str(cache),
                 "--config", str(runs["pretrain"])]) == 0
    # The run's clip geometry, not the defaults (16 frames at 224).
    (settings,) = json.loads((cache / "settings.json").read_text()).values()
    assert (settings["frames"], settings["decode_size"]) == (4, 32)
    capsys.readouterr()
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert main(["extract-tracks", "--data", str(runs["list"]), "--cache", str(cache),
                 "--config", str(empty)]) == USAGE
    assert _one_line(capsys.readouterr().err, "extract-tracks") == (
        f"motionmae extract-tracks: error: config file {empty} is a folder without a "
        "config.yaml (not a run folder)")

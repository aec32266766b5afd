"""Long runs and bad or short videos: skip, list in RUN/bad_videos.tsv, stop past the fraction;
short videos padded or stretched, and said so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from motionmae.cli import main
from motionmae.config import DataConfig
from motionmae.data.badvideos import BadVideoLog, read_bad_videos
from motionmae.data.dataset import VideoDataset
from motionmae.data.lists import VideoEntry, VideoList
from motionmae.data.synthetic import SyntheticDataset
from motionmae.data.transforms import clip_indices, fitting_stride
from motionmae.errors import DATA, DataError

TINY = ["--model", "tiny", "--frames", "4", "--size", "32", "--set", "model.depth=1", "--set",
        "model.decoder_depth=1", "--set", "data.workers=0", "--set", "run.log_every=1",
        "--set", "data.flip=false", "--set", "run.ckpt_every=100"]


def _list(tmp_path: Path, synthetic: SyntheticDataset, good: int, bad: int) -> Path:
    videos = sorted(synthetic.train_list.parent.rglob("*.mp4"))[:good]
    assert len(videos) == good
    lines = [f"{v} 0" for v in videos]
    for i in range(bad):
        broken = tmp_path / f"broken{i}.mp4"
        broken.write_text("not a video")
        lines.append(f"{broken} 0")
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def test_one_bad_video_in_twenty_is_listed_and_the_run_finishes(
        tmp_path: Path, synthetic: SyntheticDataset, caplog: pytest.LogCaptureFixture) -> None:
    listing = _list(tmp_path, synthetic, good=18, bad=2)
    (tmp_path / "broken1.mp4").unlink()  # one bad file and one missing path
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert main(["pretrain", "--data", str(listing), "--out", str(run), "--steps", "2",
                     "--batch-size", "10", *TINY]) == 0  # one epoch: every video drawn
    bad = read_bad_videos(run / "bad_videos.tsv")
    assert bad == {str(tmp_path / "broken0.mp4"): "cannot be opened as media: Invalid data "
                   "found when processing input (not a video file, or truncated or damaged)",
                   str(tmp_path / "broken1.mp4"): "file not found"}
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2 and records[-1]["bad_video_files"] == 2
    # The synthetic videos have 16 frames; clips of 4 frames at stride 4 span 13: they fit.
    assert not any("padded" in r.getMessage() for r in caplog.records)
    # Resume keeps the list and adds no duplicate.
    assert main(["pretrain", "--data", str(listing), "--out", str(run), "--steps", "3",
                 "--batch-size", "10", "--resume", *TINY]) == 0
    lines = (run / "bad_videos.tsv").read_text().splitlines()
    assert len(lines) == 2 and len(set(lines)) == 2


def test_bad_files_are_counted_once_and_their_replaced_draws_apart(
        tmp_path: Path, synthetic: SyntheticDataset, caplog: pytest.LogCaptureFixture) -> None:
    """2 bad files over 3 epochs are drawn (and replaced) at least 6 times: the log, the
    metrics, the report and the model card say "2 files" and the draws, each named."""
    from motionmae.interop import export
    from motionmae.viz.report import build_report, summary

    listing = _list(tmp_path, synthetic, good=4, bad=2)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert main(["pretrain", "--data", str(listing), "--out", str(run), "--epochs", "3",
                     "--batch-size", "2", *TINY]) == 0  # 3 steps per epoch
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 9 and records[-1]["bad_video_files"] == 2
    draws = records[-1]["bad_video_draws"]
    assert draws >= 6  # every epoch draws each bad file; a replacement may draw one again
    assert len(read_bad_videos(run / "bad_videos.tsv")) == 2
    assert (f"{draws} draw(s) of bad video files were replaced by other videos "
            f"(data.on_error=skip); 2 bad file(s) in the current list. "
            f"{run / 'bad_videos.tsv'} lists every bad file met with its reason") in caplog.text
    info = summary(run)
    assert (info["bad_video_files"], info["bad_video_draws"]) == (2, draws)
    page = build_report(run).read_text()
    assert ("<b>2</b><span>bad video files skipped</span>" in page
            and f"<b>{draws}</b><span>draws of bad videos replaced</span>" in page)
    card = (export(run, "motionmae", tmp_path / "export") / "README.md").read_text()
    assert "- Bad video files skipped: 2 (the run's bad_videos.tsv lists them)" in card
    assert f"- Draws of a bad video replaced by another video: {draws}" in card


def test_a_checkpoint_saving_the_draws_as_bad_videos_resumes(
        tmp_path: Path, synthetic: SyntheticDataset) -> None:
    """Checkpoints from before the two counts saved ``train_state.bad_videos`` (the draws)."""
    import torch

    from motionmae.checkpoints.format import MANIFEST, STATE, latest_checkpoint
    from motionmae.fileio import sha256_file
    from motionmae.train.save_resume import TrainState

    assert TrainState.from_saved({"step": 3, "bad_videos": 5}) == TrainState(
        step=3, bad_video_draws=5)
    listing = _list(tmp_path, synthetic, good=3, bad=1)  # 2 steps draw all 4
    run = tmp_path / "run"
    flags = ["--data", str(listing), "--out", str(run), "--batch-size", "2", *TINY]
    assert main(["pretrain", *flags, "--steps", "2"]) == 0
    state_file = latest_checkpoint(run / "checkpoints").path / STATE
    state = torch.load(state_file, weights_only=True)
    saved = state["train_state"]
    state["train_state"] = {"bad_videos": saved.pop("bad_video_draws") + 10,
                            **{k: v for k, v in saved.items() if k != "bad_video_files"}}
    torch.save(state, state_file)
    manifest = json.loads((state_file.parent / MANIFEST).read_text())
    manifest["files"][STATE] = {"size": state_file.stat().st_size,
                                "sha256": sha256_file(state_file)}
    (state_file.parent / MANIFEST).write_text(json.dumps(manifest))
    assert main(["pretrain", *flags, "--steps", "3", "--resume"]) == 0
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["bad_video_files"] == 1
    assert last["bad_video_draws"] >= 10 + 1  # the saved draws carried on


def test_half_bad_list_stops_early_naming_the_fraction(
        tmp_path: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture) -> None:
    listing = _list(tmp_path, synthetic, good=10, bad=10)
    run = tmp_path / "run"
    code = main(["pretrain", "--data", str(listing), "--out", str(run), "--steps", "20",
                 "--batch-size", "2", *TINY])
    err = capsys.readouterr().err
    assert code == DATA
    assert "videos seen so far are bad" in err and "> data.max_bad_fraction=0.01)" in err
    assert str(run / "bad_videos.tsv") in err
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] < 10  # stopped within the first epoch
    assert 4 <= len(read_bad_videos(run / "bad_videos.tsv")) <= 10
    # The message's own way on: a clean list from check-data, then --resume on it.
    recovery = err[err.index("`motionmae check-data"):]
    assert "then --resume --data DIR/clean.txt --set run.resume_with_other_videos=true" in recovery
    assert main(["check-data", str(listing), "--out", str(tmp_path / "checked"),
                 "--config", str(run), "--workers", "1"]) == DATA  # bad ones found: status 3
    capsys.readouterr()
    assert main(["pretrain", "--data", str(tmp_path / "checked" / "clean.txt"), "--out",
                 str(run), "--resume", "--set", "run.resume_with_other_videos=true"]) == 0
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 20 and records[-1]["bad_video_files"] == 0


def test_stop_rule_tolerates_a_few_and_judges_the_fraction(tmp_path: Path) -> None:
    videos = [f"v{i}.mp4" for i in range(1000)]
    log = BadVideoLog(tmp_path / "bad.tsv", videos, max_fraction=0.01, tolerated=3, write=True)
    log.add("v0.mp4\tempty file")
    log.flush(seen=3)  # 1 of 3 bad: tolerated
    log.add(["v1.mp4\tx\nv2.mp4\ty", "v3.mp4\tz"])
    log.add("v3.mp4\tagain")
    log.flush(seen=500)  # 4 of 500 = 0.8 %: under 1 %
    assert log.bad == 4 and len((tmp_path / "bad.tsv").read_text().splitlines()) == 4
    log.add("v4.mp4\tw")
    with pytest.raises(DataError, match=r"5 of the 400 videos seen so far are bad \(1\.2% > "):
        log.flush(seen=400)
    # A list cleaned of its bad files no longer counts them (resume after fixing).
    clean = BadVideoLog(tmp_path / "bad.tsv", videos[5:], 0.01, 3, write=True)
    assert clean.bad == 0 and len(clean.known) == 5


# -- short videos ------------------------------------------------------------------------------


def test_stretch_samples_short_videos_at_the_largest_stride_that_fits() -> None:
    assert fitting_stride(16, 8, 4) == 2 and fitting_stride(100, 8, 4) == 4
    assert fitting_stride(5, 8, 4) == 1
    padded = clip_indices(16, 8, 4, None)
    assert padded.tolist() == [0, 4, 8, 12, 15, 15, 15, 15]
    stretched = clip_indices(16, 8, 4, None, short="stretch")
    assert stretched.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    starts = {int(clip_indices(16, 8, 4, np.random.default_rng(i), short="stretch")[0])
              for i in range(50)}
    assert starts == {0, 1}  # span 15 in 16 frames: two possible starts


@pytest.mark.parametrize("short", ["pad", "stretch"])
def test_short_real_video_is_counted_and_warned_once(
        synthetic: SyntheticDataset, short: str, caplog: pytest.LogCaptureFixture) -> None:
    paths = sorted(synthetic.train_list.parent.rglob("*.mp4"))[:2]  # 16 frames each
    config = DataConfig(frames=8, stride=4, size=32, scales=(1.0,), flip=False, workers=0,
                        short_videos=short)
    dataset = VideoDataset(VideoList([VideoEntry(p, 0) for p in paths]), config, train=True)
    indices = [dataset[i]["frame_indices"].tolist() for i in (0, 1, 0)]
    counts = dataset.short_clips()
    assert counts.clips == 3 and counts.shortest_frames == 16
    assert counts.shortest_path in {str(p) for p in paths}
    if short == "pad":
        assert counts.padded == 3 and indices[0] == [0, 4, 8, 12, 15, 15, 15, 15]
    else:
        assert counts.stretched == 3 and counts.padded == 0
        assert all(len(set(i)) == 8 and np.diff(i).tolist() == [2] * 7 for i in indices)
    with caplog.at_level(logging.WARNING, logger="motionmae.data.dataset"):
        assert dataset.warn_short_clips() and dataset.warn_short_clips()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "of 3 clips so far came from videos shorter than a clip's span (8 frames x " \
           "stride 4 = 29 source frames)" in messages[0]
    assert "(16 frames; the largest stride that fits it: 2)" in messages[0]
    if short == "pad":
        assert messages[0].startswith("3 of 3 clips") and "data.short_videos=stretch" in \
            messages[0]


def test_short_clips_are_counted_across_loader_workers(synthetic: SyntheticDataset) -> None:
    from motionmae.data import build_loader

    paths = sorted(synthetic.train_list.parent.rglob("*.mp4"))[:4]
    config = DataConfig(frames=8, stride=4, size=32, scales=(1.0,), flip=False, workers=2)
    dataset = VideoDataset(VideoList([VideoEntry(p, 0) for p in paths]), config, train=True)
    loader = build_loader(dataset, batch_size=2, workers=2, shuffle=False, seed=0)
    assert sum(len(b["clip"]) for b in loader) == 4
    assert dataset.short_clips().padded == 4

import html
import json
import sys

import cv2
import pytest

from motionmae.viz.plots import PLOT_SIZE
from motionmae.viz.report import build_report, report_main, summary

EVIL = '<script>alert("pwned")</script>'


def _record(step, loss):
    return {"step": step, "epoch": step // 20, "lr": 1e-4 * step / 50, "loss": loss,
            "loss/pixel": loss * 0.7, "loss/tracks": loss * 0.3, "grad_norm": 2.0 / step,
            "clips_per_s": 12.5, "skipped_steps": 0, "bad_videos": 1, "time": 1000.0 + step,
            "sampler/entropy": 3.0 - step / 100}


def _make_run(root):
    run = root / "run_a"
    run.mkdir()
    lines = [json.dumps(_record(s, 1.0 / s)) for s in (10, 20, 30)]
    lines.append(json.dumps(_record(20, 0.049)))  # a resume repeats step 20: last one wins
    lines += [json.dumps(_record(s, 1.0 / s)) for s in (30, 40, 50)]
    lines.append('{"step": 60, "epoch": 3, "lr": 0.0001, "lo')  # crash mid-write
    (run / "metrics.jsonl").write_text("\n".join(lines))
    (run / "config.yaml").write_text(
        "model:\n  size: tiny\nmasking:\n  kind: tube\n  ratio: 0.9\n"
        f"targets:\n  names: [pixel, tracks]\nrun:\n  out: '{EVIL}'\n"
    )
    for step in (30, 50):
        folder = run / "checkpoints" / f"step_{step:08d}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"0" * 2048)
        (folder / "config.json").write_text("{}")
        (folder / "manifest.json").write_text("{}")
    (run / "checkpoints" / ".step_00000060.abc.tmp").mkdir()  # half-written: ignored
    (run / "checkpoints" / "latest").write_text("step_00000050\n")
    (run / "eval").mkdir()
    (run / "eval" / "linear.json").write_text(json.dumps(
        {"kind": "linear", "top1": 0.625, "top5": 0.9, "chance": 0.1, "num_train": 40,
         "num_val": 16, "details": {"epochs": 100}}))
    (run / "eval" / "knn.json").write_text(json.dumps(
        {"kind": "<img src=x onerror=alert(1)>", "top1": 0.5, "top5": 0.8, "chance": 0.1,
         "num_train": 40, "num_val": 16, "details": {}}))
    (run / "eval" / "broken.json").write_text("{not json")
    return run


def test_summary_reads_the_run(tmp_path):
    info = summary(_make_run(tmp_path))
    assert info["run_name"] == "run_a"
    assert info["last_step"] == 50
    assert info["records"] == 5
    assert info["skipped_lines"] == 1
    assert info["final_loss"] == pytest.approx(0.02)
    assert info["final_losses"] == {"pixel": pytest.approx(0.014), "tracks": pytest.approx(0.006)}
    assert info["min_loss"] == pytest.approx(0.02) and info["min_loss_step"] == 50
    assert info["targets"] == ["pixel", "tracks"] and info["model"] == "tiny"
    assert info["num_checkpoints"] == 2 and info["latest_checkpoint"] == "step_00000050"
    assert info["best_probe"]["file"] == "linear.json"
    assert info["best_probe"]["top1"] == pytest.approx(0.625)
    assert info["duration_s"] == pytest.approx(40.0)


def test_report_writes_html_and_plots(tmp_path, caplog):
    run = _make_run(tmp_path)
    with caplog.at_level("WARNING"):
        index = report_main(run)
    assert index == run / "report" / "index.html"
    assert "truncated" in caplog.text
    page = index.read_text()
    for expected in ("run_a", "62.5%", "90.0%", "step_00000050", "step_00000030", "latest",
                     "0.02", "linear.json", "2.0 KiB", "size: tiny", "truncated",
                     "broken.json", "Gathered when this report was built"):
        assert expected in page, expected
    assert ".step_00000060" not in page
    assert "loss_targets.png" in page and "sampler_entropy.png" in page
    pngs = sorted(p.name for p in (run / "report").glob("*.png"))
    assert {"loss.png", "loss_targets.png", "lr.png", "clips_per_s.png", "grad_norm.png",
            "health.png", "sampler_entropy.png"} <= set(pngs)
    for name in pngs:
        assert f'src="{name}"' in page
        image = cv2.imread(str(run / "report" / name))
        assert image is not None and image.shape == (PLOT_SIZE[1], PLOT_SIZE[0], 3), name


def test_report_escapes_strings_from_files(tmp_path):
    page = build_report(_make_run(tmp_path)).read_text()
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_report_prefers_the_recorded_environment(tmp_path):
    run = _make_run(tmp_path)
    (run / "env.json").write_text(json.dumps({"torch": "9.9.9-recorded", "gpu": EVIL}))
    page = build_report(run).read_text()
    assert "9.9.9-recorded" in page and "Recorded by the training run" in page
    assert "<script>" not in page


def test_report_without_matplotlib_still_writes_html(tmp_path, monkeypatch):
    run = _make_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    page = build_report(run).read_text()
    assert "matplotlib is not installed" in page
    assert "<img" not in page
    assert "62.5%" in page


def test_report_of_an_empty_or_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        report_main(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="run folder"):
        report_main(tmp_path)
    (tmp_path / "config.yaml").write_text("model: {size: tiny}\n")
    page = report_main(tmp_path).read_text()
    assert "No checkpoints" in page and "no metrics records" in page


def _fit_run(root, tracks_explained):
    """A run of 50 logged steps: pixel learns (explained rises to 0.6), tracks falls fast to
    ``tracks_explained`` and stays; a linear probe logged every 20 steps."""
    run = root / "fit"
    run.mkdir()
    lines = []
    for step in range(10, 510, 10):
        pixel = 0.6 * step / 500
        tracks = 0.5 if step < 150 else tracks_explained
        record = {"step": step, "loss": 1.0, "loss/pixel": 1 - pixel, "trivial/pixel": 1.0,
                  "explained/pixel": pixel, "loss/tracks": 0.2 * (1 - tracks),
                  "trivial/tracks": 0.2, "explained/tracks": tracks}
        if step % 20 == 0:
            record["probe/linear"] = 0.1 + step / 1000
        lines.append(json.dumps(record))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_report_warns_when_a_target_stays_at_its_trivial_loss(tmp_path, caplog):
    run = _fit_run(tmp_path, tracks_explained=0.012)
    info = summary(run)
    fit = info["target_fit"]
    assert set(fit) == {"pixel", "tracks"}
    assert fit["pixel"]["loss"] == pytest.approx(0.4) and fit["pixel"]["trivial"] == 1.0
    assert fit["pixel"]["explained"] == pytest.approx(0.6)
    # The last 20% of 50 records: steps 410..500, pixel explained 0.492..0.6, mean 0.546.
    assert fit["pixel"]["tail_explained"] == pytest.approx(0.546)
    assert fit["tracks"]["tail_explained"] == pytest.approx(0.012)
    assert info["probes"] == {"linear": pytest.approx(0.6)}
    with caplog.at_level("WARNING"):
        page = report_main(run).read_text()
    expected = ("target tracks: the loss stays at the trivial predictor's (explained 1.2% over "
                "the last 20% of logged steps); the model predicts the batch mean, it is not "
                "learning this target")
    assert expected in caplog.text
    assert html.escape(expected) in page
    assert "target pixel" not in caplog.text and "target pixel" not in page
    for cell in ("trivial loss", "60.0%", "54.6%", "1.2%", "in-run probe/linear"):
        assert cell in page, cell
    pngs = {p.name for p in (run / "report").glob("*.png")}
    assert {"loss_targets.png", "explained.png", "probe.png"} <= pngs
    assert not any(name.startswith("metric_") for name in pngs)  # no stray per-key plots


def test_report_does_not_warn_about_a_learned_target(tmp_path, caplog):
    run = _fit_run(tmp_path, tracks_explained=0.3)
    with caplog.at_level("WARNING"):
        page = report_main(run).read_text()
    assert "not learning" not in caplog.text and "not learning" not in page


def test_report_of_a_run_without_trivial_records(tmp_path):
    page = build_report(_make_run(tmp_path)).read_text()
    assert "No <code>explained/*</code> records" in page
    assert summary(tmp_path / "run_a")["target_fit"] == {}


def test_health_plot_labels_every_line(tmp_path):
    from motionmae.viz.plots import _draw, plan_plots
    from motionmae.viz.runfiles import Metrics

    metrics = Metrics([{"step": s, "loss": 1.0, "skipped_steps": s // 20,
                        "bad_video_files": 2, "bad_video_draws": s // 5} for s in (10, 20, 30)])
    spec = next(s for s in plan_plots(metrics) if s.file == "health.png")
    legend = _draw(spec, metrics, tmp_path / "health.png").axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "skipped steps (non-finite loss or gradient)", "bad video files (distinct, skipped)",
        "draws of a bad video (replaced by another)"]
    # One series alone is labelled too.
    alone = Metrics([{"step": s, "bad_video_files": 1} for s in (10, 20)])
    spec = next(s for s in plan_plots(alone) if s.file == "health.png")
    legend = _draw(spec, alone, tmp_path / "alone.png").axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["bad video files (distinct, skipped)"]


def test_runs_from_before_the_two_bad_video_counts_logged_draws(tmp_path):
    info = summary(_make_run(tmp_path))  # its records carry bad_videos: 1, as older runs did
    assert info["bad_video_draws"] == 1 and info["bad_video_files"] is None
    page = build_report(tmp_path / "run_a").read_text()
    assert "<b>1</b><span>draws of bad videos replaced</span>" in page
    assert "bad video files" not in page

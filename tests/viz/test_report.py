import html
import json
import re
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


# A fine-tune run: its evaluation, written as `motionmae finetune` writes it


def _classifier_evaluation(labels, predicted, classes, num_classes=None):
    """An evaluation of ``len(labels)`` videos over ``len(classes)`` (or ``num_classes``)
    classes that predicts
    ``predicted`` (0.4 on it, 0.12 on the others); the last video's label gets probability 0,
    so it falls out of the top 5 of 6 classes."""
    import numpy as np

    from motionmae.eval.metrics import classification_metrics
    from motionmae.eval.multiview import ViewPredictions
    from motionmae.eval.predictions import Evaluation

    probs = np.full((len(labels), num_classes or len(classes)), 0.12)
    probs[np.arange(len(labels)), predicted] = 0.4
    probs[-1, labels[-1]] = 0.0
    labels = np.asarray(labels)
    views = ViewPredictions(probs, labels, np.arange(len(labels)), views=1)
    metrics = classification_metrics(probs, labels) if (labels >= 0).all() else None
    return Evaluation(views, [f"videos/{i:03d}.mp4" for i in range(len(labels))], classes,
                      (1, 1), metrics)


def _finetune_run(root):
    """A fine-tune run folder: config with a ``finetune`` section, fine-tuning records (no
    reconstruction targets) and ``eval/val.json`` + ``.csv`` written by the code
    ``motionmae finetune`` uses: 8 videos, 6 classes, top-1 5/8, top-5 7/8, mean class 2/4."""
    from motionmae.eval.predictions import save_evaluation

    run = root / "ft"
    run.mkdir()
    (run / "config.yaml").write_text(
        "model:\n  size: tiny\ndata:\n  train: train.txt\n  val: val.txt\n"
        "finetune:\n  checkpoint: pre\n  layer_decay: 0.75\nrun:\n  out: ft\n")
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(
        {"step": s, "epoch": 0, "lr": 1e-4, "train_top1": 0.125, "loss": 2.0 / s,
         "grad_norm": 7.5, "clips_per_s": 37.7, "skipped_steps": 0, "bad_video_files": 0,
         "bad_video_draws": 0, "time": 1000.0 + s}) for s in (2, 4)) + "\n")
    evaluation = _classifier_evaluation([0, 0, 0, 0, 1, 1, 2, 3], [0, 0, 0, 0, 2, 2, 2, 1],
                                        ["a", "b", "c", "d", "e", "f"])
    save_evaluation(evaluation, run / "eval" / "val.json",
                    {"checkpoint": "ft/checkpoints/step_00000004", "step": 4,
                     "data": "val.txt", "val_from_train": 0})
    return run


def _row(page, first_cell):
    """The cells (inner HTML) of the table row whose first cell is ``first_cell``."""
    start = page.index(f"<tr><td>{first_cell}</td>")
    row = page[start:page.index("</tr>", start)]
    return re.findall(r"<td[^>]*>(.*?)</td>", row)


def test_report_shows_a_finetune_runs_evaluation(tmp_path):
    run = _finetune_run(tmp_path)
    info = summary(run)
    assert info["kind"] == "finetune"
    assert info["best_classifier"] == {"file": "val.json", "top1": 0.625, "top5": 0.875,
                                       "mean_class": 0.5, "num_videos": 8}
    assert info["best_probe"] is None
    page = build_report(run).read_text()
    header = page[page.index("<h2>Evaluation</h2>"):]
    header = header[header.index("<thead>"):header.index("</thead>")]
    for column in ("top-1", "top-5", "mean class", "chance", "videos"):
        assert f"<th>{column}</th>" in header, column
    cells = _row(page, "val.json")
    assert cells[:9] == ["val.json", "classifier", "62.5%", "87.5%", "50.0%", "16.7%",
                         "–", "–", "8"]
    # The other fields name the checkpoint and views; not the per-video or per-class lists.
    assert "step_00000004" in cells[9] and "crops" in cells[9]
    for bulky in ("predictions", "probs", "confusion", "per_class"):
        assert bulky not in page, bulky
    assert "<b>62.5% <span>val.json</span></b><span>classifier top-1</span>" in page
    assert "best probe top-1" not in page


def test_report_of_a_finetune_run_has_no_target_section(tmp_path):
    page = build_report(_finetune_run(tmp_path)).read_text()
    assert "Targets against their trivial predictor" not in page
    assert "explained/*" not in page and "trivial" not in page
    # A pretraining run without the records still says why it has nothing to compare.
    pretrain = build_report(_make_run(tmp_path)).read_text()
    assert "<h2>Targets against their trivial predictor</h2>" in pretrain
    assert "No <code>explained/*</code> records" in pretrain


def test_unlabelled_classifier_evaluation_counts_its_videos(tmp_path):
    from motionmae.eval.predictions import save_evaluation
    from motionmae.viz.runfiles import eval_scores

    evaluation = _classifier_evaluation([-1, -1, -1], [1, 0, 1], None, num_classes=2)
    path, _ = save_evaluation(evaluation, tmp_path / "eval" / "test")
    scores = eval_scores(json.loads(path.read_text()))
    assert scores["kind"] == "classifier (unlabelled videos)"
    assert scores["top1"] is None and scores["num_videos"] == 3
    assert scores["chance"] == pytest.approx(1 / 2)  # no class names: two probabilities
    assert set(scores["details"]) == {"views"}


def test_report_says_a_loss_above_the_trivial_one_is_above_it(tmp_path, caplog):
    run = _fit_run(tmp_path, tracks_explained=-1.5)
    with caplog.at_level("WARNING"):
        page = report_main(run).read_text()
    expected = ("target tracks: the loss is above the trivial predictor's, 2.5 times it "
                "(explained -150.0% over the last 20% of logged steps); the model does worse "
                "than predicting the batch mean, it is not learning this target")
    assert expected in caplog.text
    assert html.escape(expected) in page
    for wrong in ("stays at", "the model predicts the batch mean"):
        assert wrong not in caplog.text and html.escape(wrong) not in page, wrong


def test_a_slightly_negative_explained_fraction_still_stays_at_the_trivial_loss(tmp_path,
                                                                                caplog):
    run = _fit_run(tmp_path, tracks_explained=-0.03)
    with caplog.at_level("WARNING"):
        report_main(run)
    assert ("target tracks: the loss stays at the trivial predictor's (explained -3.0% over "
            "the last 20% of logged steps); the model predicts the batch mean") in caplog.text
    assert "above" not in caplog.text


def test_report_reads_a_probe_file_of_several_probes(tmp_path):
    """`probe --kind linear,knn --out eval/probes.json` writes a list, one object per probe:
    each is a row of the report's table."""
    from motionmae.eval.probes import ProbeResult
    from motionmae.viz.runfiles import read_evals

    run = _make_run(tmp_path)
    results = [ProbeResult("linear", 0.75, 1.0, 0.25, 0.3, 40, 16, {"l2": 1e-4}),
               ProbeResult("knn", 0.5, 0.9, 0.25, 0.3, 40, 16, {"k": 20})]
    (run / "eval" / "probes.json").write_text(json.dumps([vars(r) for r in results]))
    evals, warnings = read_evals(run)
    from_list = [e.scores for e in evals if e.file == "probes.json"]
    assert [(s["kind"], s["top1"]) for s in from_list] == [("linear", 0.75), ("knn", 0.5)]
    assert not any("probes.json" in w for w in warnings)

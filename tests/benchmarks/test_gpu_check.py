"""The device check (``benchmarks/gpu_check.sh``) on the CPU with ``--fast``: every section
writes its rows with sane figures, and the paper estimates' FLOP formula is the counter's."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_estimates  # noqa: E402


def _check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("gpu_check")
    done = _check("--device", "cpu", "--fast", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    by_section: dict[str, list[dict]] = {}
    for line in (out / "gpu_check.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["device"] == "cpu" and row["fast"] is True
        by_section.setdefault(row["section"], []).append(row)
    return by_section


def test_every_section_wrote_its_rows(rows: dict[str, list[dict]]) -> None:
    assert list(rows) == ["environment", "step", "modes", "tracker", "resume"]
    assert [r["row"] for r in rows["modes"]] == ["workers", "step", "cached"]
    assert [r["precision"] for r in rows["step"]] == ["fp32", "bf16"]


def test_step_rows_compare_with_videomae(rows: dict[str, list[dict]]) -> None:
    fp32, bf16 = rows["step"]
    for row in (fp32, bf16):
        assert row["status"] == "ok"
        assert row["clips_per_s_mm"] > 0 and row["clips_per_s_hf"] > 0
        assert row["speed_ratio"] == pytest.approx(row["clips_per_s_mm"] / row["clips_per_s_hf"])
        assert row["peak_fraction_mm"] > 0
    assert fp32["peak_mb_mm"] > 0 and fp32["peak_mb_hf"] > 0  # --fast: fp32 memory only
    assert bf16["peak_mb_mm"] is None
    # The counted FLOPs of the motionmae step are the paper formula's (pixel target only).
    geometry = gpu_estimates.Geometry.of(4, 32, ratio=0.9)
    assert fp32["gflop_per_clip_mm"] * 1e9 * fp32["batch"] == pytest.approx(
        gpu_estimates.step_flops("tiny", geometry, ("pixel",), fp32["batch"]), rel=1e-6)


def test_tracking_modes(rows: dict[str, list[dict]]) -> None:
    workers, step, cached = rows["modes"]
    for row in (workers, step, cached):
        assert row["status"] == "ok", row
        assert row["clips_per_s"] > 0 and row["windows"] >= 1
        assert math.isfinite(row["final_loss"])
    assert cached["extract_videos_per_s"] > 0


def test_device_tracker_is_timed_and_accurate(rows: dict[str, list[dict]]) -> None:
    device, opencv = rows["tracker"]
    assert device["row"].startswith("torch_lk on cpu") and device["ms_per_clip"] > 0
    assert device["clips"] == 6 and device["points"] == 16
    for row in (device, opencv):
        assert row["status"] == "ok"
        for key in ("delta_avg", "occlusion_accuracy", "average_jaccard"):
            assert 0 <= row[key] <= 1, (row["row"], key)
    assert device["delta_avg_translation"] >= 0.9  # a translated real texture is tracked
    # The same algorithm as OpenCV's (docs/benchmarks.md: within 0.01).
    assert device["delta_avg"] == pytest.approx(opencv["delta_avg"], abs=0.01)
    assert device["occlusion_accuracy"] == pytest.approx(opencv["occlusion_accuracy"], abs=0.01)


def test_torchrun_run_resumes_to_the_uninterrupted_weights(rows: dict[str, list[dict]]) -> None:
    (row,) = rows["resume"]
    assert row["status"] == "ok" and row["row"] == "torchrun, 1 process (gloo)"
    assert 0 < row["stopped_at"] < row["steps"] == row["final_step"]
    assert row["weights_equal"] and row["max_abs_weight_diff"] == 0.0
    assert row["metrics_equal"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_with_a_hint(tmp_path: Path) -> None:
    done = _check("--out", str(tmp_path))
    assert done.returncode == 2
    assert "--device cuda: torch" in done.stderr and "sees no CUDA device" in done.stderr
    assert "--device cpu" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "gpu_check.jsonl").exists()


def test_step_flop_formula_counts_what_the_model_does() -> None:
    """Both decoders of the default mode, a geometry the masking rounds (3 of 4 positions)."""
    geometry = gpu_estimates.Geometry.of(4, 64)
    assert (geometry.grid.num_tokens, geometry.visible) == (32, 8)  # ratio 0.75
    targets = ("pixel", "tracks")
    assert gpu_estimates.counted_step_flops("tiny", geometry, targets) == pytest.approx(
        gpu_estimates.step_flops("tiny", geometry, targets), rel=1e-6)

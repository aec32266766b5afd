"""Motion probe suite: does an encoder pretrained with the library's defaults learn motion?

Five tasks whose classes differ only in motion, four of them made from real footage
(``motion_tasks.py``: camera motion, object motion relative to a moving scene with
occlusion, arrow of time, playback speed) and the demo's synthetic dataset. Each encoder
(row) is pretrained ONCE on the pooled unlabelled ``pretrain`` splits of all five tasks, then
its frozen tokens are extracted once per split and probed on every task: linear and kNN on
the mean token, attentive on all tokens (``motionmae.eval``, as
``benchmarks/representation.py``). Reference rows: a random-init encoder; ``single frame``
(a linear probe on the appearance of the clip's middle frame, ``motion_descriptors.py``: it
must stay near chance, the proof that a task needs motion); ``HOF`` (histograms of DIS optical
flow, the classic hand-made motion descriptor, the bar a motion-aware encoder should reach
and then pass).

Rows are lists of ``--set`` overrides applied the way ``motionmae pretrain`` applies them
(``motionmae.cli.pretrain_overrides`` on top of ``PretrainConfig``'s defaults), so the
library's defaults are what is measured. Budgets (1,500 steps x 8 clips each):

* ``demo``: the demo's geometry (8 frames at 64 px, stride 2, 2x8x8 tubelets, 4 blocks);
* ``16x112``: 16 frames at 112 px, 2x16x16 tubelets, the tiny model (12 blocks), stride 1:
  the stored clips have 16 frames (the footage is 120-250 frames long and the speed task
  needs 4x the clip's span), and every clip the model sees must be 16 distinct frames.

Commands (``nice``: the machine is shared)::

    nice .venv/bin/python benchmarks/motion_suite.py --out runs/motion_suite       # ~3 h
    nice .venv/bin/python benchmarks/motion_suite.py --quick --out /tmp/suite_quick
    nice .venv/bin/python benchmarks/motion_suite.py --variant 'mine=targets.names=[pixel]
        masking.ratio=0.75' --only mine --out runs/motion_suite     # one more row
    nice .venv/bin/python benchmarks/motion_suite.py --table-only --out runs/motion_suite

Results go to ``OUT/results.jsonl`` (one JSON line per row x task x probe, appended as they are
measured, so an interrupted run keeps them); the tables are printed from that file (the last
record of each cell wins). ``--reuse`` probes finished run folders again without pretraining;
an interrupted pretraining resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Before torch's import: spinning OpenMP waits slow a step ~16x on shared cores (omp_wait.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import yaml
from motion_descriptors import hof, single_frame
from motion_tasks import FRAMES, SIZE, TASKS, TaskFiles, load_footage, write_task

from motionmae.checkpoints.format import latest_checkpoint
from motionmae.cli import build_parser, pretrain_overrides
from motionmae.config import DataConfig, PretrainConfig, load_config, to_dict
from motionmae.data import VideoDataset, make_synthetic_dataset, read_video_list
from motionmae.data.lists import VideoEntry, write_video_list
from motionmae.data.synthetic import CLASSES as DEMO_CLASSES
from motionmae.data.transforms import clip_span
from motionmae.eval import PROBES, FeatureSet, eval_data_config, list_features, run_probe
from motionmae.models import VideoEncoder
from motionmae.train.pretrain import token_grid

VARIANTS: dict[str, list[str]] = {
    "pixel / tube": ["targets.names=[pixel]", "masking.kind=tube"],
    "default: pixel+tracks / motion": ["targets.names=[pixel,tracks]", "masking.kind=motion"],
    "tracks / tube": ["targets.names=[tracks]", "masking.kind=tube"],
    "hog+m3traj / tube": ["targets.names=[hog,m3traj]", "masking.kind=tube"],
}

# The papers as written vs this project's variants (``--papers`` adds these rows).
PAPER_VARIANTS: dict[str, list[str]] = {
    "TrackMAE official: pixel+tracks / motion": [
        "targets.names=[pixel,tracks]", "masking.kind=motion", "targets.tracks.norm=patch",
        "targets.tracks.windows=official", "targets.tracks.upsample_mode=align_corners"],
    "TrackMAE, this project's windows": [
        "targets.names=[pixel,tracks]", "masking.kind=motion", "targets.tracks.norm=patch",
        "targets.tracks.windows=tubelet", "targets.tracks.upsample_mode=centres"],
    "M3Video as written: hog+m3traj / tube": [
        "targets.names=[hog,m3traj]", "masking.kind=tube", "targets.m3traj.norm=patch_std",
        "targets.m3traj.length=6", "targets.m3traj.hog_channels=rgb",
        "targets.m3traj.camera_compensation=true", "model.joint_targets=[hog,m3traj]"],
    "M3Video as before: hog+m3traj / tube": [
        "targets.names=[hog,m3traj]", "masking.kind=tube", "targets.m3traj.norm=path_length",
        "targets.m3traj.length=5", "targets.m3traj.hog_channels=grey",
        "targets.m3traj.camera_compensation=false"],
}

BUDGETS: dict[str, list[str]] = {
    "demo": ["data.frames=8", "data.size=64", "data.stride=2", "model.patch_size=8",
             "model.tubelet_size=2", "model.depth=4"],
    "16x112": ["data.frames=16", "data.size=112", "data.stride=1", "model.patch_size=16",
               "model.tubelet_size=2"],
}
STEPS, BATCH = 1500, 8
TASK_NAMES = (*TASKS, "demo")
# Clips per split: (pretrain, train, test). Train and test are multiples of 2, 3, 4 and 9;
# 648 test clips keep one standard error at or under 2 points on every task (1.96 at 50%).
SIZES = {"full": (400, 360, 648), "quick": (24, 36, 36)}
RANDOM, SINGLE, HOF = "random init", "single frame (pixels+colour+HOG)", "HOF (DIS flow)"

log = logging.getLogger("motion_suite")


def default_data_dir() -> Path:
    return Path.home() / ".cache" / "motionmae" / "motion_suite"


# -- data -----------------------------------------------------------------------------------


def make_tasks(root: Path, sizes: tuple[int, int, int], seed: int = 0) -> dict[str, TaskFiles]:
    """Write (or reuse) every task under ``root`` and the pooled unlabelled pretraining list
    ``root/pretrain_pool.txt``."""
    pretrain, train, test = sizes
    counts = {"pretrain": pretrain, "train": train, "test": test}
    cache: list = []

    def footage():  # decoded once, and only if a task has to be rendered
        if not cache:
            cache.append(load_footage())
        return cache[0]

    files = {name: write_task(root / name, task, counts, seed, footage)
             for name, task in TASKS.items()}
    # The demo's own generator, at the suite's clip geometry; its pretraining split is a
    # second dataset of another seed (unlabelled below), its val split is the test split.
    labelled = make_synthetic_dataset(root / "demo" / "labelled", num_train=train,
                                      num_val=test, frames=FRAMES, size=SIZE, seed=seed)
    unlabelled = make_synthetic_dataset(root / "demo" / "pretrain", num_train=pretrain,
                                        num_val=0, frames=FRAMES, size=SIZE, seed=seed + 1)
    demo_pretrain = root / "demo" / "pretrain.txt"
    _write_list(demo_pretrain, [VideoEntry(e.path) for e in
                                read_video_list(unlabelled.train_list).entries])
    files["demo"] = TaskFiles("demo", DEMO_CLASSES, demo_pretrain, labelled.train_list,
                              labelled.val_list)
    pool = [VideoEntry(e.path) for f in files.values() for e in read_video_list(f.pretrain)
            .entries]
    _write_list(root / "pretrain_pool.txt", pool)
    return files


def _write_list(path: Path, entries: list[VideoEntry]) -> None:
    """An unlabelled list, replaced by rename: another suite run may be reading it."""
    temporary = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    write_video_list(temporary, entries)
    os.replace(temporary, path)


# -- configs --------------------------------------------------------------------------------


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=key=value key=value`` -> ``(NAME, [key=value, ...])`` (shell-style quoting)."""
    name, sep, rest = text.partition("=")
    overrides = shlex.split(rest)
    if not sep or not name.strip() or not overrides or any("=" not in o for o in overrides):
        raise SystemExit(f"--variant takes NAME='key=value key=value ...', got {text!r}")
    return name.strip(), overrides


def pretrain_config(budget: str, overrides: list[str], data: Path, out: Path,
                    steps: int) -> PretrainConfig:
    """The config ``motionmae pretrain --data DATA --out OUT --steps STEPS --batch-size 8
    --set ...`` builds, with the budget's geometry then the row's overrides as ``--set``."""
    argv = ["pretrain", "--data", str(data), "--out", str(out), "--steps", str(steps),
            "--batch-size", str(BATCH)]
    for item in (*BUDGETS[budget], "run.log_every=50", f"run.ckpt_every={max(steps // 3, 1)}",
                 *overrides):
        argv += ["--set", item]
    cfg = load_config(PretrainConfig, None, pretrain_overrides(build_parser().parse_args(argv)))
    span = clip_span(cfg.data.frames, cfg.data.stride)
    if span > FRAMES:
        raise SystemExit(f"{budget}: a clip of {cfg.data.frames} frames at stride "
                         f"{cfg.data.stride} spans {span} frames, but the suite's videos have "
                         f"{FRAMES}: every clip must be distinct frames")
    return cfg


def eval_data(cfg: PretrainConfig) -> DataConfig:
    """Evaluation clips of ``cfg``'s geometry (centre crop, centre clip)."""
    saved = {"stride": cfg.data.stride, "mean": list(cfg.data.mean), "std": list(cfg.data.std)}
    return eval_data_config({"grid": {"frames": cfg.data.frames, "height": cfg.data.size},
                             "config": {"data": saved}}, workers=1)


def run_slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Suite:
    out: Path
    files: dict[str, TaskFiles]
    steps: int

    def record(self, budget: str, row: str, task: str, result, **extra) -> None:
        line = {"budget": budget, "row": row, "task": task, "probe": result.kind,
                "top1": result.top1, "chance": 1 / len(self.files[task].classes),
                "num_train": result.num_train, "num_test": result.num_val,
                "steps": self.steps, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        with (self.out / "results.jsonl").open("a") as stream:
            stream.write(json.dumps(line) + "\n")
        print(f"  {row:<34} {task:<9} {result.kind:<9} {result.top1:6.1%}", flush=True)

    def probe_encoder(self, budget: str, row: str, encoder: torch.nn.Module,
                      data: DataConfig, **extra) -> None:
        for task, files in self.files.items():
            train = list_features(encoder, files.train, data, batch_size=16, pool=False)
            test = list_features(encoder, files.test, data, batch_size=16, pool=False)
            for kind in PROBES:
                with one_thread():
                    result = run_probe(kind, train, test)
                self.record(budget, row, task, result, **extra)

    def probe_descriptor(self, budget: str, row: str,
                         describe: Callable[[np.ndarray], np.ndarray], data: DataConfig) -> None:
        for task, files in self.files.items():
            train, test = (describe_list(path, data, describe) for path in (files.train,
                                                                             files.test))
            for kind in ("linear", "knn"):
                with one_thread():
                    result = run_probe(kind, train, test)
                self.record(budget, row, task, result)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread: the probes' small problems and per-clip decoding ran 5-9x slower
    with two threads on the shared 2-core machine (measured: linear probe 26 s vs 2.9 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def eval_frames(list_path: Path, data: DataConfig) -> Iterator[tuple[np.ndarray, int]]:
    """``(frames [T, S, S, 3] uint8, label)`` of each video of a list, exactly the evaluation
    clip the encoders see (the dataset's clip, un-normalised)."""
    dataset = VideoDataset(read_video_list(list_path), data, train=False, seed=0)
    mean = torch.tensor(data.mean).view(3, 1, 1, 1) * 255
    std = torch.tensor(data.std).view(3, 1, 1, 1) * 255
    for index in range(len(dataset)):
        sample = dataset[index]
        pixels = (sample["clip"] * std + mean).round().clamp(0, 255).to(torch.uint8)
        yield pixels.permute(1, 2, 3, 0).numpy(), int(sample["label"])


def describe_list(list_path: Path, data: DataConfig,
                  describe: Callable[[np.ndarray], np.ndarray]) -> FeatureSet:
    features, labels = [], []
    with one_thread():  # one clip at a time: torch's threads only contend with OpenCV's
        for frames, label in eval_frames(list_path, data):
            features.append(describe(frames))
            labels.append(label)
    paths = [str(e.path) for e in read_video_list(list_path).entries]
    return FeatureSet(np.stack(features), np.asarray(labels, np.int64), paths)


def pretrain_or_reuse(cfg: PretrainConfig, reuse: bool) -> float:
    """Pretrain ``cfg`` (resuming an interrupted run of it); minutes spent. With ``reuse``, a
    finished run folder is taken as it is."""
    from motionmae.train.pretrain import pretrain

    out = Path(cfg.run.out)
    latest = latest_checkpoint(out / "checkpoints")
    saved = out / "config.yaml"
    same = not saved.is_file() or yaml.safe_load(saved.read_text()) == to_dict(cfg)
    if latest is not None and latest.step >= cfg.run.steps:
        if reuse:
            if not same:
                print(f"    note: {out} was trained with another config (row or library "
                      "defaults changed since)", flush=True)
            return 0.0
        raise SystemExit(f"{out} already holds a finished run: pass --reuse to probe it again, "
                         "or remove it to pretrain again")
    if latest is not None and not same:
        raise SystemExit(f"{out} holds an unfinished run of another config: remove it or use "
                         "another --out")
    start = time.perf_counter()

    def on_log(record: dict) -> None:
        if record["step"] % 250 == 0:
            print(f"    step {record['step']:5d}  loss {record['loss']:.4f}  "
                  f"{record['clips_per_s']:.1f} clips/s", flush=True)

    pretrain(cfg, resume=latest is not None, on_log=on_log)
    return (time.perf_counter() - start) / 60


# -- tables ---------------------------------------------------------------------------------


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tables(records: list[dict]) -> str:
    """Markdown tables from result records: one per budget and probe, rows x tasks (the last
    record of a cell wins), chance in the header."""
    cells: dict[tuple, dict] = {}
    for record in records:
        cells[(record["budget"], record["probe"], record["row"], record["task"])] = record
    lines = []
    for budget in dict.fromkeys(r["budget"] for r in records):
        for probe in PROBES:
            mine = {k: v for k, v in cells.items() if k[0] == budget and k[1] == probe}
            if not mine:
                continue
            rows = list(dict.fromkeys(k[2] for k in mine))
            tasks = [t for t in (*TASK_NAMES, *sorted({k[3] for k in mine})) if
                     any(k[3] == t for k in mine)]
            tasks = list(dict.fromkeys(tasks))
            chance = {t: next(v["chance"] for k, v in mine.items() if k[3] == t) for t in tasks}
            steps = max((v["steps"] for v in mine.values()), default=0)
            lines.append(f"\n{probe} probe, budget {budget} ({steps} steps x {BATCH} clips)\n")
            header = " | ".join(f"{t} ({chance[t]:.0%})" for t in tasks)
            lines.append(f"| encoder | {header} | mean |")
            lines.append("|---|" + "---:|" * (len(tasks) + 1))
            for row in rows:
                values = [mine.get((budget, probe, row, t), {}).get("top1") for t in tasks]
                shown = [f"{v:.1%}" if v is not None else "–" for v in values]
                known = [v for v in values if v is not None]
                mean = f"{np.mean(known):.1%}" if len(known) == len(values) else "–"
                lines.append(f"| {row} | {' | '.join(shown)} | {mean} |")
            lines.append("| one standard error (largest over rows) | " + " | ".join(
                f"{standard_error(mine, budget, probe, rows, t):.1f}" for t in tasks) + " | |")
    return "\n".join(lines)


def standard_error(cells: dict[tuple, dict], budget: str, probe: str, rows: list[str],
                   task: str) -> float:
    """The largest binomial standard error, in points, of a task's cells: sqrt(p (1-p) / n)
    with n test clips; a difference under two of these is not a difference."""
    errors = [100 * np.sqrt(r["top1"] * (1 - r["top1"]) / r["num_test"]) for r in
              (cells.get((budget, probe, row, task)) for row in rows) if r and r.get("num_test")]
    return max(errors, default=float("nan"))


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/motion_suite"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"task videos (default {default_data_dir()}; --quick: its quick/)")
    parser.add_argument("--pretrain-clips", type=int, metavar="N",
                        help=f"unlabelled pretraining clips per task (default "
                             f"{SIZES['full'][0]}; the pool is five times that); the train and "
                             f"test clips stay the same. Another N lives in its own "
                             f"--data-dir (default: the default's poolN/)")
    parser.add_argument("--budget", choices=[*BUDGETS, "all"], default="all")
    parser.add_argument("--steps", type=int, help=f"pretraining steps (default {STEPS})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny tasks, 50 steps")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME='K=V K=V'",
                        help="add (or redefine) a row: --set overrides on the defaults")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="rows to run (repeatable; also the reference rows' names)")
    parser.add_argument("--papers", action="store_true",
                        help="add the rows of the papers as written vs this project's variants")
    parser.add_argument("--no-references", action="store_true",
                        help="skip the random-init, single-frame and HOF rows")
    parser.add_argument("--reuse", action="store_true",
                        help="probe finished run folders again without pretraining")
    parser.add_argument("--table-only", action="store_true",
                        help="print the tables of OUT/results.jsonl and stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = args.out / "results.jsonl"
    if args.table_only:
        print(tables(read_results(results)) or f"no results in {results}")
        return
    variants = dict(VARIANTS)
    if args.papers:
        variants.update(PAPER_VARIANTS)
    variants.update(parse_variant(text) for text in args.variant)
    references = [] if args.no_references else [RANDOM, SINGLE, HOF]
    wanted = [*references, *variants]
    unknown = [name for name in args.only if name not in wanted]
    if unknown:
        raise SystemExit(f"--only: unknown rows {unknown}; rows are {wanted}")
    if args.only:
        wanted = [name for name in wanted if name in args.only]
    steps = args.steps or (50 if args.quick else STEPS)
    sizes = SIZES["quick" if args.quick else "full"]
    pool_name = ""
    if args.pretrain_clips is not None and args.pretrain_clips != sizes[0]:
        if args.pretrain_clips < 1:
            raise SystemExit(f"--pretrain-clips must be >= 1, got {args.pretrain_clips}")
        sizes, pool_name = (args.pretrain_clips, *sizes[1:]), f"pool{args.pretrain_clips}"
    data_dir = args.data_dir or default_data_dir() / ("quick" if args.quick else "") / pool_name
    start = time.perf_counter()
    files = make_tasks(data_dir, sizes)
    print(f"tasks ready in {data_dir} ({time.perf_counter() - start:.0f} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    suite = Suite(args.out, files, steps)
    pool = data_dir / "pretrain_pool.txt"
    for budget in BUDGETS if args.budget == "all" else [args.budget]:
        print(f"\n== budget {budget}", flush=True)
        base = pretrain_config(budget, VARIANTS["default: pixel+tracks / motion"], pool,
                               args.out / budget / "base", steps)
        data = eval_data(base)
        for row in wanted:
            print(f"{row}", flush=True)
            if row == RANDOM:
                torch.manual_seed(0)
                suite.probe_encoder(budget, row, VideoEncoder(base.model.resolved(),
                                                              token_grid(base)), data)
            elif row == SINGLE:
                suite.probe_descriptor(budget, row, single_frame, data)
            elif row == HOF:
                suite.probe_descriptor(budget, row, hof, data)
            else:
                from motionmae.api import load_encoder

                cfg = pretrain_config(budget, variants[row], pool,
                                      args.out / budget / run_slug(row), steps)
                minutes = pretrain_or_reuse(cfg, args.reuse)
                suite.probe_encoder(budget, row, load_encoder(cfg.run.out), data,
                                    overrides=variants[row], pretrain_minutes=minutes)
    print(tables(read_results(results)))
    print(f"\n{time.perf_counter() - start:.0f} s in all; results in {results}")


if __name__ == "__main__":
    sys.exit(main())

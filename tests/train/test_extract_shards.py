"""Several machines fill one shared track cache: ``motionmae extract-tracks --shard i/n`` in
parallel processes covers every video exactly once, without collisions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from motionmae.config import PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset, read_video_list
from motionmae.motion.cache import CacheSettings, TrackCache

SETTINGS = ["data.size=32", "data.frames=4", "data.stride=2", "cache.clips=1"]


def test_two_shards_in_parallel_cover_every_video_once(tmp_path):
    videos = make_synthetic_dataset(tmp_path / "videos", num_train=7, num_val=1, frames=8,
                                    size=32, seed=4)
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    sets = [arg for item in SETTINGS for arg in ("--set", item)]
    shards = [
        subprocess.Popen(
            [sys.executable, "-m", "motionmae", "extract-tracks", "--data",
             str(videos.train_list), "--cache", str(cache_dir), "--shard", f"{k}/2", *sets],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(2)
    ]
    outputs = [shard.communicate(timeout=180) for shard in shards]
    for shard, (_, stderr) in zip(shards, outputs, strict=True):
        assert shard.returncode == 0, stderr[-3000:]
    summaries = [re.search(r"(\d+) tracked, (\d+) already cached, (\d+) failed", out).groups()
                 for out, _ in outputs]
    # Videos 0, 2, 4, 6 and 1, 3, 5: each tracked by one shard, none twice or skipped.
    assert [tuple(map(int, s)) for s in summaries] == [(4, 0, 0), (3, 0, 0)]

    cfg = load_config(PretrainConfig, overrides=[f"cache.path={cache_dir}", *SETTINGS])
    cache = TrackCache(cache_dir, CacheSettings.for_run(cfg.tracking, cfg.data, cfg.cache))
    paths = [entry.path for entry in read_video_list(videos.train_list).entries]
    assert all(cache.get(path) is not None for path in paths)  # every entry verifies
    shard_files = sorted(cache_dir.rglob("*.npz"))
    assert len(shard_files) == len(paths)
    assert sorted(f.stem for f in shard_files) == sorted(cache.key(p) for p in paths)
    assert not [f for f in cache_dir.rglob("*") if f.name.endswith(".tmp")]

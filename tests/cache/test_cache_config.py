"""The ``cache`` section, and the keys it had in configs saved before it existed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from motionmae.config import PretrainConfig, load_config, resume_config, to_dict
from motionmae.config_loading import ConfigError, from_dict


def test_a_config_saved_with_the_old_keys_loads_into_the_cache_section(tmp_path: Path) -> None:
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump({"tracking": {"tracker": "lk", "cache": "cache/k400",
                                                  "cache_clips": 2}}))
    cfg = load_config(PretrainConfig, saved)
    assert (cfg.cache.path, cfg.cache.clips) == ("cache/k400", 2)
    saved_again = to_dict(cfg)
    assert saved_again["cache"] == {"path": "cache/k400", "clips": 2}
    assert "cache" not in saved_again["tracking"] and "cache_clips" not in saved_again["tracking"]
    # A checkpoint's config.json is read with from_dict: the same move.
    old = {"tracking": {"cache": "c", "cache_clips": 3}}
    assert from_dict(PretrainConfig, old).cache.clips == 3
    assert old == {"tracking": {"cache": "c", "cache_clips": 3}}  # the caller's dict untouched


def test_the_old_override_still_works_and_wins_over_a_saved_new_key(tmp_path: Path) -> None:
    assert load_config(PretrainConfig, overrides=["tracking.cache=cache/"]).cache.path == "cache/"
    # A resumed run's saved config names cache.path (null); a later --set of the old key wins.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(load_config(PretrainConfig))))
    cfg = resume_config(PretrainConfig, run / "config.yaml",
                        overrides=["tracking.cache=cache/", "tracking.cache_clips=2"])
    assert (cfg.cache.path, cfg.cache.clips) == ("cache/", 2)


def test_errors_name_the_new_key() -> None:
    with pytest.raises(ConfigError, match=r"^cache\.clips: must be >= 1, got 0$"):
        load_config(PretrainConfig, overrides=["tracking.cache_clips=0"])
    with pytest.raises(ConfigError, match=r"^cache\.colips: unknown key"):
        load_config(PretrainConfig, overrides=["cache.colips=2"])

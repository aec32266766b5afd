import pytest

from motionmae.config import (
    ConfigError,
    PretrainConfig,
    apply_overrides,
    from_dict,
    load_config,
    to_dict,
)


def test_defaults_validate_and_round_trip():
    cfg = load_config(PretrainConfig)
    again = from_dict(PretrainConfig, to_dict(cfg))
    assert again == cfg


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("masking:\n  ratio: 0.75\nrun:\n  batch_size: 4\n")
    cfg = load_config(PretrainConfig, path, ["run.batch_size=2", "data.scales=[1.0, 0.5]"])
    assert cfg.masking.ratio == 0.75
    assert cfg.run.batch_size == 2
    assert cfg.data.scales == (1.0, 0.5)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"masking\.ratoi: unknown key"):
        load_config(PretrainConfig, overrides=["masking.ratoi=0.5"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"run\.batch_size: must be an integer"):
        load_config(PretrainConfig, overrides=["run.batch_size=big"])


def test_out_of_range_value_is_named():
    with pytest.raises(ConfigError,
                       match=r"masking\.ratio: must be in \(0, 1\) or null, got 1.5"):
        load_config(PretrainConfig, overrides=["masking.ratio=1.5"])


def test_cross_field_check_names_key():
    with pytest.raises(ConfigError, match=r"data\.size: 100 px is not a multiple"):
        load_config(PretrainConfig, overrides=["data.size=100"])


def test_unknown_target_is_named():
    with pytest.raises(ConfigError, match=r"targets\.names: unknown target 'pixle'"):
        load_config(PretrainConfig, overrides=["targets.names=[pixle]"])


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["masking.ratio"])


def test_null_override_for_optional():
    cfg = load_config(PretrainConfig, overrides=["optim.clip_grad=null", "run.steps=5"])
    assert cfg.optim.clip_grad is None and cfg.run.steps == 5


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(PretrainConfig, tmp_path / "nope.yaml")


def test_resolved_model_sizes():
    cfg = load_config(PretrainConfig, overrides=["model.size=base"])
    model = cfg.model.resolved()
    assert (model.embed_dim, model.depth, model.num_heads) == (768, 12, 12)


def test_exponent_without_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n")
    assert load_config(PretrainConfig, path, ["optim.min_lr=1e-7"]).optim.lr == 1e-3


def test_component_sections_are_found_by_registered_name():
    from motionmae.config import MaskingConfig, PretrainConfig, TargetsConfig, load_config, to_dict
    from motionmae.targets import TracksTargetConfig

    with pytest.raises(ConfigError, match=r"^targets\.trakcs: unknown key; known keys here: "
                                          r"\['names', 'visible', 'visible_weight'\] and the "
                                          r"registered targets \['arrow', 'hof', 'hog', "):
        load_config(PretrainConfig, overrides=["targets.trakcs.norm=patch"])
    with pytest.raises(ConfigError, match=r"^masking\.motion: must be a mapping, got 0\.5"):
        load_config(PretrainConfig, overrides=["masking.motion=0.5"])
    with pytest.raises(TypeError, match=r"TargetsConfig\(tracks=\.\.\.\): expected a "
                                        r"TracksTargetConfig, got MaskingConfig"):
        TargetsConfig(tracks=MaskingConfig())
    cfg = TargetsConfig(names=["tracks"], tracks=TracksTargetConfig(norm="patch"))
    assert cfg.tracks.norm == "patch" and cfg.pixel.norm_pix  # unselected: defaults
    # Saved: the selected sections and any changed one; a changed, unselected section is
    # validated too (a typo there is still a typo).
    cfg.hog.cell = 1
    assert list(to_dict(cfg)) == ["names", "visible", "visible_weight", "tracks", "hog"]
    with pytest.raises(ConfigError, match=r"targets\.hog\.cell: must be >= 2"):
        cfg.validate()


def _saved_run(tmp_path, *overrides: str):
    """A run folder whose config.yaml is what a run of ``overrides`` saved."""
    import yaml

    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config(PretrainConfig, overrides=["data.frames=4", "data.size=32",
                                                 "model.depth=1", "run.steps=8", *overrides])
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return run / "config.yaml", cfg


def test_resume_config_is_the_saved_run_with_only_the_named_keys_changed(tmp_path):
    from motionmae.config import resume_config

    saved, cfg = _saved_run(tmp_path, "targets.names=[pixel,hog]", "run.batch_size=3")
    resumed = resume_config(PretrainConfig, saved, overrides=["run.steps=20",
                                                                "data.train=other.txt"])
    assert (resumed.run.steps, resumed.data.train) == (20, "other.txt")
    resumed.run.steps, resumed.data.train = cfg.run.steps, cfg.data.train
    assert resumed == cfg  # everything else as saved, not the defaults
    # A --config file goes over the saved config too (the SLURM recipe passes it again).
    file = tmp_path / "recipe.yaml"
    file.write_text("run:\n  batch_size: 3\n  log_every: 5\n")
    assert resume_config(PretrainConfig, saved, file).run.log_every == 5


@pytest.mark.parametrize(("override", "key", "was", "now"), [
    ("model.depth=2", "model.depth", "1", "2"),
    ("targets.names=[pixel,hog]", "targets.names", r"\['pixel', 'tracks'\]",
     r"\['pixel', 'hog'\]"),
    ("masking.kind=random", "masking.kind", "motion", "random"),
    ("data.size=64", "data.size", "32", "64"),
])
def test_resume_config_refuses_what_the_weights_depend_on_by_key(tmp_path, override, key,
                                                                  was, now):
    from motionmae.config import resume_config

    saved, _ = _saved_run(tmp_path)
    with pytest.raises(ConfigError, match=rf"^{key}: the run in .*run was trained with {was}, "
                                          rf"this command says {now}; --resume cannot change"):
        resume_config(PretrainConfig, saved, overrides=[override])


def test_resume_config_reads_a_model_section_saved_before_a_key_existed(tmp_path):
    """A config.yaml written before ``model.difference_gain`` existed means gain 0 (what the
    checkpoint was trained as), not today's default."""
    import yaml

    from motionmae.config import resume_config

    saved, _ = _saved_run(tmp_path, "model.difference_gain=0.0")
    old = yaml.safe_load(saved.read_text())
    del old["model"]["difference_gain"]
    saved.write_text(yaml.safe_dump(old))
    assert resume_config(PretrainConfig, saved).model.difference_gain == 0.0
    with pytest.raises(ConfigError, match=r"^model\.difference_gain: .* trained with 0\.0"):
        resume_config(PretrainConfig, saved, overrides=["model.difference_gain=4.0"])


def test_an_unreadable_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML \(line 2, column 1\)"):
        load_config(PretrainConfig, path)

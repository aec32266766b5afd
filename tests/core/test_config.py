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
    from motionmae.config import (
        MaskingConfig,
        PretrainConfig,
        TargetsConfig,
        TracksTargetConfig,
        load_config,
        to_dict,
    )

    with pytest.raises(ConfigError, match=r"^targets\.trakcs: unknown key; known keys here: "
                                          r"\['names'\] and the registered targets \['hog', "):
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
    assert list(to_dict(cfg)) == ["names", "tracks", "hog"]
    with pytest.raises(ConfigError, match=r"targets\.hog\.cell: must be >= 2"):
        cfg.validate()

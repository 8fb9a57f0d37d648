"""Run configuration: says what it means, refuses what it does not know."""

from __future__ import annotations

import pytest

from medtorch.config import RunConfig, load_config, merge, parse_config
from medtorch.errors import ConfigError


def test_defaults_need_no_tuning():
    config = parse_config({})
    assert config.train.epochs == 200
    assert config.train.batch_size == "auto"
    assert config.evaluate.threshold.method == "youden"
    assert config.data.val_size == 0.2 and config.data.test_size == 0.2


def test_unknown_key_names_the_key_and_suggests_the_right_one():
    with pytest.raises(ConfigError) as error:
        parse_config({"train": {"epoch": 5}})
    message = str(error.value)
    assert "unknown key 'train.epoch'" in message
    assert "did you mean 'epochs'?" in message


def test_unknown_section_suggests_the_right_section():
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        parse_config({"trian": {"epochs": 5}})


def test_unknown_nested_key_suggests_within_its_own_section():
    with pytest.raises(ConfigError, match=r"unknown key 'evaluate.threshold.methd' \(did you mean 'method'\?\)"):
        parse_config({"evaluate": {"threshold": {"methd": "youden"}}})


def test_unknown_key_far_from_any_field_gets_no_suggestion():
    with pytest.raises(ConfigError) as error:
        parse_config({"data": {"zzzzzzzz": 1}})
    assert "unknown key 'data.zzzzzzzz'" in str(error.value)
    assert "did you mean" not in str(error.value)


def test_every_problem_is_reported_on_one_line():
    with pytest.raises(ConfigError) as error:
        parse_config({"train": {"epoch": 5, "lr": -1}})
    message = str(error.value)
    assert "\n" not in message
    assert "train.epoch" in message and "train.lr" in message


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("train", "epochs", 0),
        ("train", "lr", -0.1),
        ("train", "optimizer", "adamm"),
        ("data", "val_size", 1.5),
        ("task", "type", "classification"),
        ("evaluate", "confidence", 1.0),
    ],
)
def test_bad_value_is_refused_with_its_location(section, key, value):
    with pytest.raises(ConfigError, match=rf"config: {section}\.{key}: "):
        parse_config({section: {key: value}})


def test_bad_value_of_a_union_field_names_the_key_not_pydantic_internals():
    """``batch_size`` is an int or 'auto'; the message must name ``train.batch_size``, not
    pydantic's union branches (``train.batch_size.int``, ``train.batch_size.literal['auto']``)."""
    with pytest.raises(ConfigError) as error:
        parse_config({"train": {"batch_size": "big"}})
    message = str(error.value)
    assert message.startswith("config: train.batch_size: ")
    assert "batch_size.int" not in message and "literal[" not in message


def test_config_that_is_not_a_mapping_is_refused():
    with pytest.raises(ConfigError, match="mapping"):
        parse_config(["train"])  # type: ignore[arg-type]


def test_model_section_accepts_factory_arguments():
    config = parse_config({"model": {"name": "mlp", "hidden": [32], "dropout": 0.1}})
    assert config.model.name == "mlp"
    assert config.model.kwargs() == {"hidden": [32], "dropout": 0.1}


def test_yaml_file_is_loaded(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "data: {path: heart.csv, target: disease, group_column: patient_id}\n"
        "task: {type: binary, positive: yes}\n"
        "model: {name: mlp}\n"
        "train: {epochs: 30, lr: 3.0e-4, class_weights: balanced}\n"
        "evaluate: {bootstrap: 100, threshold: {method: target_sensitivity, value: 0.95}}\n"
    )
    config = load_config(path)
    assert isinstance(config, RunConfig)
    assert config.data.target == "disease" and config.data.group_column == "patient_id"
    assert config.model.name == "mlp"
    assert config.train.epochs == 30 and config.train.lr == pytest.approx(3e-4)
    assert config.train.class_weights == "balanced"
    assert config.evaluate.threshold.method == "target_sensitivity"
    assert config.evaluate.threshold.value == 0.95


def test_empty_yaml_file_gives_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == RunConfig()


def test_yaml_typo_is_refused_with_a_suggestion(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.epoch' \(did you mean 'epochs'\?\)"):
        load_config(path)


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train: {epochs: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_yaml_that_is_a_list_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train\n- data\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)


def test_overrides_replace_only_the_keys_they_name(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {epochs: 30, lr: 0.01}\nmodel: {name: resmlp}\n")
    config = load_config(path, overrides={"train": {"epochs": 7}})
    assert config.train.epochs == 7
    assert config.train.lr == 0.01
    assert config.model.name == "resmlp"


def test_override_of_none_leaves_the_file_value_alone(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {epochs: 30}\nmodel: {name: resmlp}\n")
    config = load_config(path, overrides={"train": {"epochs": None}, "model": {"name": None}})
    assert config.train.epochs == 30
    assert config.model.name == "resmlp"


def test_overrides_are_validated_too():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(None, overrides={"train": {"epochs": -3}})


def test_merge_is_recursive_and_does_not_modify_its_inputs():
    base = {"train": {"epochs": 3, "lr": 0.1}, "data": {"target": "y"}}
    merged = merge(base, {"train": {"lr": 0.2}})
    assert merged == {"train": {"epochs": 3, "lr": 0.2}, "data": {"target": "y"}}
    assert base["train"]["lr"] == 0.1


def test_assignment_is_validated():
    config = parse_config({})
    with pytest.raises(Exception):
        config.train.epochs = 0


def test_a_window_step_longer_than_the_window_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"window_step_seconds \(15.0\) above data.window_seconds \(10.0\) would skip signal") as error:
        parse_config({"data": {"window_seconds": 10, "window_step_seconds": 15}})
    assert "\n" not in str(error.value)
    assert parse_config({"data": {"window_seconds": 10, "window_step_seconds": 10}}).data.window_step_seconds == 10

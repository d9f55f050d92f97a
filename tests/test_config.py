import pytest

from bot.config import Config, parse_config
from bot.errors import ConfigError


def test_fixed_keys_parse():
    config = parse_config(
        "validate: [python -m pytest -q]\nsetup: [pip install -e .]\nlimits: {iterations: 4}\n"
        "trigger: {label: autofix, command: /fix}\n"
    )
    assert config.validation == ["python -m pytest -q"]
    assert config.setup == ["pip install -e ."]
    assert config.limits.iterations == 4
    assert (config.trigger.label, config.trigger.command) == ("autofix", "/fix")


def test_empty_file_means_defaults():
    assert parse_config("") == Config()
    assert Config().paths.deny == [".git/**", ".github/workflows/**"]


@pytest.mark.parametrize(
    "text, key",
    [
        ("limits: {iteratons: 3}", "limits.iteratons"),
        ("limits: {iterations: 0}", "limits.iterations"),
        ("validate: python -m pytest", "validate"),
        ("trigger: {command: fixloop}", "trigger.command"),
        ("surprise: 1", "surprise"),
    ],
)
def test_errors_name_the_offending_key(text, key):
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    assert f"- {key}:" in str(error.value)


def test_not_yaml_or_not_a_mapping_is_a_clear_error():
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("validate: [unclosed")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("- a\n- b\n")


def test_command_line_overrides_keep_unset_values():
    config = parse_config("model: claude-x\nlimits: {iterations: 4, turns: 9}")
    changed = config.with_overrides(**{"limits.iterations": 2, "model": None, "validate": ["make test"]})
    assert (changed.limits.iterations, changed.limits.turns, changed.model) == (2, 9, "claude-x")
    assert changed.validation == ["make test"]


def test_an_unknown_key_gets_the_nearest_known_one_or_the_list():
    with pytest.raises(ConfigError) as raised:
        parse_config("limits: {iteratons: 3}\nvalidat: [make]\nzzz: 1\n")
    problems = dict(raised.value.problems)
    assert problems["limits.iteratons"] == "unknown key; did you mean `iterations`?"
    assert problems["validat"] == "unknown key; did you mean `validate`?"
    assert problems["zzz"].startswith("unknown key; the keys here are base_url, branch_prefix, ci, deflake")


def test_every_key_of_the_config_schema_is_described():
    """Editors show these descriptions while someone writes .github/fixloop.yml."""
    from bot.schemas import config_schema

    schema = config_schema()
    definitions = schema.get("$defs", {})

    def undescribed(node: dict, path: str) -> list[str]:
        missing = []
        for name, prop in node.get("properties", {}).items():
            target = definitions[prop["$ref"].split("/")[-1]] if "$ref" in prop else prop
            if "description" not in prop and "description" not in target:
                missing.append(f"{path}{name}")
            missing += undescribed(target, f"{path}{name}.")
        return missing

    assert undescribed(schema, "") == []

"""What the built-in executors share: config checks, workflow data as environment
variables, and the ``##wfe[...]`` output commands."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wfe_yaml import interpolation as ip
from wfe_yaml.durations import parse_duration

#: ``##wfe[output key=value]``: a step output (the value is the rest of the line up to ``]``).
OUTPUT_COMMAND = re.compile(r"^##wfe\[output\s+(?P<key>[A-Za-z_][\w.-]*)=(?P<value>.*)\]\s*$")


def parse_output_command(line: str) -> tuple[str, str] | None:
    """``(key, value)`` of an output command line, ``None`` for any other line."""
    match = OUTPUT_COMMAND.match(line)
    if match is None:
        return None
    return match.group("key"), match.group("value")


def data_environment(data: Any) -> dict[str, str]:
    """The workflow data as environment variables: ``WFE_DATA`` (all of it, as JSON) and
    ``WFE_DATA_<KEY>`` per top-level key (strings as they are, other values as JSON)."""
    env = {"WFE_DATA": json.dumps(data, default=str)}
    if isinstance(data, Mapping):
        for key, value in data.items():
            env[ip.env_name("WFE_DATA_", str(key))] = ip.to_text(value)
    return env


def check_duration(config: Mapping[str, Any], key: str, problems: list[str]) -> None:
    """A problem when ``config[key]`` is set and not a duration."""
    if key in config and config[key] is not None:
        try:
            parse_duration(config[key])
        except ValueError as exc:
            problems.append(f"{key}: {exc}")


def check_string(config: Mapping[str, Any], key: str, problems: list[str]) -> None:
    """A problem when ``config[key]`` is set and not a string."""
    if key in config and config[key] is not None and not isinstance(config[key], str):
        problems.append(f"{key}: must be a string")


def check_strings(config: Mapping[str, Any], key: str, problems: list[str]) -> None:
    """A problem when ``config[key]`` is set and not a list of strings."""
    value = config.get(key)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{key}: must be a list of strings")


def check_env(config: Mapping[str, Any], problems: list[str]) -> None:
    """``env`` must map names to scalar values."""
    env = config.get("env")
    if env is None:
        return
    if not isinstance(env, Mapping):
        problems.append("env: must map variable names to values")
        return
    for name, value in env.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(name)):
            problems.append(f"env: {name!r} is not a valid variable name")
        if isinstance(value, Mapping | list):
            problems.append(f"env: {name} must be a string, number or boolean")


def config_schema(
    props: dict[str, Any], descriptions: Mapping[str, str], inline_key: str
) -> dict[str, Any]:
    """The JSON Schema of a step's ``config``: ``props`` with their ``descriptions``, no other
    keys but ``_template`` holders, and exactly one of ``inline_key`` and ``file``."""
    for key, text in descriptions.items():
        props[key] = {**props[key], "description": text}
    return {
        "type": "object",
        "properties": props,
        "patternProperties": {"^_": {}},
        "additionalProperties": False,
        "oneOf": [{"required": [inline_key]}, {"required": ["file"]}],
    }


def check_source(
    config: Mapping[str, Any], step_type: str, inline_key: str, problems: list[str]
) -> None:
    """Problems with where the step's code comes from: exactly one of ``inline_key`` (the code
    itself) and ``file`` (a path to an existing file)."""
    has_inline = config.get(inline_key) is not None
    has_file = config.get("file") is not None
    if has_inline == has_file:
        problems.append(
            f"missing `{inline_key}`: a {step_type} step needs config.{inline_key} (or config.file)"
            if not has_inline
            else f"give either `{inline_key}` or `file`, not both"
        )
    check_string(config, inline_key, problems)
    check_string(config, "file", problems)
    if has_file and isinstance(config["file"], str) and not Path(config["file"]).is_file():
        problems.append(f"file: no such script {config['file']!r}")

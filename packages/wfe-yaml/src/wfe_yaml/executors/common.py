"""What the built-in executors share: config checks, workflow data as environment
variables (within the kernel's limits), and the opt-in ``##wfe[...]`` stdout commands."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wfe_yaml import interpolation as ip
from wfe_yaml.durations import parse_duration

#: ``##wfe[output key=value]``: a step output (the value is the rest of the line up to ``]``),
#: honoured only with ``config.stdout_outputs: true``: any printed data can forge it.
OUTPUT_COMMAND = re.compile(r"^##wfe\[output\s+(?P<key>[A-Za-z_][\w.-]*)=(?P<value>.*)\]\s*$")


#: The start of an output command (to warn when stdout outputs are off).
OUTPUT_COMMAND_PREFIX = "##wfe[output"


def parse_output_command(line: str) -> tuple[str, str] | None:
    """``(key, value)`` of an output command line, ``None`` for any other line."""
    match = OUTPUT_COMMAND.match(line)
    if match is None:
        return None
    return match.group("key"), match.group("value")


#: Linux's MAX_ARG_STRLEN: the longest single ``NAME=value`` string (with its final NUL) a
#: process can be started with. A longer one makes exec fail (``Argument list too long``).
MAX_ENV_STRING = 128 * 1024
#: The largest ``WFE_DATA`` / ``WFE_DATA_<KEY>`` variable set (its value, in bytes). These are
#: set for every step whether it reads them or not, so they stay well below what one step may
#: carry in all (Linux's ARG_MAX, 2 MiB by default, for argv and environment together).
DATA_VARIABLE_LIMIT = 64 * 1024
#: The most all ``WFE_DATA*`` variables of a step together may carry (bytes).
DATA_VARIABLES_TOTAL = 256 * 1024


def env_size(name: str, value: str) -> int:
    """The bytes ``NAME=value`` takes in a process's environment (with its NUL)."""
    return (
        len(name.encode("utf-8", "surrogateescape"))
        + len(value.encode("utf-8", "surrogateescape"))
        + 2
    )


def kib(size: int) -> str:
    """``size`` bytes in KiB, for messages."""
    return f"{size / 1024:.1f} KiB"


def data_environment(data: Any) -> tuple[dict[str, str], list[str]]:
    """The workflow data as environment variables, and the names of those left out.

    ``WFE_DATA`` (all of it, as JSON) and ``WFE_DATA_<KEY>`` per top-level key (strings as
    they are, other values as JSON) are set when the value is at most
    :data:`DATA_VARIABLE_LIMIT` bytes and, in that order, all of them together stay within
    :data:`DATA_VARIABLES_TOTAL`; the others are not set (``$WFE_DATA_FILE`` has all the
    data), so large data never keeps a step from starting.
    """
    candidates = {"WFE_DATA": json.dumps(data, default=str)}
    if isinstance(data, Mapping):
        for key, value in data.items():
            candidates[ip.env_name("WFE_DATA_", str(key))] = ip.to_text(value)
    env: dict[str, str] = {}
    omitted: list[str] = []
    total = 0
    for name, value in candidates.items():
        size = env_size(name, value)
        if len(value.encode("utf-8", "surrogateescape")) > DATA_VARIABLE_LIMIT or (
            total + size > DATA_VARIABLES_TOTAL
        ):
            omitted.append(name)
            continue
        env[name] = value
        total += size
    return env, omitted


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
    props: dict[str, Any],
    descriptions: Mapping[str, str],
    inline_key: str | None = None,
    *,
    required: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON Schema of a step's ``config``: ``props`` with their ``descriptions``, the
    ``required`` keys, no other keys but ``_template`` holders, and (for a code step) exactly
    one of ``inline_key`` and ``file``."""
    for key, text in descriptions.items():
        props[key] = {**props[key], "description": text}
    schema: dict[str, Any] = {"type": "object"}
    if required:
        schema["required"] = list(required)
    schema.update(properties=props, patternProperties={"^_": {}}, additionalProperties=False)
    if inline_key is not None:
        schema["oneOf"] = [{"required": [inline_key]}, {"required": ["file"]}]
    return schema


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


def value_output(name: Any, value: Any) -> dict[str, Any] | None:
    """The step output of a ``value`` that came from outside (an event's data, an
    activity's result): under ``name`` when the step's ``output`` names one, else a
    mapping's keys are the outputs; any other value is no output."""
    if name is not None:
        return {str(name): value}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()} or None
    return None


def check_output_name(config: Mapping[str, Any], problems: list[str]) -> None:
    """``output``, when set, must name a data key."""
    output = config.get("output")
    if output is not None and (not isinstance(output, str) or not output.strip()):
        problems.append("output: must be a name")

"""Settings files: ``wfe.toml`` (or ``$WFE_CONFIG``) and ``[tool.wfe]`` of ``pyproject.toml``."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfe_core.errors import ConfigurationError
from wfe_core.spi import UnreadableFileError, read_regular_file
from wfe_host.settings._layers import SettingsLayer, layer_from_mapping

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Environment variable naming the settings file (used when no path is given explicitly).
ENV_CONFIG = "WFE_CONFIG"


def read_toml(path: str | os.PathLike[str]) -> SettingsLayer:
    """The layer of a TOML settings file (``[tool.wfe]`` when it is a ``pyproject.toml``)."""
    file = Path(path)
    if not file.exists() and not file.is_symlink():
        raise ConfigurationError(f"settings file {file} does not exist")
    document = _parse_toml(file)
    label = str(file)
    if file.name == "pyproject.toml":
        label = f"{file} [tool.wfe]"
        tool = document.get("tool", {})
        document = tool.get("wfe", {}) if isinstance(tool, dict) else {}
    return layer_from_mapping(document, label)


def _parse_toml(file: Path) -> dict[str, Any]:
    """The document of the TOML file ``file``; :class:`ConfigurationError` with one line
    naming the file (and the line and column when the TOML is wrong) otherwise."""
    try:
        data = read_regular_file(file)
    except UnreadableFileError as exc:
        raise ConfigurationError(f"cannot read settings file {file}: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode()) + 1
        raise ConfigurationError(
            f"{file}:{line}:{column}: invalid TOML: not valid UTF-8 "
            f"(byte 0x{data[exc.start : exc.start + 1].hex()})"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{file}: invalid TOML: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise ConfigurationError(f"{file}: invalid TOML: nested too deeply") from None


def find_settings_file(
    environ: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None
) -> Path | None:
    """The settings file to read when none is given: ``$WFE_CONFIG``, else ``wfe.toml`` in
    ``cwd``, else ``pyproject.toml`` in ``cwd`` if it has a ``[tool.wfe]`` table."""
    env = os.environ if environ is None else environ
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    # relative names, so that messages say "wfe.toml: ..." as the user knows the file
    base = Path(cwd) if cwd is not None else Path()
    candidate = base / "wfe.toml"
    if candidate.is_file():
        return candidate
    pyproject = base / "pyproject.toml"
    if pyproject.is_file():
        try:
            tool = _parse_toml(pyproject).get("tool", {})
        except ConfigurationError:
            return None  # not ours to complain about unless it holds our settings
        if isinstance(tool, dict) and "wfe" in tool:
            return pyproject
    return None

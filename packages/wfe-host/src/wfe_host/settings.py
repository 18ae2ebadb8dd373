"""Settings by name: which provider serves each concern, and the host's own options.

Settings come from four sources, highest first:

1. explicit values (a mapping or keyword arguments given to
   :func:`wfe_host.bootstrap.resolve`, or ``wfe`` command-line options),
2. ``WFE_*`` environment variables,
3. a TOML file: the path given, else ``$WFE_CONFIG``, else ``wfe.toml`` in the current
   directory, else the ``[tool.wfe]`` table of ``pyproject.toml`` in the current directory,
4. defaults.

They are merged field by field: an environment URL overrides a file's URL and keeps the file's
options. A source that selects a *different* provider for a concern replaces that concern's
lower-priority values altogether, since one provider's options mean nothing to another.

Everything is structured with a strict cattrs converter, so a mistake is reported with its field
path and the source it came from, e.g. ``wfe.toml: host.concurrency: must be >= 1, got 0``.
See ``docs/settings.md`` for every key and environment variable.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from wfe_core.errors import ConfigurationError
from wfe_core.serialization import converter as _core_converter
from wfe_core.spi import UnreadableFileError, read_regular_file
from wfe_host.options import HostOptions

T = TypeVar("T")

#: The concerns a host has one provider each for, in the order they are resolved.
CONCERNS: tuple[str, ...] = ("persistence", "lock", "queue", "search", "lifecycle")

#: Environment variable naming the settings file (used when no path is given explicitly).
ENV_CONFIG = "WFE_CONFIG"

#: Source label of explicit values (mappings and keyword arguments).
EXPLICIT_SOURCE = "settings"
#: Source label of defaults passed by a caller (the CLI's own defaults, for instance).
DEFAULTS_SOURCE = "defaults"

#: The largest ``WFE_*_FILE`` secret file read (a URL or a JSON object of options): 1 MiB.
MAX_SECRET_FILE_BYTES = 1024 * 1024

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@attrs.define
class ProviderSettings:
    """How one concern (persistence, lock, queue, search, lifecycle) is provided.

    ``provider`` selects an installed provider by name (``memory``, ``sqlite``, ...); when it
    is unset, the scheme of ``url`` selects it (``sqlite:///wfe.db``). ``options`` is structured
    into the provider's own options class.
    """

    #: The provider's name, as ``wfe providers`` lists it.
    provider: str | None = None
    #: Where the provider's backend is (a database URL, a server address, ...).
    url: str | None = None
    #: Provider-specific options; unknown keys are errors.
    options: dict[str, Any] = attrs.Factory(dict)


@attrs.define
class HostSettings:
    """Everything a host is configured with: a provider per concern plus its own options."""

    persistence: ProviderSettings = attrs.Factory(ProviderSettings)
    lock: ProviderSettings = attrs.Factory(ProviderSettings)
    queue: ProviderSettings = attrs.Factory(ProviderSettings)
    #: Unset (no provider, no URL) means: no search index; searches go to persistence.
    search: ProviderSettings = attrs.Factory(ProviderSettings)
    lifecycle: ProviderSettings = attrs.Factory(ProviderSettings)
    host: HostOptions = attrs.Factory(HostOptions)

    def concern(self, name: str) -> ProviderSettings:
        """The settings of concern ``name`` (one of :data:`CONCERNS`)."""
        if name not in CONCERNS:
            raise KeyError(name)
        value: ProviderSettings = getattr(self, name)
        return value


# --------------------------------------------------------------------------------------------
# Errors with field paths


@attrs.frozen
class SettingsProblem:
    """One thing wrong with the settings: where (dotted field path), what, and from where."""

    path: str
    message: str
    #: The source label: ``settings``, ``environment WFE_X`` or a file name; ``None`` if unknown.
    source: str | None = None

    def format(self) -> str:
        """``source: path: message``, leaving out what is unknown."""
        parts = [p for p in (self.source, self.path) if p]
        return ": ".join([*parts, self.message])


class SettingsError(ConfigurationError):
    """Settings are invalid; :attr:`problems` lists each field path, problem and source."""

    def __init__(self, problems: Sequence[SettingsProblem]) -> None:
        self.problems: tuple[SettingsProblem, ...] = tuple(problems)
        super().__init__("; ".join(p.format() for p in self.problems))

    def with_sources(self, origins: Mapping[str, str]) -> SettingsError:
        """A copy whose problems without a source get one from ``origins`` (path → label),
        matched on the longest dotted prefix of each problem's path."""
        return SettingsError(
            [
                p if p.source is not None else attrs.evolve(p, source=source_of(p.path, origins))
                for p in self.problems
            ]
        )


def source_of(path: str, origins: Mapping[str, str]) -> str | None:
    """The label of the source that set ``path`` (or its nearest parent), if known."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        label = origins.get(".".join(parts[:end]))
        if label is not None:
            return label
    return None


# --------------------------------------------------------------------------------------------
# The strict converter

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    # Python's bool("false") is True; settings from text must not be read that way.
    raise ValueError(f"expected true or false, got {value!r}")


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {value!r}")


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    # cattrs would call str() on anything; a number or table where text belongs is a mistake.
    raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")


#: Structures settings and provider options: unknown keys are errors, and scalars are checked
#: strictly (``"false"`` is false, ``5`` is not a string) since values often come from text.
settings_converter = _core_converter.copy(forbid_extra_keys=True)
settings_converter.register_structure_hook(bool, _structure_bool)
settings_converter.register_structure_hook(int, _structure_int)
settings_converter.register_structure_hook(float, _structure_float)
settings_converter.register_structure_hook(str, _structure_str)

_ATTRS_BOUND = re.compile(r"^'(?P<name>\w+)' must be (?P<bound>[<>]=? \S+): (?P<value>.*)$")
_ATTRS_OTHER = re.compile(r"^'(?P<name>\w+)' (?P<rest>must .*)$", re.DOTALL)


def _problems(exc: BaseException, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(field path, message) for every leaf error cattrs collected in ``exc``."""
    if isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            yield (*path, key), "unknown key"
    elif isinstance(exc, IterableValidationError):
        with_index, others = exc.group_exceptions()
        for inner, index_note in with_index:
            last = f"{path[-1] if path else ''}[{index_note.index!r}]"
            yield from _problems(inner, (*path[:-1], last))
        for inner in others:
            yield from _problems(inner, path)
    elif isinstance(exc, ClassValidationError):
        with_attr, others = exc.group_exceptions()
        for inner, attr_note in with_attr:
            yield from _problems(inner, (*path, attr_note.name))
        for inner in others:
            yield from _problems(inner, path)
    elif isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            yield from _problems(member, path)
    elif isinstance(exc, KeyError):
        yield path, "is required"
    elif isinstance(exc, AttributeError) and ("'keys'" in str(exc) or "'items'" in str(exc)):
        # cattrs reading a scalar or list as a mapping
        yield path, "expected a table (mapping)"
    else:
        # An attrs validator raised from the class's __init__: it names the attribute itself.
        message = str(exc.args[0]) if exc.args else str(exc)
        match = _ATTRS_BOUND.match(message)
        if match:
            bound = match["bound"]
            yield (*path, match["name"]), f"must be {bound}, got {match['value']}"
            return
        match = _ATTRS_OTHER.match(message)
        if match:
            yield (*path, match["name"]), match["rest"]
            return
        # A ConfigurationError from an options class's validator names the field itself.
        plain = isinstance(exc, ValueError | ConfigurationError)
        yield path, message if plain else f"{type(exc).__name__}: {message}"


def structure(value: Any, cls: type[T], path: Sequence[str] = ()) -> T:
    """Structure ``value`` into ``cls`` with :data:`settings_converter`.

    Raises :class:`SettingsError` whose problems carry dotted field paths prefixed with
    ``path`` (and no source; see :meth:`SettingsError.with_sources`).
    """
    try:
        return settings_converter.structure(value, cls)
    except (ClassValidationError, IterableValidationError, ValueError, TypeError) as exc:
        problems = [
            SettingsProblem(".".join(p), message) for p, message in _problems(exc, tuple(path))
        ]
        raise SettingsError(problems) from exc


# --------------------------------------------------------------------------------------------
# Sources


@attrs.define
class SettingsLayer:
    """The values one source sets, as plain nested dicts, and where each came from."""

    #: Label of the source (``settings``, ``environment``, a file name, ``defaults``).
    label: str
    #: ``{"persistence": {"url": ...}, "host": {...}}``: only what the source sets.
    data: dict[str, Any] = attrs.Factory(dict)
    #: Dotted path → label of the exact origin (``environment WFE_PERSISTENCE_URL``).
    origins: dict[str, str] = attrs.Factory(dict)


def is_url(value: str) -> bool:
    """True when ``value`` starts with a URL scheme (``sqlite:``, ``memory://``)."""
    return bool(_SCHEME.match(value))


def _shorthand(value: str) -> dict[str, Any]:
    return {"url": value} if is_url(value) else {"provider": value}


def _fail(source: str, path: str, message: str) -> SettingsError:
    return SettingsError([SettingsProblem(path, message, source)])


def layer_from_mapping(mapping: Mapping[str, Any], label: str = EXPLICIT_SOURCE) -> SettingsLayer:
    """The layer of an explicit mapping (or a TOML table) of settings.

    A concern may be a string (a URL or a bare provider name), a mapping with ``provider``,
    ``url`` and ``options``, or a :class:`ProviderSettings`. ``host`` may be a mapping or a
    :class:`~wfe_host.options.HostOptions`. ``None`` values mean "not set here".
    """
    layer = SettingsLayer(label)
    for key, value in mapping.items():
        if value is None:
            continue
        if key in CONCERNS:
            section = _concern_section(value, label, key)
        elif key == "host":
            section = _host_section(value, label)
        else:
            # kept so that structuring reports it as an unknown key, with its source
            layer.data[key] = value
            layer.origins[key] = label
            continue
        layer.data[key] = section
        _record_origins(layer.origins, key, section, label)
    return layer


def _concern_section(value: Any, label: str, key: str) -> dict[str, Any]:
    if isinstance(value, str):
        return _shorthand(value)
    if isinstance(value, ProviderSettings):
        section: dict[str, Any] = {"options": dict(value.options)} if value.options else {}
        if value.provider is not None:
            section["provider"] = value.provider
        if value.url is not None:
            section["url"] = value.url
        return section
    if isinstance(value, Mapping):
        section = {k: v for k, v in value.items() if v is not None}
        options = section.get("options")
        if isinstance(options, Mapping):
            section["options"] = dict(options)
        return section
    raise _fail(
        label, key, f"expected a URL or provider name, or a table, got {type(value).__name__}"
    )


def _host_section(value: Any, label: str) -> dict[str, Any]:
    if isinstance(value, HostOptions):
        return dict(attrs.asdict(value))
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if v is not None}
    raise _fail(label, "host", f"expected a table, got {type(value).__name__}")


def _record_origins(origins: dict[str, str], key: str, section: Any, label: str) -> None:
    origins[key] = label
    if isinstance(section, Mapping):
        for field, value in section.items():
            origins[f"{key}.{field}"] = label
            if field == "options" and isinstance(value, Mapping):
                for option in value:
                    origins[f"{key}.options.{option}"] = label


def _env_value(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(value, variable it came from) of ``name`` or ``name_FILE``; ``None`` when unset."""
    direct = environ.get(name, "")
    file_name = f"{name}_FILE"
    path = environ.get(file_name, "")
    if direct and path:
        raise _fail(f"environment {name}", "", f"set either {name} or {file_name}, not both")
    if direct:
        return direct, name
    if path:
        try:
            # Secrets files (Docker, Kubernetes) usually end with a newline that is no part
            # of the value.
            data = read_regular_file(path, MAX_SECRET_FILE_BYTES)
            return data.decode("utf-8").strip(), file_name
        except UnreadableFileError as exc:
            raise _fail(f"environment {file_name}", "", f"cannot read {path}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise _fail(
                f"environment {file_name}",
                "",
                f"cannot read {path}: not valid UTF-8 (byte {exc.start + 1})",
            ) from None
    return None


def layer_from_environ(environ: Mapping[str, str]) -> SettingsLayer:
    """The layer of the ``WFE_*`` settings variables.

    Per concern ``C`` (``PERSISTENCE``, ``LOCK``, ``QUEUE``, ``SEARCH``, ``LIFECYCLE``):
    ``WFE_C`` (a URL or provider name), ``WFE_C_PROVIDER``, ``WFE_C_URL``, ``WFE_C_OPTIONS``
    (a JSON object); per host option ``WFE_HOST_<FIELD>``. Each may instead be given as
    ``<NAME>_FILE``, the path of a file holding the value. Empty values count as unset. An
    unknown ``WFE_<CONCERN>_*`` or ``WFE_HOST_*`` variable is an error (it is surely a typo).
    """
    layer = SettingsLayer("environment")
    known: set[str] = set()
    for concern in CONCERNS:
        prefix = f"WFE_{concern.upper()}"
        names: dict[str, str | None] = {
            prefix: None,
            f"{prefix}_PROVIDER": "provider",
            f"{prefix}_URL": "url",
            f"{prefix}_OPTIONS": "options",
        }
        known.update(names)
        section: dict[str, Any] = {}
        # the shorthand first, so that the specific variables win over it
        for name, field in names.items():
            found = _env_value(environ, name)
            if found is None:
                continue
            value, variable = found
            label = f"environment {variable}"
            if field is None:
                part = _shorthand(value)
            elif field == "options":
                part = {"options": _json_object(value, label, f"{concern}.options")}
            else:
                part = {field: value}
            section.update(part)
            _record_origins(layer.origins, concern, part, label)
        if section:
            layer.data[concern] = section
            layer.origins.setdefault(concern, "environment")
    host: dict[str, Any] = {}
    for attribute in attrs.fields(HostOptions):
        name = f"WFE_HOST_{attribute.name.upper()}"
        known.add(name)
        found = _env_value(environ, name)
        if found is not None:
            host[attribute.name] = found[0]
            layer.origins[f"host.{attribute.name}"] = f"environment {found[1]}"
    if host:
        layer.data["host"] = host
    _check_unknown_variables(environ, known)
    return layer


def _json_object(text: str, label: str, path: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(label, path, f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _fail(label, path, f"expected a JSON object, got {type(value).__name__}")
    return value


def _check_unknown_variables(environ: Mapping[str, str], known: set[str]) -> None:
    prefixes = tuple(f"WFE_{c.upper()}_" for c in (*CONCERNS, "host"))
    for name, value in environ.items():
        if not name.startswith(prefixes) or not value:
            continue
        base = name.removesuffix("_FILE")
        if base not in known:
            close = difflib.get_close_matches(base, sorted(known), n=1, cutoff=0.75)
            if close:
                hint = f"did you mean {close[0]}{name[len(base) :]}?"
            else:
                # Only the variables of its own prefix: the whole list is 25 names.
                group = next(p for p in prefixes if name.startswith(p))
                hint = f"known {group}* variables: " + ", ".join(
                    sorted(k for k in known if k.startswith(group) or k == group[:-1])
                )
            raise _fail(f"environment {name}", "", f"unknown setting; {hint}")


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


# --------------------------------------------------------------------------------------------
# Merging

#: ``(concern, url)`` → the name of the provider the URL's scheme selects for that concern
#: (``None`` when unknown).
ProviderOfUrl = Callable[[str, str], str | None]


def _scheme_of(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match.group(0)[:-1].lower() if match else None


def _identity(
    concern: str, section: Mapping[str, Any], provider_of_url: ProviderOfUrl | None
) -> str | None:
    provider = section.get("provider")
    if isinstance(provider, str):
        return provider
    url = section.get("url")
    if isinstance(url, str):
        found = provider_of_url(concern, url) if provider_of_url is not None else None
        return found or _scheme_of(url)
    return None


def merge_layers(
    layers: Sequence[SettingsLayer], provider_of_url: ProviderOfUrl | None = None
) -> SettingsLayer:
    """One layer from ``layers`` (lowest priority first), merged field by field.

    Options merge key by key. When a higher layer selects a different provider for a concern
    than a lower one (by name, or by a URL whose scheme means another provider), the lower
    layer's values for that concern are dropped.
    """
    merged = SettingsLayer("merged")
    for layer in layers:
        for key, value in layer.data.items():
            below = merged.data.get(key)
            if key in CONCERNS and isinstance(below, dict) and isinstance(value, dict):
                high = _identity(key, value, provider_of_url)
                low = _identity(key, below, provider_of_url)
                if high is not None and low is not None and high != low:
                    _drop(merged, key)
                    below = None
            if isinstance(below, dict) and isinstance(value, dict):
                combined = dict(below)
                for field, field_value in value.items():
                    lower = combined.get(field)
                    if (
                        field == "options"
                        and isinstance(lower, dict)
                        and isinstance(field_value, Mapping)
                    ):
                        field_value = {**lower, **field_value}
                    combined[field] = field_value
                merged.data[key] = combined
            else:
                _drop(merged, key)
                merged.data[key] = value
        merged.origins.update(layer.origins)
    return merged


def _drop(layer: SettingsLayer, key: str) -> None:
    layer.data.pop(key, None)
    for path in [p for p in layer.origins if p == key or p.startswith(f"{key}.")]:
        del layer.origins[path]


@attrs.frozen
class LoadedSettings:
    """Merged settings and the source of each value (dotted path → source label)."""

    settings: HostSettings
    origins: Mapping[str, str]

    def source_of(self, path: str) -> str | None:
        """The label of the source that set ``path`` (or its nearest parent)."""
        return source_of(path, self.origins)


def settings_layers(
    source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> list[SettingsLayer]:
    """The layers of every source, lowest priority first (see the module docstring)."""
    env = os.environ if environ is None else environ
    layers: list[SettingsLayer] = []
    if defaults:
        layers.append(layer_from_mapping(defaults, DEFAULTS_SOURCE))
    if isinstance(source, str | os.PathLike):
        layers.append(read_toml(source))
    else:
        found = find_settings_file(env)
        if found is not None:
            layers.append(read_toml(found))
    layers.append(layer_from_environ(env))
    if isinstance(source, Mapping):
        layers.append(layer_from_mapping(source))
    elif source is not None and not isinstance(source, str | os.PathLike):
        raise ConfigurationError(
            f"settings must be a mapping or a file path, got {type(source).__name__}"
        )
    if overrides:
        layers.append(layer_from_mapping(overrides))
    return layers


def load_settings(
    source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    provider_of_url: ProviderOfUrl | None = None,
    **overrides: Any,
) -> LoadedSettings:
    """Read, merge and structure settings from every source.

    ``source`` is a mapping of explicit settings or the path of a TOML file; ``overrides``
    are explicit settings too (``persistence="sqlite:///wfe.db"``). ``defaults`` sit below
    every source. ``provider_of_url`` lets the merge tell which provider a URL selects.
    Nothing is checked against installed providers here; see :func:`wfe_host.bootstrap.resolve`.
    """
    layers = settings_layers(source, environ=environ, defaults=defaults, overrides=overrides)
    merged = merge_layers(layers, provider_of_url)
    try:
        settings = structure(merged.data, HostSettings)
    except SettingsError as exc:
        raise exc.with_sources(merged.origins) from exc.__cause__
    return LoadedSettings(settings, dict(merged.origins))

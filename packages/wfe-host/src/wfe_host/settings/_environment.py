"""The ``WFE_*`` environment variables as a settings layer, ``*_FILE`` secrets included."""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.spi import UnreadableFileError, read_regular_file
from wfe_host.options import HostOptions
from wfe_host.settings._layers import SettingsLayer, record_origins, shorthand
from wfe_host.settings._models import CONCERNS
from wfe_host.settings._problems import SettingsError, fail

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The largest ``WFE_*_FILE`` secret file read (a URL or a JSON object of options): 1 MiB.
MAX_SECRET_FILE_BYTES = 1024 * 1024


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
                part = shorthand(value)
            elif field == "options":
                part = {"options": _json_object(value, label, f"{concern}.options")}
            else:
                part = {field: value}
            section.update(part)
            record_origins(layer.origins, concern, part, label)
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


def _env_value(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(value, variable it came from) of ``name`` or ``name_FILE``; ``None`` when unset."""
    direct = environ.get(name, "")
    file_name = f"{name}_FILE"
    path = environ.get(file_name, "")
    if direct and path:
        raise fail(f"environment {name}", "", f"set either {name} or {file_name}, not both")
    if direct:
        return direct, name
    if path:
        return _read_secret(path, file_name), file_name
    return None


def _read_secret(path: str, variable: str) -> str:
    """The text of the secret file ``path`` named by ``variable``."""
    try:
        data = read_regular_file(path, MAX_SECRET_FILE_BYTES)
    except UnreadableFileError as exc:
        raise fail(f"environment {variable}", "", f"cannot read {path}: {exc}") from None
    try:
        # Secrets files (Docker, Kubernetes) usually end with a newline that is no part of
        # the value.
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise fail(
            f"environment {variable}",
            "",
            f"cannot read {path}: not valid UTF-8 (byte {exc.start + 1})",
        ) from None


def _json_object(text: str, label: str, path: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(label, path, f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise fail(label, path, f"expected a JSON object, got {type(value).__name__}")
    return value


def _check_unknown_variables(environ: Mapping[str, str], known: set[str]) -> None:
    prefixes = tuple(f"WFE_{c.upper()}_" for c in (*CONCERNS, "host"))
    for name, value in environ.items():
        if not name.startswith(prefixes) or not value:
            continue
        base = name.removesuffix("_FILE")
        if base not in known:
            raise _unknown_variable(name, base, prefixes, known)


def _unknown_variable(
    name: str, base: str, prefixes: tuple[str, ...], known: set[str]
) -> SettingsError:
    """The error of the unknown variable ``name``: the known name it is closest to, or the
    known names of its group."""
    close = difflib.get_close_matches(base, sorted(known), n=1, cutoff=0.75)
    if close:
        hint = f"did you mean {close[0]}{name[len(base) :]}?"
    else:
        # Only the variables of its own prefix: the whole list is 25 names.
        group = next(p for p in prefixes if name.startswith(p))
        hint = f"known {group}* variables: " + ", ".join(
            sorted(k for k in known if k.startswith(group) or k == group[:-1])
        )
    return fail(f"environment {name}", "", f"unknown setting; {hint}")

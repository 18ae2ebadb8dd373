"""The strict settings converter, and structuring with errors that name each field path.

Errors are gathered by :func:`cattrs.transform_error`, which walks cattrs' validation errors
and knows each one's path; :func:`_describe` says what is wrong with one value. A description
names the fields below the path it is reported at (an unknown key, the field an attrs
validator refused), so it is handed over as JSON: ``[[subpath, message], ...]``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, TypeVar

from cattrs import transform_error
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from wfe_core.errors import ConfigurationError
from wfe_core.serialization import converter as _core_converter
from wfe_core.spi import OptionError
from wfe_host.settings._problems import SettingsError, SettingsProblem

if TYPE_CHECKING:
    from collections.abc import Sequence

T = TypeVar("T")

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

# attrs' own validators (and wfe_core's seconds_validator) raise "'<field>' must ...": the
# field they name is below the path cattrs reports (the class whose __init__ refused it).
# The bound validators (ge, lt, ...) end in ": <value>", said here as ", got <value>".
_ATTRS_MESSAGE = re.compile(r"^'(?P<field>\w+)' (?P<rest>must .*)$", re.DOTALL)
_ATTRS_BOUND = re.compile(r"^(?P<bound>must be [<>]=? \S+): (?P<value>.*)$", re.DOTALL)


def _leaf_problems(exc: BaseException) -> list[tuple[str, str]]:
    """``(subpath, message)`` of what ``exc`` (one error cattrs collected) says is wrong."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return [(key, "unknown key") for key in sorted(exc.extra_fields)]
    if isinstance(exc, KeyError):
        return [("", "is required")]
    if isinstance(exc, AttributeError) and ("'keys'" in str(exc) or "'items'" in str(exc)):
        # cattrs reading a scalar or a list as a mapping
        return [("", "expected a table (mapping)")]
    if isinstance(exc, OptionError):
        # A provider's option validator (wfe_core.spi.OptionChecks) names the option.
        return [(exc.option, exc.problem)]
    message = str(exc.args[0]) if exc.args else str(exc)
    found = _ATTRS_MESSAGE.match(message)
    if found:
        rest = found["rest"]
        bound = _ATTRS_BOUND.match(rest)
        if bound:
            rest = f"{bound['bound']}, got {bound['value']}"
        return [(found["field"], rest)]
    # Our own hooks and an options class's checks say what is wrong in a sentence.
    plain = isinstance(exc, ValueError | ConfigurationError)
    return [("", message if plain else f"{type(exc).__name__}: {message}")]


def _describe(exc: BaseException, _type: Any) -> str:
    # transform_error appends " @ <path>" to this; see _problems.
    return json.dumps(_leaf_problems(exc))


_PAYLOAD = json.JSONDecoder()


def _problems(exc: BaseException, path: Sequence[str]) -> list[SettingsProblem]:
    """The problems of a cattrs error, with dotted paths below ``path``."""
    prefix = ".".join(path)
    problems = []
    for line in transform_error(exc, path=prefix, format_exception=_describe):
        # "<JSON payload> @ <path>": the payload is read first, so that the path may hold
        # anything (a mapping key with " @ " in it).
        payload, end = _PAYLOAD.raw_decode(line)
        where = line[end + len(" @ ") :].removeprefix(".")
        for below, message in payload:
            full = ".".join(p for p in (where, below) if p)
            problems.append(SettingsProblem(full, message))
    return problems


def structure(value: Any, cls: type[T], path: Sequence[str] = ()) -> T:
    """Structure ``value`` into ``cls`` with :data:`settings_converter`.

    Raises :class:`SettingsError` whose problems carry dotted field paths prefixed with
    ``path`` (and no source; see :meth:`SettingsError.with_sources`).
    """
    try:
        return settings_converter.structure(value, cls)
    except (ClassValidationError, IterableValidationError, ValueError, TypeError) as exc:
        raise SettingsError(_problems(exc, path)) from exc

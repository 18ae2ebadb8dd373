"""``${{ inputs.x }}``, ``${{ outputs.x }}``, ``${{ data.x }}``, ``${{ config.x }}`` and
``((x))`` in YAML string values.

``config`` values are the load-time values (``--set key=value``) and are filled in when the
file is loaded; the others read the workflow data when the step runs. Into a shell ``run``
script nothing is pasted as code: every reference becomes a reference to an environment
variable that holds the value, in the form its place in the script needs (see
:func:`shell_safe`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from wfe_yaml.shell_scan import Place, Spot, classify

#: Namespaces read from the workflow data when a step runs.
RUNTIME_NAMESPACES = ("inputs", "outputs", "data")
#: The namespace of load-time values.
CONFIG_NAMESPACE = "config"
NAMESPACES = (*RUNTIME_NAMESPACES, CONFIG_NAMESPACE)

# ``((x))`` must not match bash arithmetic ``$((x))``.
_REFERENCE = re.compile(
    r"\$\{\{(?P<expr>.*?)\}\}|(?<!\$)\(\((?P<short>\s*[A-Za-z_][\w.-]*\s*)\)\)", re.DOTALL
)
_PATH = re.compile(r"^[A-Za-z_][\w-]*(?:\.[\w-]+)*$")


class InterpolationError(ValueError):
    """A malformed or unknown reference."""


@attrs.frozen
class Reference:
    """One reference: ``namespace`` and the ``path`` below it, as written (``raw``)."""

    namespace: str
    path: tuple[str, ...]
    raw: str
    start: int
    end: int

    @property
    def dotted(self) -> str:
        """``namespace.a.b``."""
        return ".".join((self.namespace, *self.path))

    @property
    def is_runtime(self) -> bool:
        """Whether the value comes from the workflow data."""
        return self.namespace in RUNTIME_NAMESPACES


def parse_path(text: str) -> tuple[str, tuple[str, ...]]:
    """``"inputs.a.b"`` → ``("inputs", ("a", "b"))``; a path without a namespace reads
    the workflow data. ``InterpolationError`` for a malformed path."""
    expr = text.strip()
    if not _PATH.match(expr):
        raise InterpolationError(
            f"malformed reference {text.strip()!r}: expected e.g. inputs.name or outputs.version"
        )
    parts = expr.split(".")
    if parts[0] in NAMESPACES:
        if len(parts) < 2:
            raise InterpolationError(f"reference {expr!r} names no value (e.g. {expr}.name)")
        return parts[0], tuple(parts[1:])
    return "data", tuple(parts)


def references(text: str) -> list[Reference]:
    """Every reference in ``text``, in order (``InterpolationError`` for a malformed one)."""
    found: list[Reference] = []
    for match in _REFERENCE.finditer(text):
        if match.group("expr") is not None:
            expr = match.group("expr")
            if not expr.strip():
                raise InterpolationError("empty reference ${{ }}")
            namespace_text = expr.strip().split(".", 1)[0]
            if "." in expr.strip() and namespace_text not in NAMESPACES:
                raise InterpolationError(
                    f"unknown namespace {namespace_text!r} in ${{{{ {expr.strip()} }}}}; "
                    f"use {', '.join(NAMESPACES)}"
                )
            namespace, path = parse_path(expr)
        else:
            namespace, path = CONFIG_NAMESPACE, (match.group("short").strip(),)
        found.append(Reference(namespace, path, match.group(0), match.start(), match.end()))
    rest = _REFERENCE.sub("", text)
    if "${{" in rest:
        raise InterpolationError("unterminated reference: '${{' without a closing '}}'")
    return found


def lookup(data: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` below ``data`` (``None`` when any part is missing)."""
    value = data
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def resolve(reference: Reference, data: Any, config: Mapping[str, Any]) -> Any:
    """The value ``reference`` names: from ``config`` or from the workflow ``data``."""
    if reference.namespace == CONFIG_NAMESPACE:
        return lookup(config, reference.path)
    return lookup(data, reference.path)


def to_text(value: Any) -> str:
    """A value as it is pasted into text: strings as they are, ``None`` as nothing,
    everything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def render(
    value: Any, resolver: Callable[[Reference], Any], *, only: Callable[[Reference], bool]
) -> Any:
    """``value`` (a string, or lists/mappings of them) with the references ``only`` accepts
    replaced by what ``resolver`` says. A string that is exactly one reference becomes the
    value itself (so a list stays a list and ``"1.10"`` stays a string)."""
    if isinstance(value, str):
        refs = [r for r in references(value) if only(r)]
        if not refs:
            return value
        if len(refs) == 1 and refs[0].start == 0 and refs[0].end == len(value):
            return resolver(refs[0])
        out: list[str] = []
        last = 0
        for ref in refs:
            out.append(value[last : ref.start])
            out.append(to_text(resolver(ref)))
            last = ref.end
        out.append(value[last:])
        return "".join(out)
    if isinstance(value, Mapping):
        return {k: render(v, resolver, only=only) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, resolver, only=only) for v in value]
    return value


def env_name(prefix: str, text: str) -> str:
    """An environment variable name: ``prefix`` + ``text`` upper-cased, other characters
    as ``_``."""
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", text).upper()


def shell_spots(script: str) -> list[tuple[Reference, Spot]]:
    """Every reference in a shell ``script`` and where it stands (``InterpolationError`` for
    a malformed one)."""
    refs = references(script)
    spots = classify(script, [(ref.start, ref.end) for ref in refs])
    return list(zip(refs, spots, strict=True))


def integer_text(ref: Reference, value: Any) -> str:
    """``value`` as the decimal text of an integer, for a reference bash evaluates as
    arithmetic; ``InterpolationError`` when it is not one (no expression, no octal)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        return str(int(value, 10))
    shown = "nothing" if value is None else repr(to_text(value)[:80])
    raise InterpolationError(
        f"{ref.raw.strip()} stands where bash evaluates arithmetic, so its value must be "
        f"an integer; got {shown}"
    )


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
#: The text replacing a reference, by where it stands (``{}`` is the variable's name).
_FORMS = {
    Place.WORD: '"${{{}}}"',
    Place.DOUBLE: "${{{}}}",
    Place.SINGLE: "'\"${{{}}}\"'",
    Place.ANSI_C: "'\"${{{}}}\"$'",
    Place.HEREDOC: "${{{}}}",
    Place.ARITHMETIC: "${{{}}}",
}


def shell_safe(
    script: str,
    resolver: Callable[[Reference], Any],
    *,
    only: Callable[[Reference], bool],
    prefix: str,
) -> tuple[str, dict[str, str]]:
    """``script`` with every reference ``only`` accepts replaced by a reference to an
    environment variable that holds the value, and those variables' values.

    The value is never shell code: ``$(touch /tmp/pwned)`` stays that text. The form follows
    where the reference stands (:mod:`wfe_yaml.shell_scan`): ``"${V}"`` in a word, ``${V}``
    inside double quotes and unquoted here-documents, ``'"${V}"'`` inside single quotes,
    ``'"${V}"$'`` inside ``$'...'``. Where bash evaluates arithmetic the value must be an
    integer. ``InterpolationError`` for a reference where no form is safe, or a value that
    is not an integer where one must be (the loader refuses the first kind up front).
    """
    pairs = [(ref, spot) for ref, spot in shell_spots(script) if only(ref)]
    if not pairs:
        return script, {}
    env: dict[str, str] = {}
    names: dict[tuple[str, bool], str] = {}
    out: list[str] = []
    last = 0
    for ref, spot in pairs:
        if spot.place == Place.REFUSED:
            raise InterpolationError(f"{ref.raw.strip()} cannot stand here: it is {spot.refused}")
        out.append(script[last : ref.start])
        key = (ref.dotted, spot.integer)
        name = names.get(key)
        if name is None:
            name = env_name(prefix, f"{len(names)}_{'_'.join(ref.path)}")
            names[key] = name
            value = resolver(ref)
            env[name] = integer_text(ref, value) if spot.integer else to_text(value)
        out.append(_FORMS[spot.place].format(name))
        last = ref.end
    out.append(script[last:])
    return "".join(out), env

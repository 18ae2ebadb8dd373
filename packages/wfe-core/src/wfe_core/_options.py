"""Options of providers: attrs validators that name the option, and the URL query
parameters that set options (``sqlite:///wfe.db?busy_timeout=5``).

Every provider package has an attrs options class and a URL; these helpers give them one
wording for every mistake: ``<provider> option <name> <problem>`` for a bad value and
``<provider> url '<url>': <problem>`` for a bad URL, each a
:class:`~wfe_core.errors.ConfigurationError`. An :class:`OptionError` also carries the option
and the problem apart, so that settings report it at its field path
(``persistence.options.busy_timeout: must be ...``).

Internal: other distributions import these names from :mod:`wfe_core.spi`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

import attrs

from wfe_core._limits import MAX_SETTING_SECONDS, seconds_problem
from wfe_core.errors import ConfigurationError

__all__ = ["OptionChecks", "OptionError", "UrlOptions", "read_query_value", "redact_password"]

OptionsT = TypeVar("OptionsT")

#: An attrs validator: ``(instance, attribute, value) -> None``, raising when invalid.
Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class OptionError(ConfigurationError):
    """A provider option's value is invalid: ``<provider> option <option> <problem>``."""

    def __init__(self, provider: str, option: str, problem: str) -> None:
        #: The provider's name (``sqlite``), the option's (``busy_timeout``) and what is wrong
        #: (``must be ..., got -1``).
        self.provider = provider
        self.option = option
        self.problem = problem
        super().__init__(f"{provider} option {option} {problem}")


@attrs.frozen
class OptionChecks:
    """The attrs validators of one provider's options class; each raises an
    :class:`OptionError` naming the provider and the option."""

    #: The provider's name as messages say it (``sqlite``, ``postgres``).
    provider: str

    def error(self, option: str, problem: str) -> OptionError:
        """The error of ``option``: ``problem`` says what is wrong (``must be ...``)."""
        return OptionError(self.provider, option, problem)

    def check(self, problem_of: Callable[[Any], str | None]) -> Validator:
        """A validator from ``problem_of(value)``: what is wrong (``must be ...``), or
        ``None`` when the value is fine."""

        def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
            problem = problem_of(value)
            if problem is not None:
                raise OptionError(self.provider, attribute.name, problem)

        return validate

    def seconds(
        self, *, allow_zero: bool = False, maximum: float = MAX_SETTING_SECONDS, note: str = ""
    ) -> Validator:
        """A duration in seconds: finite, > 0 (or >= 0) and at most ``maximum`` (see
        :func:`~wfe_core.spi.seconds_problem`); ``note`` is added to the problem
        (``" (0: no limit)"``)."""

        def problem_of(value: Any) -> str | None:
            problem = seconds_problem(value, maximum=maximum, allow_zero=allow_zero)
            return None if problem is None else problem + note

        return self.check(problem_of)

    def count(self, minimum: int) -> Validator:
        """An integer (not a bool) of at least ``minimum``."""

        def problem_of(value: Any) -> str | None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                return f"must be an integer of at least {minimum}, got {value!r}"
            return None

        return self.check(problem_of)

    def one_of(self, choices: Iterable[str]) -> Validator:
        """One of ``choices`` (listed in the message in their order)."""
        allowed = tuple(choices)

        def problem_of(value: Any) -> str | None:
            if value not in allowed:
                return f"must be one of {', '.join(allowed)}, got {value!r}"
            return None

        return self.check(problem_of)

    def boolean(self) -> Validator:
        """``True`` or ``False`` (not ``1`` or ``"yes"``)."""

        def problem_of(value: Any) -> str | None:
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"

        return self.check(problem_of)


def read_query_value(raw: str, kind: type) -> Any:
    """The URL query parameter text ``raw`` as a ``kind`` (``int``, ``float``, ``bool``:
    true/false, 1/0, yes/no, on/off; anything else: the text); ``ValueError`` when it is
    not one."""
    if kind is bool:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(raw)
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    return raw


def redact_password(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@attrs.frozen
class UrlOptions(Generic[OptionsT]):
    """How one provider takes its options: an instance of its options class, and the URL
    query parameters that set fields of it (the URL wins over the options given)."""

    #: The provider's name as messages say it (``sqlite``).
    provider: str
    #: The attrs options class (frozen: query parameters make a copy with ``attrs.evolve``).
    options_class: type[OptionsT]
    #: URL query parameter → the type its text is read as (see :func:`read_query_value`).
    fields: Mapping[str, type]

    def options(self, options: object | None) -> OptionsT:
        """``options``, or the defaults when ``None``; a :class:`ConfigurationError` when it
        is not an instance of :attr:`options_class`."""
        if options is None:
            return self.options_class()
        if not isinstance(options, self.options_class):
            name = self.options_class.__name__
            article = "an" if name[:1] in "AEIOU" else "a"
            raise ConfigurationError(
                f"{self.provider} options must be {article} {name}, got {type(options).__name__}"
            )
        return options

    def text(self, url: object) -> str:
        """``url`` when it is a string; a :class:`ConfigurationError` otherwise."""
        if not isinstance(url, str):
            raise ConfigurationError(
                f"{self.provider} url must be a string, got {type(url).__name__}"
            )
        return url

    def error(self, shown: str, problem: str) -> ConfigurationError:
        """The error of the URL ``shown`` (already without its password)."""
        return ConfigurationError(f"{self.provider} url {shown!r}: {problem}")

    def host_and_port(self, parts: SplitResult, shown: str) -> tuple[str, int | None]:
        """The host (required) and port (if any) of the split URL ``parts``; a
        :class:`ConfigurationError` for a missing host or a port that is not one."""
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise self.error(shown, str(exc)) from None
        if not host:
            raise self.error(shown, "a host is required")
        return host, port

    def apply_query(
        self, options: OptionsT, query: str, shown: str, *, keep_others: bool = False
    ) -> tuple[OptionsT, list[tuple[str, str]]]:
        """``options`` with the fields the URL query ``query`` sets, and the parameters that
        are not fields (in order) when ``keep_others`` (for a driver that takes more);
        without it, another parameter is an error listing the known ones. ``shown`` is the
        URL as messages show it."""
        overrides: dict[str, Any] = {}
        others: list[tuple[str, str]] = []
        for name, raw in parse_qsl(query, keep_blank_values=True):
            kind = self.fields.get(name)
            if kind is None:
                if keep_others:
                    others.append((name, raw))
                    continue
                raise self.error(
                    shown, f"unknown parameter {name!r} (known: {', '.join(sorted(self.fields))})"
                )
            try:
                overrides[name] = read_query_value(raw, kind)
            except ValueError:
                raise self.error(
                    shown, f"parameter {name}={raw!r} is not a valid {kind.__name__}"
                ) from None
        if overrides:
            try:
                options = attrs.evolve(options, **overrides)  # type: ignore[misc]
            except ConfigurationError as exc:
                raise self.error(shown, str(exc)) from None
        return options, others

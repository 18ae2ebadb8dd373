"""OptionChecks and UrlOptions: one wording for every provider's option and URL mistakes."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from wfe_core.errors import ConfigurationError
from wfe_core.spi import OptionChecks, OptionError, UrlOptions, read_query_value, redact_password

checks = OptionChecks("demo")


def _short_name(value: Any) -> str | None:
    return None if isinstance(value, str) and len(value) <= 3 else f"must be short, got {value!r}"


@attrs.frozen
class DemoOptions:
    timeout: float = attrs.field(default=1.0, validator=checks.seconds())
    limit: float = attrs.field(default=0.0, validator=checks.seconds(allow_zero=True, note="!"))
    size: int = attrs.field(default=1, validator=checks.count(1))
    mode: str = attrs.field(default="a", validator=checks.one_of(("a", "b")))
    on: bool = attrs.field(default=True, validator=checks.boolean())
    name: str = attrs.field(default="x", validator=checks.check(_short_name))


SECONDS = "must be a finite number of seconds"
DEMO = UrlOptions("demo", DemoOptions, {"timeout": float, "size": int, "on": bool, "name": str})


@pytest.mark.parametrize(
    ("fields", "option", "problem"),
    [
        (
            {"timeout": 0},
            "timeout",
            "must be a finite number of seconds > 0 and at most 86400, got 0",
        ),
        (
            {"limit": -1},
            "limit",
            "must be a finite number of seconds >= 0 and at most 86400, got -1!",
        ),
        ({"size": True}, "size", "must be an integer of at least 1, got True"),
        ({"mode": "c"}, "mode", "must be one of a, b, got 'c'"),
        ({"on": 1}, "on", "must be true or false, got 1"),
        ({"name": "long"}, "name", "must be short, got 'long'"),
    ],
)
def test_a_bad_value_names_the_provider_the_option_and_the_problem(
    fields: dict[str, Any], option: str, problem: str
) -> None:
    with pytest.raises(OptionError) as info:
        DemoOptions(**fields)
    assert (info.value.provider, info.value.option, info.value.problem) == ("demo", option, problem)
    assert str(info.value) == f"demo option {option} {problem}"
    assert isinstance(info.value, ConfigurationError)


def test_query_parameters_set_options_and_bad_ones_name_the_url() -> None:
    options, others = DEMO.apply_query(DemoOptions(), "timeout=2.5&size=3&on=off", "demo://h")
    assert options == DemoOptions(timeout=2.5, size=3, on=False)
    assert others == []
    with pytest.raises(ConfigurationError) as info:
        DEMO.apply_query(DemoOptions(), "colour=red", "demo://h")
    assert str(info.value) == (
        "demo url 'demo://h': unknown parameter 'colour' (known: name, on, size, timeout)"
    )
    with pytest.raises(
        ConfigurationError, match=r"^demo url 'demo://h': parameter size='x' is not"
    ):
        DEMO.apply_query(DemoOptions(), "size=x", "demo://h")
    with pytest.raises(ConfigurationError) as info:
        DEMO.apply_query(DemoOptions(), "size=0", "demo://h")
    assert str(info.value) == (
        "demo url 'demo://h': demo option size must be an integer of at least 1, got 0"
    )


def test_other_parameters_can_be_kept_for_the_driver() -> None:
    options, others = DEMO.apply_query(
        DemoOptions(), "sslmode=require&size=2&x=", "demo://h", keep_others=True
    )
    assert options.size == 2
    assert others == [("sslmode", "require"), ("x", "")]


def test_options_and_urls_of_the_wrong_type_are_refused() -> None:
    assert DEMO.options(None) == DemoOptions()
    with pytest.raises(ConfigurationError, match=r"^demo options must be a DemoOptions, got dict$"):
        DEMO.options({})
    with pytest.raises(ConfigurationError, match=r"^demo url must be a string, got int$"):
        DEMO.text(5)


def test_host_and_port() -> None:
    from urllib.parse import urlsplit

    assert DEMO.host_and_port(urlsplit("demo://h:5"), "demo://h:5") == ("h", 5)
    with pytest.raises(ConfigurationError, match=r"^demo url 'demo://': a host is required$"):
        DEMO.host_and_port(urlsplit("demo://"), "demo://")
    with pytest.raises(ConfigurationError, match=r"^demo url 'demo://h:x': Port could not"):
        DEMO.host_and_port(urlsplit("demo://h:x"), "demo://h:x")


def test_query_values_and_passwords() -> None:
    assert [read_query_value(v, bool) for v in ("Yes", "0", "on", "FALSE")] == [
        True,
        False,
        True,
        False,
    ]
    with pytest.raises(ValueError, match="maybe"):
        read_query_value("maybe", bool)
    assert read_query_value("7", int) == 7
    assert redact_password("demo://me:secret@h:1/db?x=1") == "demo://me:***@h:1/db?x=1"
    assert redact_password("demo://h/db") == "demo://h/db"

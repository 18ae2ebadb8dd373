"""URL parsing and options of the PostgreSQL providers (no server needed)."""

from __future__ import annotations

import pytest

from wfe_core.errors import ConfigurationError
from wfe_postgres.options import PostgresOptions, parse_url, redact


def test_both_schemes_give_the_same_libpq_url() -> None:
    one = parse_url("postgresql://app:secret@db.example:5433/wfe")
    other = parse_url("postgres://app:secret@db.example:5433/wfe")
    assert one == other
    assert one.conninfo == "postgresql://app:secret@db.example:5433/wfe"


def test_option_parameters_override_the_options_and_the_rest_go_to_libpq() -> None:
    target = parse_url(
        "postgresql://db/wfe?schema=tenant_a&max_pool_size=20&migrate=false&sslmode=require",
        PostgresOptions(max_pool_size=5, min_pool_size=2),
    )
    assert target.options.schema == "tenant_a"
    assert target.options.max_pool_size == 20
    assert target.options.min_pool_size == 2
    assert target.options.migrate is False
    assert target.conninfo == "postgresql://db/wfe?sslmode=require"


def test_the_password_is_hidden_in_messages() -> None:
    assert redact("postgresql://app:secret@db/wfe") == "postgresql://app:***@db/wfe"
    with pytest.raises(ConfigurationError) as caught:
        parse_url("postgresql://app:secret@db/wfe?max_pool_size=many")
    assert "secret" not in str(caught.value)
    assert "max_pool_size='many' is not a valid int" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "postgres needs a url"),
        ("mysql://db/wfe", "the scheme must be 'postgresql' or 'postgres'"),
        ("postgresql://db:notaport/wfe", "Port could not be cast"),
        ("postgresql://db/wfe/extra", "the path must be one database name"),
        ("postgresql://db/wfe#x", "a fragment"),
        ("postgresql://db/wfe?schema=Bad-Name", "schema must be a lower-case SQL identifier"),
        ("postgresql://db/wfe?min_pool_size=0", "min_pool_size must be an integer of at least 1"),
        ("postgresql://db/wfe?connect_timeout=inf", "connect_timeout must be a finite number"),
        ("postgresql://db/wfe?migrate=perhaps", "migrate='perhaps' is not a valid bool"),
        (
            "postgresql://u:p@db/wfe?password_file=/run/secrets/pw",
            "has a password and password_file",
        ),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str | None, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        parse_url(url)


def test_bad_options_are_refused_naming_the_field() -> None:
    with pytest.raises(ConfigurationError, match="max_pool_size must not be smaller"):
        PostgresOptions(min_pool_size=5, max_pool_size=2)
    with pytest.raises(ConfigurationError, match="statement_timeout"):
        PostgresOptions(statement_timeout=-1)
    with pytest.raises(ConfigurationError, match="must be a PostgresOptions"):
        parse_url("postgresql://db/wfe", {"schema": "x"})  # type: ignore[arg-type]


def test_the_password_file_is_read_stripped(tmp_path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    target = parse_url("postgresql://app@db/wfe", PostgresOptions(password_file=str(secret)))
    assert target.password() == "s3cret"
    missing = parse_url("postgresql://app@db/wfe", PostgresOptions(password_file=str(tmp_path)))
    with pytest.raises(ConfigurationError, match="password_file: cannot read"):
        missing.password()

"""Settings and options from untrusted input are bounded: settings files are regular files of
at most 10 MiB, durations are finite and capped, page sizes fit the store, and a provider
with a URL it does not take is a conflict. Each mistake is one line naming where it is."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner, Result

from wfe_host.cli import main

if TYPE_CHECKING:
    from pathlib import Path

#: Enough for the CLI; reading /dev/zero into memory hits it within a second.
_MEMORY_LIMIT = 1024 * 1024 * 1024
#: Memory persistence keeps these tests independent of the installed store providers.
_MEMORY = {"WFE_PERSISTENCE": "memory"}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WFE_"):
            monkeypatch.delenv(name)
    return tmp_path


def wfe(args: list[str], env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, args, env=env)
    assert "Traceback" not in result.output
    return result


def wfe_process(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process with a memory cap and a time limit, for input that made the
    old code hang or read until memory ran out (which must fail the test, not the machine)."""

    def limit() -> None:  # pragma: no cover - runs in the child
        resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))

    base = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    return subprocess.run(
        [sys.executable, "-m", "wfe_host", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=False,
    )


# -- 12: settings files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a character device"), ("pipe", "a FIFO")]
)
def test_a_settings_file_that_is_not_a_regular_file_is_refused(
    in_tmp: Path, path: str, kind: str
) -> None:
    os.mkfifo(in_tmp / "pipe")  # nobody writes to it: opening it used to block
    done = wfe_process(["workflows", "list"], {"WFE_CONFIG": path, **_MEMORY}, in_tmp)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"Error: cannot read settings file {path}: not a regular file ({kind})\n"


def test_a_secret_file_that_is_not_a_regular_file_is_refused(in_tmp: Path) -> None:
    env = {"WFE_HOST_WORKER_ID_FILE": "/dev/zero", **_MEMORY}
    done = wfe_process(["workflows", "list"], env, in_tmp)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "Error: environment WFE_HOST_WORKER_ID_FILE: cannot read /dev/zero: "
        "not a regular file (a character device)\n"
    )


def test_a_settings_file_over_10_mib_is_refused(in_tmp: Path) -> None:
    with (in_tmp / "wfe.toml").open("wb") as handle:
        handle.truncate(10 * 1024 * 1024 + 1)  # sparse: costs no disk
    result = wfe(["workflows", "list"], _MEMORY)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: cannot read settings file wfe.toml: larger than the 10 MiB limit\n"
    )


def test_a_non_utf8_settings_file_names_the_line_and_column(in_tmp: Path) -> None:
    (in_tmp / "wfe.toml").write_bytes(b'[host]\nworker_id = "caf\xe9"\n')
    result = wfe(["workflows", "list"], _MEMORY)
    assert result.exit_code == 1
    assert result.stderr == ("Error: wfe.toml:2:17: invalid TOML: not valid UTF-8 (byte 0xe9)\n")


def test_a_5000_deep_settings_file_is_one_error(in_tmp: Path) -> None:
    (in_tmp / "wfe.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    result = wfe(["workflows", "list"], _MEMORY)
    assert result.exit_code == 1
    assert result.stderr == "Error: wfe.toml: invalid TOML: nested too deeply\n"


# -- 13: duration settings -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e12", "nan", "-1", "0", "86401"])
def test_lease_seconds_must_be_finite_and_at_most_a_day(value: str) -> None:
    result = wfe(["workflows", "list"], {"WFE_HOST_LEASE_SECONDS": value, **_MEMORY})
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: environment WFE_HOST_LEASE_SECONDS: host.lease_seconds: must be a finite "
        f"number of seconds > 0 and at most 86400, got {float(value)!r}\n"
    )


def test_lease_seconds_in_a_settings_file_names_the_file(in_tmp: Path) -> None:
    (in_tmp / "wfe.toml").write_text("[host]\nlease_seconds = inf\n")
    result = wfe(["workflows", "list"], _MEMORY)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: wfe.toml: host.lease_seconds: must be a finite number of seconds > 0 "
        "and at most 86400, got inf\n"
    )


def test_a_day_of_lease_is_fine() -> None:
    result = wfe(["workflows", "list"], {"WFE_HOST_LEASE_SECONDS": "86400", **_MEMORY})
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr.endswith("no workflows\n")


# -- 14: numbers of options, output files, provider and URL ----------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--take", "99999999999999999999", "99999999999999999999 is not in the range 1<=x<=10000"),
        ("--take", "10001", "10001 is not in the range 1<=x<=10000"),
        (
            "--skip",
            "99999999999999999999",
            "99999999999999999999 is not in the range 0<=x<=1000000000",
        ),
    ],
)
def test_page_options_are_bounded(option: str, value: str, message: str) -> None:
    result = wfe(["workflows", "list", option, value], _MEMORY)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '{option}': {message}."


def test_the_largest_page_options_work() -> None:
    result = wfe(["workflows", "list", "--take", "10000", "--skip", "1000000000"], _MEMORY)
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr.endswith("no workflows\n")


def test_memory_provider_with_a_sqlite_url_is_a_conflict(in_tmp: Path) -> None:
    (in_tmp / "wfe.toml").write_text(
        '[persistence]\nprovider = "memory"\nurl = "sqlite:///kept.db"\n'
    )
    result = wfe(["workflows", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: wfe.toml: persistence.url: conflicts with persistence.provider 'memory': "
        "memory takes memory:// URLs, not 'sqlite:///kept.db'"
    )
    assert result.stderr.endswith("; set one of them only\n")
    assert len(result.stderr.splitlines()) == 1


def test_a_provider_with_a_url_of_its_own_scheme_is_fine() -> None:
    env = {"WFE_PERSISTENCE_PROVIDER": "memory", "WFE_PERSISTENCE_URL": "memory://"}
    result = wfe(["workflows", "list"], env)
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr.endswith("no workflows\n")


def test_environment_provider_and_url_that_conflict_name_the_variable() -> None:
    # wfe-sqlite is installed wherever wfe-host is tested (its sessions include it).
    env = {"WFE_PERSISTENCE_PROVIDER": "memory", "WFE_PERSISTENCE_URL": "sqlite:///db/x"}
    result = wfe(["workflows", "list"], env)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: environment WFE_PERSISTENCE_URL: persistence.url: conflicts with "
        "persistence.provider 'memory': memory takes memory:// URLs, not "
        "'sqlite:///db/x'; sqlite:// URLs select 'sqlite'; set one of them only\n"
    )

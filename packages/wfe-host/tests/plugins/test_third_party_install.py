"""Third-party plugins are found with no host change: proved with real installed distributions.

A throwaway virtualenv gets wfe-core and wfe-host installed from this tree (as wheels, like a
user's ``pip install``), then the example plugin distribution; ``wfe`` in that environment is
asked what it sees before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[4]
# uv is in the test dependency group (installed in every test session), run as a module so no
# PATH decides which one; without it the test fails, it never skips.
UV = [sys.executable, "-m", "uv"]


def _clean_env(**extra: str) -> dict[str, str]:
    # Nothing of the outer environment may decide what the venv's wfe loads.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WFE_") and k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    }
    return {**env, **extra}


def _uv(*args: str) -> None:
    completed = subprocess.run(
        [*UV, *args], capture_output=True, text=True, env=_clean_env(), timeout=600, check=False
    )
    assert completed.returncode == 0, f"uv {' '.join(args)} failed:\n{completed.stderr}"


@attrs.frozen
class Venv:
    path: Path
    #: ``wfe providers --json`` before the example plugin was installed.
    providers_before: list[dict[str, Any]]

    def wfe(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path / "bin" / "wfe"), *args],
            capture_output=True,
            text=True,
            env=_clean_env(**env),
            timeout=120,
            check=False,
            cwd=self.path,  # no wfe.toml or pyproject.toml of this repository around
        )

    def providers(self, **env: str) -> list[dict[str, Any]]:
        completed = self.wfe("providers", "--json", **env)
        assert completed.returncode == 0, completed.stderr
        records: list[dict[str, Any]] = json.loads(completed.stdout)
        return records


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    path = tmp_path_factory.mktemp("third-party") / "venv"
    _uv("venv", "--quiet", "--python", sys.executable, str(path))
    python = str(path / "bin" / "python")
    _uv(
        "pip", "install", "--quiet", "--python", python,
        str(ROOT / "packages" / "wfe-core"), str(ROOT / "packages" / "wfe-host"),
        # A distribution whose provider is not built yet: it registers no plugin.
        str(ROOT / "packages" / "wfe-postgres"),
    )  # fmt: skip
    before = Venv(path, []).providers()
    _uv(
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        str(ROOT / "examples" / "wfe-example-plugin"),
    )
    return Venv(path, before)


def kinds_and_names(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["kind"], r["name"]) for r in records}


def test_without_plugins_only_the_builtin_memory_providers_exist(venv: Venv) -> None:
    assert kinds_and_names(venv.providers_before) == {
        (kind, "memory") for kind in ("persistence", "lock", "queue", "search", "lifecycle")
    }
    assert {r["distribution"] for r in venv.providers_before} == {"wfe-core"}


def test_an_installed_plugin_distribution_is_found_with_no_host_change(venv: Venv) -> None:
    records = venv.providers()
    assert kinds_and_names(records) - kinds_and_names(venv.providers_before) == {
        ("lifecycle", "jsonl")
    }
    (jsonl,) = [r for r in records if r["name"] == "jsonl"]
    assert jsonl["distribution"] == "wfe-example-plugin"
    assert jsonl["version"] == "0.1.0"
    assert jsonl["plugin"] == "example"
    assert jsonl["url_schemes"] == ["jsonl"]


def test_wfe_plugins_shows_the_plugin_and_its_distribution(venv: Venv) -> None:
    completed = venv.wfe("plugins", "--json")
    assert completed.returncode == 0, completed.stderr
    plugins = {p["name"]: p for p in json.loads(completed.stdout)}
    assert set(plugins) == {"example", "memory"}
    assert plugins["example"]["distribution"] == "wfe-example-plugin"
    assert plugins["example"]["hooks"] == ["register_providers"]


def test_disabling_autoload_hides_it_and_the_allow_list_brings_it_back(venv: Venv) -> None:
    hidden = venv.providers(WFE_DISABLE_PLUGIN_AUTOLOAD="1")
    assert "jsonl" not in {r["name"] for r in hidden}
    back = venv.providers(WFE_DISABLE_PLUGIN_AUTOLOAD="1", WFE_PLUGINS="example")
    assert ("lifecycle", "jsonl") in kinds_and_names(back)
    blocked = venv.providers(WFE_BLOCK_PLUGINS="example")
    assert "jsonl" not in {r["name"] for r in blocked}


def test_the_installed_plugin_builds_its_provider_from_settings(venv: Venv) -> None:
    script = (
        "from wfe_host.registry import default_registry\n"
        "from wfe_host.settings import ProviderSettings\n"
        "p = default_registry().create('lifecycle', ProviderSettings(url='jsonl:///tmp/e.jsonl'))\n"
        "print(type(p).__module__, p.path)\n"
    )
    completed = subprocess.run(
        [str(venv.path / "bin" / "python"), "-c", script],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "wfe_example_plugin.jsonl /tmp/e.jsonl\n"


def test_an_unknown_provider_in_the_installed_cli_is_one_line(venv: Venv) -> None:
    completed = venv.wfe("providers", WFE_PLUGINS="sqlite")
    assert completed.returncode == 1
    assert completed.stderr.startswith(
        "Error: WFE_PLUGINS names 'sqlite', but no installed distribution has a 'wfe' entry point"
    )
    assert "Traceback" not in completed.stderr


def test_an_installed_distribution_without_its_provider_is_not_told_to_install_it(
    venv: Venv,
) -> None:
    completed = venv.wfe("--persistence", "postgresql://db/wfe", "workflows", "list")
    assert completed.returncode == 1
    assert "wfe-postgres 0.1.0 is installed but registers no postgres persistence provider" in (
        completed.stderr
    )
    assert "pip install" not in completed.stderr
    assert "Traceback" not in completed.stderr


# A third-party distribution whose lock provider forgot ``renew``: installed for real (built
# and installed as a wheel), into a directory of its own put on the venv's path only by the
# test below, so the other tests of this module never see it.
_HALFLOCK_FILES = {
    "pyproject.toml": """\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "wfe-halflock"
version = "0.2.0"
requires-python = ">=3.11"
dependencies = ["wfe-core"]

[project.entry-points.wfe]
halflock = "wfe_halflock.plugin"

[tool.hatch.build.targets.wheel]
packages = ["src/wfe_halflock"]
""",
    "src/wfe_halflock/__init__.py": "",
    "src/wfe_halflock/plugin.py": """\
from wfe_core import hookimpl
from wfe_core.plugins import ProviderKind, ProviderSpec


def _lock(url, options):
    from wfe_halflock.lock import HalfLock

    return HalfLock()


@hookimpl
def register_providers():
    return [
        ProviderSpec(
            ProviderKind.LOCK, "halflock", _lock, url_schemes=("halflock",),
            capabilities=frozenset({"lease-renewal"}),
        )
    ]
""",
    "src/wfe_halflock/lock.py": """\
from wfe_core.providers import LockProvider


class HalfLock(LockProvider):
    capabilities = frozenset({"lease-renewal"})

    async def acquire(self, key, *, owner, ttl, wait=0.0):
        return None

    async def release(self, lease):
        return None
""",
}


@pytest.fixture(scope="module")
def halflock_path(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("wfe-halflock")
    for name, text in _HALFLOCK_FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    target = tmp_path_factory.mktemp("halflock-site")
    _uv(
        "pip", "install", "--quiet", "--no-deps", "--python", str(venv.path / "bin" / "python"),
        "--target", str(target), str(source),
    )  # fmt: skip
    return target


def test_an_installed_provider_missing_renew_fails_when_the_host_is_created(
    venv: Venv, halflock_path: Path
) -> None:
    script = (
        "from wfe_host import WorkflowHost\n"
        "from wfe_core.errors import AbstractProviderError\n"
        "try:\n"
        "    WorkflowHost.from_settings({'lock': 'halflock://x'})\n"
        "except AbstractProviderError as exc:\n"
        "    print(exc)\n"
    )
    completed = subprocess.run(
        [str(venv.path / "bin" / "python"), "-c", script],
        capture_output=True,
        text=True,
        env=_clean_env(PYTHONPATH=str(halflock_path)),
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == (
        "lock provider 'halflock' (plugin 'halflock', wfe-halflock 0.2.0): "
        "wfe_halflock.lock.HalfLock cannot be created: it does not implement "
        "LockProvider.renew\n"
    )

"""docs/plugins.md documents every hook (Datasette does the same for its hooks)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from wfe_core.plugins import PROJECT_NAME
from wfe_core.plugins import hookspecs as core_hookspecs
from wfe_host import hookspecs as host_hookspecs
from wfe_host.plugins import ENV_BLOCK_PLUGINS, ENV_DISABLE_AUTOLOAD, ENV_PLUGINS, ENV_TRACE_PLUGINS

DOC = Path(__file__).resolve().parents[4] / "docs" / "plugins.md"


def hook_names() -> list[str]:
    marker = f"{PROJECT_NAME}_spec"
    return sorted(
        name
        for module in (core_hookspecs, host_hookspecs)
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if hasattr(function, marker)
    )


def test_the_hooks_are_found() -> None:
    assert hook_names() == [
        "register_cli_commands",
        "register_definition_formats",
        "register_providers",
        "register_step_executors",
    ]


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_section_in_the_docs(hook: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert re.search(rf"^### `{hook}`$", text, re.MULTILINE), (
        f"docs/plugins.md has no '### `{hook}`' section; document the hook there"
    )


@pytest.mark.parametrize(
    "variable", [ENV_DISABLE_AUTOLOAD, ENV_PLUGINS, ENV_BLOCK_PLUGINS, ENV_TRACE_PLUGINS]
)
def test_every_plugin_switch_is_documented(variable: str) -> None:
    assert f"`{variable}" in DOC.read_text(encoding="utf-8")

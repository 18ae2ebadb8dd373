"""docs/cli.md documents every built-in command and global option."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfe_host.cli import main

DOC = Path(__file__).resolve().parents[4] / "docs" / "cli.md"


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_builtin_command_has_a_section(command: str) -> None:
    assert f"## `wfe {command}`" in DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "option", [opt for param in main.params for opt in param.opts if opt.startswith("--")]
)
def test_every_global_option_is_documented(option: str) -> None:
    assert f"`{option}" in DOC.read_text(encoding="utf-8")

"""The loader finds step types through the same plugin manager and switches as the host."""

from __future__ import annotations

import pytest

from wfe_yaml import YamlWorkflowError, load_workflows_from_str
from wfe_yaml.discovery import installed_step_executors

PIPELINE = """
workflow:
  id: p
  steps:
    - name: Hello
      config: {run: echo hi}
"""


def test_own_step_types_are_there_without_autoloading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert {"shell", "deno", "workflow"} <= set(installed_step_executors())
    (definition,) = load_workflows_from_str(PIPELINE)
    assert definition.id == "p"


def test_blocking_the_yaml_plugin_removes_its_step_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_BLOCK_PLUGINS", "yaml")
    assert "shell" not in installed_step_executors()
    with pytest.raises(YamlWorkflowError, match="shell"):
        load_workflows_from_str(PIPELINE)

"""The ``wfe`` plugin of wfe-yaml: the YAML definition format and the ``shell``, ``deno``,
``workflow``, ``wait``, ``approval`` and ``activity`` step types. Only hook implementations
live here; the executors and the loader are imported when first used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfe_core.plugins import DefinitionFormatSpec, StepExecutorSpec, hookimpl

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from wfe_core.providers import StepExecutor


def _load(path: Path, config: Mapping[str, str] | None) -> list[Any]:
    from wfe_yaml.loader import load_workflow

    return load_workflow(path, config)


def _shell() -> StepExecutor:
    from wfe_yaml.executors.shell import ShellExecutor

    return ShellExecutor()


def _deno() -> StepExecutor:
    from wfe_yaml.executors.deno import DenoExecutor

    return DenoExecutor()


def _workflow() -> StepExecutor:
    from wfe_yaml.executors.workflow import WorkflowExecutor

    return WorkflowExecutor()


def _wait() -> StepExecutor:
    from wfe_yaml.executors.wait import WaitExecutor

    return WaitExecutor()


def _approval() -> StepExecutor:
    from wfe_yaml.executors.approval import ApprovalExecutor

    return ApprovalExecutor()


def _activity() -> StepExecutor:
    from wfe_yaml.executors.activity import ActivityExecutor

    return ActivityExecutor()


@hookimpl
def register_definition_formats() -> list[DefinitionFormatSpec]:
    """YAML workflow files (``.yaml``, ``.yml``)."""
    return [
        DefinitionFormatSpec(
            name="yaml",
            suffixes=(".yaml", ".yml"),
            load=_load,
            summary="YAML workflows with shell, Deno and sub-workflow steps (wfe-yaml)",
        )
    ]


@hookimpl
def register_step_executors() -> list[StepExecutorSpec]:
    """The ``shell``, ``deno``, ``workflow``, ``wait``, ``approval`` and ``activity`` step
    types."""
    return [
        StepExecutorSpec("shell", _shell, "runs a shell script (bash, else sh)"),
        StepExecutorSpec("deno", _deno, "runs JavaScript/TypeScript in a Deno sandbox"),
        StepExecutorSpec("workflow", _workflow, "runs another workflow as a child"),
        StepExecutorSpec("wait", _wait, "waits for an event, with an optional timeout"),
        StepExecutorSpec("approval", _approval, "asks a person to choose an answer"),
        StepExecutorSpec("activity", _activity, "has an external worker do the work"),
    ]

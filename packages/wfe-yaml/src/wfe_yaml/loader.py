"""Loading YAML workflow files into :class:`~wfe_core.models.WorkflowDefinition` objects.

Loading reads every file (with its ``include:`` files), checks everything it can before
anything runs and reports every problem at once, each with ``file:line:column``
(:class:`~wfe_yaml.errors.YamlWorkflowError`), then compiles each workflow to engine steps.

The stages live in their own modules: :mod:`wfe_yaml._documents` (files and includes),
:mod:`wfe_yaml._workflow_reader`, :mod:`wfe_yaml._step_reader` and
:mod:`wfe_yaml._condition_reader` (into the parsed model of :mod:`wfe_yaml._spec`),
:mod:`wfe_yaml._checks` (across workflows) and :mod:`wfe_yaml._compiler`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfe_yaml._checks import WorkflowSetChecker
from wfe_yaml._compiler import Compiler
from wfe_yaml._condition_reader import ConditionReader
from wfe_yaml._context import ReadContext
from wfe_yaml._documents import DocumentReader
from wfe_yaml._fields import FieldReader
from wfe_yaml._spec import StepSpec, WorkflowSpec
from wfe_yaml._step_reader import DEFAULT_TYPE, StepReader
from wfe_yaml._step_types import StepTypes
from wfe_yaml._workflow_reader import WorkflowReader
from wfe_yaml.errors import Problem, YamlWorkflowError
from wfe_yaml.sources import SourceError, read_source

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from wfe_core.models import WorkflowDefinition
    from wfe_core.plugins import StepExecutorSpec
    from wfe_core.providers import StepExecutor

__all__ = [
    "DEFAULT_TYPE",
    "Loader",
    "StepSpec",
    "WorkflowSpec",
    "load_workflow",
    "load_workflows_from_str",
    "validate_workflow",
]


# -- public API ----------------------------------------------------------------------------


def load_workflow(
    path: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
    *,
    executors: Mapping[str, StepExecutorSpec | StepExecutor] | None = None,
) -> list[WorkflowDefinition]:
    """Every workflow definition in the YAML file ``path`` (and the files it includes),
    ready to register with a host.

    ``config`` holds the load-time values (``--set key=value``) that ``${{ config.x }}`` and
    ``((x))`` refer to. ``executors`` are the step types by name (default: the installed
    ones). Raises :class:`~wfe_yaml.errors.YamlWorkflowError` listing every problem.
    """
    file = Path(path)
    try:
        text = read_source(file)
    except SourceError as exc:
        raise YamlWorkflowError([exc.problem]) from None
    return load_workflows_from_str(
        text, config, file_name=str(file), base_dir=file.parent, executors=executors
    )


def load_workflows_from_str(
    text: str,
    config: Mapping[str, Any] | None = None,
    *,
    file_name: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    executors: Mapping[str, StepExecutorSpec | StepExecutor] | None = None,
) -> list[WorkflowDefinition]:
    """Like :func:`load_workflow` for YAML ``text``; ``include:`` paths are relative to
    ``base_dir`` (default: the current directory)."""
    loader = Loader(config or {}, executors)
    return loader.load(text, file_name, Path(base_dir) if base_dir is not None else Path.cwd())


def validate_workflow(
    path: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Every problem of the YAML workflow file ``path`` (empty when it loads)."""
    try:
        load_workflow(path, config)
    except YamlWorkflowError as exc:
        return exc.problems
    return []


class Loader:
    """Reads, checks and compiles YAML workflow sources, collecting every problem (one
    instance per load)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        executors: Mapping[str, StepExecutorSpec | StepExecutor] | None = None,
    ) -> None:
        self._ctx = ReadContext(config)
        fields = FieldReader(self._ctx)
        conditions = ConditionReader(self._ctx, fields)
        steps = StepReader(self._ctx, fields, conditions, StepTypes(executors))
        workflows = WorkflowReader(self._ctx, fields, steps)
        self._documents = DocumentReader(self._ctx, fields, workflows)

    @property
    def values(self) -> dict[str, Any]:
        """The load-time values (``--set key=value``)."""
        return self._ctx.values

    @property
    def problems(self) -> list[Problem]:
        """The problems found so far."""
        return self._ctx.problems

    def load(self, text: str, file_name: str, base_dir: Path) -> list[WorkflowDefinition]:
        """Parse, check and compile ``text`` and everything it includes."""
        specs = self._documents.read(text, file_name, base_dir)
        WorkflowSetChecker(self._ctx).check(specs)
        definitions: list[WorkflowDefinition] = []
        if not self.problems:
            for spec in specs:
                definitions.append(Compiler(spec, self.values).compile())
        if self.problems:
            raise YamlWorkflowError(self.problems)
        return definitions

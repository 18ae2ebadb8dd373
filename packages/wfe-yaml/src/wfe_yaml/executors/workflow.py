"""The ``workflow`` step type: runs another workflow as a child and waits for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from wfe_core import ExecutionResult
from wfe_core.primitives import SubWorkflow
from wfe_core.providers import StepExecutor
from wfe_yaml.errors import StepFailedError
from wfe_yaml.executors.common import config_schema

if TYPE_CHECKING:
    from wfe_core import StepContext


class WorkflowExecutor(StepExecutor):
    """Starts workflow ``config.workflow`` (``version``; the latest when unset) with
    ``inputs`` as its data and completes when the child does, merging the child's outputs
    into this workflow's data. A failed or terminated child fails this step.

    The outputs copied are ``config.outputs`` (a list of names), else the child's declared
    outputs when it is known at load time, else every key the child added to its data.
    """

    static_keys = ("workflow", "version", "outputs")
    config_keys: ClassVar[dict[str, str]] = {
        "workflow": "The id of the workflow to run (registered, or in the same files).",
        "version": "Its version (default: the latest registered).",
        "inputs": "The child's inputs (values may use ${{ ... }}).",
        "outputs": "Names of the child's outputs to copy into this workflow's data.",
    }

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this type's ``config:``."""
        props: dict[str, Any] = {
            "workflow": {"type": "string", "minLength": 1},
            "version": {"type": "integer", "minimum": 1},
            "inputs": {"type": "object"},
            "outputs": {"type": "array", "items": {"type": "string"}},
        }
        return config_schema(props, cls.config_keys, required=["workflow"])

    def validate_config(self, config: Mapping[str, Any]) -> list[str]:
        """Problems of a workflow step's ``config``."""
        problems: list[str] = []
        workflow = config.get("workflow")
        if not isinstance(workflow, str) or not workflow.strip():
            problems.append("missing `workflow`: the id of the workflow to run")
        version = config.get("version")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            problems.append("version: must be an integer >= 1")
        inputs = config.get("inputs")
        if inputs is not None and not isinstance(inputs, Mapping):
            problems.append("inputs: must map input names to values")
        outputs = config.get("outputs")
        if outputs is not None and (
            not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs)
        ):
            problems.append("outputs: must be a list of output names")
        return problems

    async def execute(self, config: Mapping[str, Any], ctx: StepContext) -> ExecutionResult:
        """Start the child (once, even when run again after a crash) and wait for it."""
        body = SubWorkflow()
        body.definition_id = str(config["workflow"])
        body.version = config.get("version")
        inputs = dict(config.get("inputs") or {})
        body.child_data = inputs
        result = await body.run(ctx)
        if not result.proceed:
            return result
        child = body.result if isinstance(body.result, Mapping) else {}
        wanted = config.get("outputs")
        if wanted is None:
            output = {k: v for k, v in child.items() if k not in inputs}
        else:
            missing = [name for name in wanted if name not in child]
            if missing:
                raise StepFailedError(
                    f"workflow {body.definition_id!r} finished without output(s) "
                    + ", ".join(repr(m) for m in missing)
                )
            output = {name: child[name] for name in wanted}
        return ExecutionResult.next(output=output or None)

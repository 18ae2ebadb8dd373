"""The ``activity`` step type: work done by an external worker (``wfe_core``'s ``Activity``),
taken with ``get_pending_activity`` or ``wfe activities take`` and completed with its result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from wfe_core import ExecutionResult
from wfe_core.primitives import Activity
from wfe_core.providers import StepExecutor
from wfe_yaml.durations import parse_duration
from wfe_yaml.executors.common import check_duration, check_output_name, config_schema, value_output
from wfe_yaml.steps import record_result

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_core import StepContext


class ActivityExecutor(StepExecutor):
    """Offers the activity ``config.activity`` with ``parameters`` to external workers and
    completes with the result one submits: under the name ``config.output`` when given, else
    a mapping's keys are the outputs. A failure the worker submits, or no result within
    ``timeout``, fails the step (its ``error_behavior`` applies; a retry offers it afresh).
    """

    static_keys = ("activity", "timeout", "output")
    #: The config key naming where the step's result goes in the workflow data (the loader
    #: refuses one named like a declared input).
    output_key = "output"
    config_keys: ClassVar[dict[str, str]] = {
        "activity": "The activity's name: what workers ask for (`wfe activities take NAME`).",
        "parameters": "What the worker gets (any value; may use ${{ ... }}).",
        "timeout": "Fail the step when no worker submitted a result within this duration.",
        "output": "The name the result is stored under (default: a mapping's keys).",
    }

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this type's ``config:``."""
        props: dict[str, Any] = {
            "activity": {"type": "string", "minLength": 1},
            "parameters": {},
            "timeout": {"$ref": "#/$defs/duration"},
            "output": {"type": "string", "minLength": 1},
        }
        return config_schema(props, cls.config_keys, required=["activity"])

    def validate_config(self, config: Mapping[str, Any]) -> list[str]:
        """Problems of an activity step's ``config``."""
        problems: list[str] = []
        name = config.get("activity")
        if not isinstance(name, str) or not name.strip():
            problems.append("missing `activity`: the name workers take the activity by")
        check_duration(config, "timeout", problems)
        check_output_name(config, problems)
        return problems

    async def execute(self, config: Mapping[str, Any], ctx: StepContext) -> ExecutionResult:
        """Wait for a worker's result (the step runs again when it is submitted)."""
        body = Activity()
        body.activity_name = str(config["activity"])
        body.parameters = config.get("parameters")
        if config.get("timeout") is not None:
            body.timeout = parse_duration(config["timeout"])
        result = await body.run(ctx)
        if not result.proceed:
            return result  # offered to the workers
        record_result(ctx, {"activity": body.activity_name})
        return ExecutionResult.next(output=value_output(config.get("output"), body.result))

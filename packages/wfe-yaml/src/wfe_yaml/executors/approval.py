"""The ``approval`` step type: a question to a person (``wfe_core``'s ``UserTask``) with a
fixed set of answers, an assignee and escalations, answered with ``publish_user_action`` or
``wfe tasks answer``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from wfe_core import ExecutionResult
from wfe_core.primitives import UserTask
from wfe_core.providers import StepExecutor
from wfe_yaml.durations import parse_duration
from wfe_yaml.executors.common import check_output_name, config_schema
from wfe_yaml.steps import record_result

if TYPE_CHECKING:
    from wfe_core import StepContext

_SCALAR = str | int | float
_OPTION_KEYS = ("value", "label")
_ESCALATION_KEYS = ("after", "assignee")

#: The config key the loader sets to the selections that have ``steps:`` (a ``_`` key: one
#: written in YAML never reaches the config).
BRANCHES_KEY = "_branches"


class ApprovalExecutor(StepExecutor):
    """Asks ``config.prompt`` of ``config.assignee`` and waits for one of ``options``.

    The chosen value is the step's outcome and, with ``config.output``, stored under that
    name for later steps (``when: {field: outputs.decision, equals: approve}``). Each
    ``escalation`` entry reassigns the task to its ``assignee`` when it is still open
    ``after`` that long (after the previous escalation, for the ones after the first).

    An option's ``steps:`` run when it is chosen, before the workflow goes on after the
    step; an escalation's ``steps:`` run when it fires, and the task then waits again (the
    builder's ``with_option(value, label, body)`` and ``with_escalation(..., action=)``).
    """

    static_keys = ("options", "escalation", "output")
    #: Config lists whose entries may hold ``steps:``: the loader reads them as the step's
    #: branches (see :meth:`branch_selection`), not as config values.
    branch_lists = ("options", "escalation")
    #: The config key the compiler gives the selections that have steps.
    branches_key = BRANCHES_KEY
    #: The config key naming where the step's result goes in the workflow data (the loader
    #: refuses one named like a declared input).
    output_key = "output"
    config_keys: ClassVar[dict[str, str]] = {
        "prompt": "The question shown to the person (may use ${{ ... }}).",
        "assignee": "Who is asked (a user or group name; may use ${{ ... }}).",
        "options": "The answers: values, or {value, label, steps} mappings (steps run when "
        "that answer is chosen).",
        "escalation": "A list of {after: duration, assignee: name, steps: [...]}: reassign "
        "the task (and run the steps) when it is still open that long.",
        "output": "The name the chosen value is stored under.",
    }

    @staticmethod
    def branch_selection(list_key: str, index: int, config: Mapping[str, Any]) -> tuple[Any, str]:
        """What the engine's ``UserTask`` selects for the ``steps:`` of entry ``index`` of
        ``config[list_key]`` (an option by its value, an escalation by its position), and a
        label for the branch."""
        if list_key == "options":
            entry = config["options"][index]
            value = entry.get("value") if isinstance(entry, Mapping) else entry
            return {"kind": "option", "value": value}, f"option {value}"
        return {"kind": "escalation", "index": index}, f"escalation {index + 1}"

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this type's ``config:``."""
        scalar = {"type": ["string", "number", "boolean"]}
        steps = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}}
        props: dict[str, Any] = {
            "prompt": {"type": "string", "minLength": 1},
            "assignee": {"type": ["string", "number"]},
            "options": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "anyOf": [
                        scalar,
                        {
                            "type": "object",
                            "required": ["value"],
                            "properties": {
                                "value": scalar,
                                "label": {"type": "string"},
                                "steps": steps,
                            },
                            "additionalProperties": False,
                        },
                    ]
                },
            },
            "escalation": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["after"],
                    "properties": {
                        "after": {"$ref": "#/$defs/duration"},
                        "assignee": {"type": ["string", "number"]},
                        "steps": steps,
                    },
                    "additionalProperties": False,
                },
            },
            "output": {"type": "string", "minLength": 1},
        }
        return config_schema(props, cls.config_keys, required=["prompt", "options"])

    def validate_config(self, config: Mapping[str, Any]) -> list[str]:
        """Problems of an approval step's ``config``."""
        problems: list[str] = []
        prompt = config.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append("missing `prompt`: the question to ask")
        assignee = config.get("assignee")
        if assignee is not None and (
            isinstance(assignee, bool) or not isinstance(assignee, _SCALAR)
        ):
            problems.append("assignee: must be a name")
        _check_options(config.get("options"), problems)
        _check_escalations(config.get("escalation"), problems)
        check_output_name(config, problems)
        return problems

    async def execute(self, config: Mapping[str, Any], ctx: StepContext) -> ExecutionResult:
        """Wait for the answer (the step runs again when it is given, or to escalate)."""
        body = UserTask()
        body.prompt = str(config["prompt"])
        assignee = config.get("assignee")
        body.assigned_to = None if assignee is None else str(assignee)
        body.options = [_option(item) for item in config["options"]]
        body.escalations = [
            {
                "after": parse_duration(entry["after"]).total_seconds(),
                "assign_to": None if entry.get("assignee") is None else str(entry["assignee"]),
            }
            for entry in config.get("escalation") or ()
        ]
        body.branches = list(config.get(BRANCHES_KEY) or ())
        result = await body.run(ctx)
        if not result.proceed:
            return result  # waiting for the answer (or the next escalation)
        answer = result.outcome_value
        # The answer event's data: {"user": ..., "value": ...} (publish_user_action).
        action = ctx.pointer.event_data if isinstance(ctx.pointer.event_data, Mapping) else {}
        record_result(ctx, {"answer": answer, "answered_by": action.get("user")})
        name = config.get("output")
        return ExecutionResult.outcome(answer, output=None if name is None else {str(name): answer})


def _option(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        value = item["value"]
        label = item.get("label")
        return {"value": value, "label": str(value) if label is None else str(label)}
    return {"value": item, "label": str(item)}


def _check_options(options: Any, problems: list[str]) -> None:
    if not isinstance(options, list) or not options:
        problems.append("options: must be a non-empty list of answers (values or {value, label})")
        return
    seen: list[Any] = []
    for number, item in enumerate(options, 1):
        if isinstance(item, Mapping):
            unknown = [str(k) for k in item if k not in _OPTION_KEYS]
            if unknown:
                problems.append(
                    f"options: answer {number}: unknown key {unknown[0]!r} (value, label)"
                )
            if "label" in item and not isinstance(item["label"], str):
                problems.append(f"options: answer {number}: label must be a string")
            value = item.get("value")
        else:
            value = item
        if value is None or not isinstance(value, _SCALAR | bool):
            problems.append(f"options: answer {number} must be a string, number or boolean")
        elif value in seen:  # equal values (1 and 1.0, too) are one answer to the host
            problems.append(f"options: answer {value!r} is given twice")
        else:
            seen.append(value)


def _check_escalations(escalations: Any, problems: list[str]) -> None:
    if escalations is None:
        return
    if not isinstance(escalations, list):
        problems.append("escalation: must be a list of {after: duration, assignee: name}")
        return
    for number, entry in enumerate(escalations, 1):
        where = f"escalation: entry {number}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where} must be a mapping {{after: duration, assignee: name}}")
            continue
        unknown = [str(k) for k in entry if k not in _ESCALATION_KEYS]
        if unknown:
            problems.append(f"{where}: unknown key {unknown[0]!r} (after, assignee)")
        if "after" not in entry:
            problems.append(f"{where}: missing `after` (a duration)")
        else:
            try:
                parse_duration(entry["after"])
            except ValueError as exc:
                problems.append(f"{where}: after: {exc}")
        assignee = entry.get("assignee")
        if assignee is not None and (
            isinstance(assignee, bool) or not isinstance(assignee, _SCALAR)
        ):
            problems.append(f"{where}: assignee must be a name")

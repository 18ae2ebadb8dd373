"""The keys of the YAML workflow format (with what they mean), and its JSON Schema.

The loader checks keys against these tables (unknown keys get a did-you-mean); the JSON
Schema for editors is built from the same tables, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any

from wfe_yaml.conditions import COMBINATORS, OPERATORS
from wfe_yaml.types import TYPE_NAMES

TOP_KEYS: dict[str, str] = {
    "workflow": "One workflow.",
    "workflows": "Several workflows (a list).",
    "include": "Other YAML files (paths relative to this one) whose workflows are loaded too.",
}
WORKFLOW_KEYS: dict[str, str] = {
    "id": "The workflow's id (what `wfe run --workflow` and `type: workflow` steps name).",
    "version": "The workflow's version (an integer, default 1).",
    "description": "What the workflow does.",
    "inputs": "Declared inputs: name -> type (string, integer, number, boolean, object, list, "
    "any; `?` after the type makes it optional). Checked when the workflow starts.",
    "outputs": "Declared outputs: name -> type. Step outputs of these names are converted to "
    "the type; the workflow fails at the end when a required one is missing.",
    "error_behavior": "What happens when a step fails (default: the workflow fails).",
    "steps": "The steps, run one after the other.",
}
STEP_KEYS: dict[str, str] = {
    "name": "The step's name, unique in the workflow.",
    "description": "What the step does.",
    "type": "The step type (shell, deno, workflow, wait, approval, activity or one a plugin "
    "adds). Default: shell when config has `run` or `file`.",
    "config": "The step type's settings.",
    "parallel": "Steps run concurrently; this step is done when all are.",
    "when": "Run the step only when this condition holds (else it is skipped).",
    "error_behavior": "What happens when this step fails (overrides the workflow's).",
    "on_success": "A step (or list of steps) run after this one succeeds.",
    "on_failure": "A step (or list of steps) run when this one fails; the workflow still fails.",
    "ensure": "A step (or list of steps) run after this one whether it succeeded or failed.",
    "on_timeout": "A step (or list of steps) run when this step's wait times out (type wait "
    "with config.timeout); the workflow goes on after them.",
}
ERROR_BEHAVIOR_KEYS: dict[str, str] = {
    "type": "retry, suspend, terminate, compensate or fail.",
    "interval": "retry: wait before the first retry (a duration, default 60s).",
    "max_retries": "retry: retries after the first failure (default: for ever).",
    "backoff": "retry: each wait is this many times the one before (>= 1).",
    "max_interval": "retry: the longest wait between retries.",
}
CONDITION_KEYS: dict[str, str] = {
    "field": "What to test: inputs.x, outputs.x, data.x or config.x (dots go deeper).",
    "equals": "The field equals this value.",
    "not_equals": "The field does not equal this value.",
    "gt": "The field is a number greater than this.",
    "gte": "The field is a number greater than or equal to this.",
    "lt": "The field is a number less than this.",
    "lte": "The field is a number less than or equal to this.",
    "contains": "The field (a string, list or mapping) contains this value.",
    "is_null": "true: the field is missing or null.",
    "is_not_null": "true: the field is set.",
    "all": "Every condition of the list holds.",
    "any": "At least one condition of the list holds.",
    "none": "No condition of the list holds.",
    "one_of": "Exactly one condition of the list holds.",
    "not": "The condition does not hold.",
}
DECLARATION_KEYS: dict[str, str] = {
    "type": "The value's type.",
    "description": "What the value means.",
}

_DURATION = {
    "type": "string",
    "pattern": r"^(\d+(\.\d+)?h)?(\d+(\.\d+)?m(?!s))?(\d+(\.\d+)?s)?(\d+ms)?$",
    "description": "A duration: 250ms, 5s, 1.5s, 2m, 1h, 1h30m.",
}
_TYPE = {
    "type": "string",
    "pattern": "^(" + "|".join(TYPE_NAMES) + r")\??$",
    "description": "A type; `?` at the end makes the value optional.",
}


def _described(keys: dict[str, str], schemas: dict[str, Any]) -> dict[str, Any]:
    return {key: {**schemas.get(key, {}), "description": text} for key, text in keys.items()}


def _holders() -> dict[str, Any]:
    # Keys starting with "_" hold templates for anchors; they are ignored.
    return {"^_": {}}


def json_schema(step_configs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of YAML workflow files.

    ``step_configs`` maps step type names to the JSON Schema of their ``config:`` (default:
    the built-in shell, deno, workflow, wait, approval and activity types).
    """
    if step_configs is None:
        from wfe_yaml.executors.activity import ActivityExecutor
        from wfe_yaml.executors.approval import ApprovalExecutor
        from wfe_yaml.executors.deno import DenoExecutor
        from wfe_yaml.executors.shell import ShellExecutor
        from wfe_yaml.executors.wait import WaitExecutor
        from wfe_yaml.executors.workflow import WorkflowExecutor

        step_configs = {
            "shell": ShellExecutor.config_schema(),
            "deno": DenoExecutor.config_schema(),
            "workflow": WorkflowExecutor.config_schema(),
            "wait": WaitExecutor.config_schema(),
            "approval": ApprovalExecutor.config_schema(),
            "activity": ActivityExecutor.config_schema(),
        }
    declarations = {
        "type": "object",
        "additionalProperties": {
            "anyOf": [
                _TYPE,
                {
                    "type": "object",
                    "properties": _described(DECLARATION_KEYS, {"type": _TYPE}),
                    "additionalProperties": False,
                },
            ]
        },
    }
    error_behavior = {
        "anyOf": [
            {"enum": ["retry", "suspend", "terminate", "compensate", "fail"]},
            {
                "type": "object",
                "required": ["type"],
                "properties": _described(
                    ERROR_BEHAVIOR_KEYS,
                    {
                        "type": {"enum": ["retry", "suspend", "terminate", "compensate", "fail"]},
                        "interval": _DURATION,
                        "max_interval": _DURATION,
                        "max_retries": {"type": "integer", "minimum": 0},
                        "backoff": {"type": "number", "minimum": 1},
                    },
                ),
                "patternProperties": _holders(),
                "additionalProperties": False,
            },
        ]
    }
    condition_props: dict[str, Any] = {"field": {"type": "string"}}
    for op in OPERATORS:
        condition_props[op] = {"type": "boolean"} if op.startswith("is_") else {}
    for op in ("gt", "gte", "lt", "lte"):
        condition_props[op] = {"type": "number"}
    for combinator in COMBINATORS:
        condition_props[combinator] = (
            {"$ref": "#/$defs/condition"}
            if combinator == "not"
            else {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}}
        )
    step_or_steps = {
        "anyOf": [
            {"$ref": "#/$defs/step"},
            {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
        ]
    }
    type_rules = [
        {
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {"properties": {"config": config}},
        }
        for name, config in step_configs.items()
    ]
    if "shell" in step_configs:
        type_rules.append(
            {
                "if": {"not": {"required": ["type"]}},
                "then": {"properties": {"config": step_configs["shell"]}},
            }
        )
    step = {
        "type": "object",
        "required": ["name"],
        "properties": _described(
            STEP_KEYS,
            {
                "name": {"type": "string", "minLength": 1},
                "description": {"type": "string"},
                "type": {"type": "string", "examples": sorted(step_configs)},
                "config": {"type": "object"},
                "parallel": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
                "when": {"$ref": "#/$defs/condition"},
                "error_behavior": {"$ref": "#/$defs/error_behavior"},
                "on_success": step_or_steps,
                "on_failure": step_or_steps,
                "ensure": step_or_steps,
                "on_timeout": step_or_steps,
            },
        ),
        "patternProperties": _holders(),
        "additionalProperties": False,
        "allOf": type_rules,
    }
    workflow = {
        "type": "object",
        "required": ["id", "steps"],
        "properties": _described(
            WORKFLOW_KEYS,
            {
                "id": {"type": "string", "minLength": 1},
                "version": {"type": "integer", "minimum": 1},
                "description": {"type": "string"},
                "inputs": declarations,
                "outputs": declarations,
                "error_behavior": {"$ref": "#/$defs/error_behavior"},
                "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
            },
        ),
        "patternProperties": _holders(),
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "wfe-yaml.schema.json",
        "title": "WFE YAML workflow",
        "type": "object",
        "properties": _described(
            TOP_KEYS,
            {
                "workflow": {"$ref": "#/$defs/workflow"},
                "workflows": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": "#/$defs/workflow"},
                },
                "include": {
                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
                },
            },
        ),
        "patternProperties": _holders(),
        "additionalProperties": False,
        "$defs": {
            "workflow": workflow,
            "step": step,
            "condition": {
                "type": "object",
                "properties": _described(CONDITION_KEYS, condition_props),
                "patternProperties": _holders(),
                "additionalProperties": False,
            },
            "error_behavior": error_behavior,
            "duration": _DURATION,
        },
    }


def json_schema_text() -> str:
    """:func:`json_schema` as the text of ``docs/wfe-yaml.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"

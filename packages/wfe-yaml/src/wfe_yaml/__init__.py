"""WFE YAML workflows: the loader (with validation that names ``file:line:column``),
interpolation, and the ``shell``, ``deno`` and ``workflow`` step types.

>>> definitions = load_workflow("pipeline.yaml", config={"env": "prod"})  # doctest: +SKIP
"""

from __future__ import annotations

from wfe_yaml.durations import format_duration, parse_duration
from wfe_yaml.errors import Mark, Problem, StepFailedError, YamlWorkflowError
from wfe_yaml.loader import load_workflow, load_workflows_from_str, validate_workflow
from wfe_yaml.schema import json_schema
from wfe_yaml.types import ValueType

__all__ = [
    "Mark",
    "Problem",
    "StepFailedError",
    "ValueType",
    "YamlWorkflowError",
    "format_duration",
    "json_schema",
    "load_workflow",
    "load_workflows_from_str",
    "parse_duration",
    "validate_workflow",
]

"""Loading YAML workflow files into :class:`~wfe_core.models.WorkflowDefinition` objects.

Loading reads every file (with its ``include:`` files), checks everything it can before
anything runs and reports every problem at once, each with ``file:line:column``
(:class:`~wfe_yaml.errors.YamlWorkflowError`), then compiles each workflow to engine steps.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import itertools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from wfe_core.models import (
    ErrorBehavior,
    ErrorBehaviorKind,
    OutcomeRoute,
    StepDefinition,
    WorkflowDefinition,
)
from wfe_core.plugins import StepExecutorSpec
from wfe_core.providers import StepExecutor
from wfe_core.spi import MAX_DEFINITION_VERSION
from wfe_yaml import interpolation as ip
from wfe_yaml import schema
from wfe_yaml.conditions import COMBINATORS, OPERATORS, Combination, Condition, FieldCondition
from wfe_yaml.durations import parse_duration
from wfe_yaml.errors import Mark, Problem, YamlWorkflowError
from wfe_yaml.expansion import BudgetComposer, ExpansionError
from wfe_yaml.shell_scan import ARITHMETIC_HINT, Place, Spot
from wfe_yaml.sources import SourceError, read_source
from wfe_yaml.steps import (
    CheckOutputsFactory,
    ExecutorStepFactory,
    GuardFactory,
    LeafPlan,
    ParallelFactory,
    Phase,
)
from wfe_yaml.types import PrepareInputs, ValueType

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator

logger = logging.getLogger("wfe_yaml")

#: Step type used when a step has no ``type:`` but its config has ``run`` (or ``file``).
DEFAULT_TYPE = "shell"
_MAX_INCLUDE_DEPTH = 32
#: The largest integer a field takes (``max_retries``): what a 64-bit store column holds.
_MAX_INT = 2**63 - 1
#: The largest retry ``backoff`` factor (.inf or 1e308 would overflow the next delay).
_MAX_BACKOFF = 1000


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


# -- parsed model --------------------------------------------------------------------------


@attrs.define
class StepSpec:
    """A YAML step as read from the file."""

    name: str
    mark: Mark
    type_name: str | None = None
    config: dict[str, Any] = attrs.Factory(dict)
    parallel: list[StepSpec] | None = None
    when: Condition | None = None
    error_behavior: ErrorBehavior | None = None
    on_success: list[StepSpec] = attrs.Factory(list)
    on_failure: list[StepSpec] = attrs.Factory(list)
    ensure: list[StepSpec] = attrs.Factory(list)
    executor: StepExecutor | None = None
    description: str | None = None

    def walk(self) -> Iterator[StepSpec]:
        """This step and every step inside it (children and hooks)."""
        yield self
        for child in [*(self.parallel or ()), *self.on_success, *self.on_failure, *self.ensure]:
            yield from child.walk()


@attrs.define
class WorkflowSpec:
    """A YAML workflow as read from the file."""

    id: str
    version: int
    mark: Mark
    file: str
    description: str | None = None
    inputs: dict[str, ValueType] = attrs.Factory(dict)
    outputs: dict[str, ValueType] = attrs.Factory(dict)
    error_behavior: ErrorBehavior | None = None
    steps: list[StepSpec] = attrs.Factory(list)
    from_include: bool = False

    def all_steps(self) -> Iterator[StepSpec]:
        """Every step of the workflow, at any depth."""
        for step in self.steps:
            yield from step.walk()


# -- reading -------------------------------------------------------------------------------


def _did_you_mean(word: str, choices: Iterator[str] | list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Loader:
    """Reads YAML workflow sources, collecting every problem (one instance per load)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        executors: Mapping[str, StepExecutorSpec | StepExecutor] | None = None,
    ) -> None:
        self.values = {str(k): v for k, v in config.items()}
        self._executor_sources = executors
        self._executors: dict[str, StepExecutor] = {}
        self.problems: list[Problem] = []
        self.file = "<string>"
        #: The directory relative paths of the file being read are resolved against.
        self.base_dir = Path.cwd()
        #: The text of the file being read (to point at a reference inside a scalar).
        self.source = ""
        self._seen_files: set[str] = set()

    # -- problems and positions --------------------------------------------------------------
    def problem(self, mark: Mark, message: str) -> None:
        """Record a problem at ``mark``."""
        self.problems.append(Problem(mark, message))

    def node_mark(self, node: Any, fallback: Mark | None = None) -> Mark:
        """Where a mapping or sequence starts."""
        lc = getattr(node, "lc", None)
        if lc is not None and getattr(lc, "line", None) is not None:
            return Mark(self.file, int(lc.line) + 1, int(lc.col) + 1)
        return fallback or Mark(self.file)

    def key_mark(self, node: Any, key: Any) -> Mark:
        """Where ``key`` of mapping ``node`` is written (merged keys: the mapping)."""
        try:
            line, col = node.lc.key(key)
            return Mark(self.file, int(line) + 1, int(col) + 1)
        except (AttributeError, KeyError, TypeError):
            return self.node_mark(node)

    def value_mark(self, node: Any, key: Any) -> Mark:
        """Where the value of ``key`` of mapping ``node`` is written."""
        try:
            line, col = node.lc.value(key)
            return Mark(self.file, int(line) + 1, int(col) + 1)
        except (AttributeError, KeyError, TypeError):
            return self.key_mark(node, key)

    def item_mark(self, node: Any, index: int) -> Mark:
        """Where item ``index`` of sequence ``node`` is written."""
        try:
            line, col = node.lc.item(index)
            return Mark(self.file, int(line) + 1, int(col) + 1)
        except (AttributeError, KeyError, TypeError, IndexError):
            return self.node_mark(node)

    # -- executors -----------------------------------------------------------------------------
    def executor_names(self) -> list[str]:
        """The installed step types."""
        return sorted(self._sources())

    def _sources(self) -> Mapping[str, StepExecutorSpec | StepExecutor]:
        if self._executor_sources is None:
            from wfe_yaml.discovery import installed_step_executors

            self._executor_sources = installed_step_executors()
        return self._executor_sources

    def executor(self, name: str) -> StepExecutor | None:
        """The executor of step type ``name`` (built once per load), ``None`` if unknown."""
        if name in self._executors:
            return self._executors[name]
        source = self._sources().get(name)
        if source is None:
            return None
        executor = source.factory() if isinstance(source, StepExecutorSpec) else source
        self._executors[name] = executor
        return executor

    # -- documents -----------------------------------------------------------------------------
    def load(self, text: str, file_name: str, base_dir: Path) -> list[WorkflowDefinition]:
        """Parse, check and compile ``text`` and everything it includes."""
        if Path(file_name).is_file():
            self._seen_files.add(str(Path(file_name).resolve()))
        specs = self._read_file(text, file_name, base_dir, depth=0, included=False)
        self._check_workflows(specs)
        definitions: list[WorkflowDefinition] = []
        if not self.problems:
            for spec in specs:
                definitions.append(_Compiler(spec, self.values).compile())
        if self.problems:
            raise YamlWorkflowError(self.problems)
        return definitions

    def _parse(self, text: str) -> Any:
        yaml = YAML(typ="rt", pure=True)
        yaml.allow_duplicate_keys = False
        # Counts what aliases expand to while composing, so no later walk of the tree can be
        # made to visit billions of nodes (see wfe_yaml.expansion).
        yaml.Composer = BudgetComposer
        try:
            return yaml.load(io.StringIO(text))
        except ExpansionError as exc:
            self.problem(Mark(self.file, exc.line, exc.column), exc.message)
        except RecursionError:
            self.problem(Mark(self.file, 1, 1), "the YAML is nested too deeply")
        except Exception as exc:
            # ruamel raises MarkedYAMLError subclasses with a problem mark, but also plain
            # errors for odd input; none of them may escape as a traceback.
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            where = (
                Mark(self.file, mark.line + 1, mark.column + 1)
                if mark is not None
                else Mark(self.file, 1, 1)
            )
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0] if str(exc) else ""
            context = getattr(exc, "context", None)
            message = " ".join(str(p) for p in (context, problem) if p) or type(exc).__name__
            self.problem(where, f"invalid YAML: {message}")
        return None

    def _read_file(
        self, text: str, file_name: str, base_dir: Path, *, depth: int, included: bool
    ) -> list[WorkflowSpec]:
        previous, previous_dir, previous_source = self.file, self.base_dir, self.source
        self.file, self.base_dir, self.source = file_name, base_dir, text
        try:
            root = self._parse(text)
            if root is None:
                if not self.problems or all(p.mark.file != file_name for p in self.problems):
                    self.problem(Mark(file_name, 1, 1), "the file is empty; expected `workflow:`")
                return []
            if not isinstance(root, CommentedMap):
                self.problem(
                    self.node_mark(root, Mark(file_name, 1, 1)),
                    "the document must be a mapping with `workflow:` or `workflows:`",
                )
                return []
            self._check_keys(root, schema.TOP_KEYS, "top level")
            specs: list[WorkflowSpec] = []
            if "workflow" in root and "workflows" in root:
                self.problem(
                    self.key_mark(root, "workflows"),
                    "use either `workflow:` or `workflows:`, not both",
                )
            if "workflow" in root:
                node = root["workflow"]
                if isinstance(node, CommentedMap):
                    spec = self._workflow(node)
                    if spec is not None:
                        specs.append(spec)
                else:
                    self.problem(self.value_mark(root, "workflow"), "`workflow:` must be a mapping")
            if "workflows" in root:
                node = root["workflows"]
                if isinstance(node, CommentedSeq) and len(node) > 0:
                    for index, item in enumerate(node):
                        if isinstance(item, CommentedMap):
                            spec = self._workflow(item)
                            if spec is not None:
                                specs.append(spec)
                        else:
                            self.problem(
                                self.item_mark(node, index),
                                "each item of `workflows:` must be a mapping",
                            )
                else:
                    self.problem(
                        self.value_mark(root, "workflows"),
                        "`workflows:` must be a non-empty list of workflows",
                    )
            if "workflow" not in root and "workflows" not in root and "include" not in root:
                self.problem(
                    self.node_mark(root, Mark(file_name, 1, 1)),
                    "no `workflow:` or `workflows:` in the file",
                )
            for spec in specs:
                spec.from_include = included
            if "include" in root:
                specs.extend(self._includes(root, base_dir, depth))
            return specs
        finally:
            self.file, self.base_dir, self.source = previous, previous_dir, previous_source

    def _includes(self, root: CommentedMap, base_dir: Path, depth: int) -> list[WorkflowSpec]:
        node = root["include"]
        entries: list[tuple[Any, Mark]] = []
        if isinstance(node, str):
            entries.append((node, self.value_mark(root, "include")))
        elif isinstance(node, CommentedSeq):
            entries.extend((item, self.item_mark(node, i)) for i, item in enumerate(node))
        else:
            self.problem(
                self.value_mark(root, "include"),
                "`include:` must be a file name or a list of file names",
            )
            return []
        specs: list[WorkflowSpec] = []
        for item, mark in entries:
            if not isinstance(item, str) or not item.strip():
                self.problem(mark, "an include must be a file name")
                continue
            name = self.substitute_static(item, mark)
            try:
                path = (base_dir / name).resolve()
            except (OSError, ValueError) as exc:
                self.problem(mark, f"cannot include {name!r}: {exc}")
                continue
            key = str(path)
            if key in self._seen_files or depth >= _MAX_INCLUDE_DEPTH:
                continue  # included already (or a cycle of includes): its workflows are there
            self._seen_files.add(key)
            try:
                text = read_source(path, include_mark=mark, name=name)
            except SourceError as exc:
                self.problems.append(exc.problem)
                continue
            specs.extend(
                self._read_file(text, str(path), path.parent, depth=depth + 1, included=True)
            )
        return specs

    def _check_keys(self, node: CommentedMap, allowed: Mapping[str, Any], where: str) -> None:
        for key in node:
            if not isinstance(key, str):
                self.problem(self.key_mark(node, key), f"keys must be strings, got {key!r}")
                continue
            if key.startswith("_") or key in allowed:
                continue
            self.problem(
                self.key_mark(node, key),
                f"unknown key {key!r} in {where}{_did_you_mean(key, list(allowed))}",
            )

    # -- scalars -------------------------------------------------------------------------------
    def plain(self, node: Any, mark: Mark) -> Any:
        """``node`` as plain Python values (dicts, lists, str, int, float, bool, None)."""
        if isinstance(node, Mapping):
            out: dict[str, Any] = {}
            for key in node:
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.problem(self.key_mark(node, key), f"keys must be strings, got {key!r}")
                    continue
                out[str(key)] = self.plain(node[key], self.value_mark(node, key))
            return out
        if isinstance(node, list):
            return [self.plain(item, self.item_mark(node, i)) for i, item in enumerate(node)]
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            return str(node)
        if isinstance(node, dt.datetime | dt.date):
            return node.isoformat()
        self.problem(mark, f"unsupported YAML value {node!r} ({type(node).__name__})")
        return None

    def substitute_static(self, text: str, mark: Mark) -> str:
        """``text`` with load-time references filled in; runtime ones are a problem here."""
        value = self.interpolate(text, mark, runtime=None)
        return value if isinstance(value, str) else ip.to_text(value)

    def interpolate(
        self,
        value: Any,
        mark: Mark,
        *,
        runtime: WorkflowSpec | None,
        what: str = "here",
    ) -> Any:
        """Fill in load-time references of ``value`` (strings inside lists and mappings too).

        Runtime references are kept when ``runtime`` (the workflow) is given, after checking
        that an ``inputs.x`` names a declared input; else they are a problem.
        """
        if isinstance(value, Mapping):
            return {
                k: self.interpolate(v, mark, runtime=runtime, what=what) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.interpolate(v, mark, runtime=runtime, what=what) for v in value]
        if not isinstance(value, str):
            return value
        refs = self.references(value, mark)
        if refs is None:
            return value
        for ref in refs:
            if ref.is_runtime:
                if runtime is None:
                    self.problem(
                        mark,
                        f"{ref.raw.strip()} is not allowed {what}: only load-time "
                        "values (${{ config.x }} or ((x))) are known here",
                    )
                else:
                    self.check_input(ref.namespace, ref.path, runtime, mark)
            else:
                self.check_value(ref, mark)
        return ip.render(
            value,
            lambda ref: ip.resolve(ref, None, self.values),
            only=lambda ref: not ref.is_runtime,
        )

    def references(self, text: str, mark: Mark) -> list[ip.Reference] | None:
        """The references in ``text`` (``None`` after recording a problem)."""
        try:
            return ip.references(text)
        except ip.InterpolationError as exc:
            self.problem(mark, str(exc))
            return None

    def check_value(self, ref: ip.Reference, mark: Mark) -> None:
        """A load-time reference must name a given value."""
        name = ref.path[0]
        if name not in self.values:
            given = ", ".join(sorted(self.values)) or "none"
            self.problem(
                mark,
                f"load-time value {name!r} is not set (pass --set {name}=...; given: {given})",
            )

    def check_input(
        self, namespace: str, path: tuple[str, ...], workflow: WorkflowSpec, mark: Mark
    ) -> None:
        """``inputs.x`` must name a declared input of ``workflow``."""
        if namespace == "inputs" and path[0] not in workflow.inputs:
            declared = ", ".join(sorted(workflow.inputs)) or "none"
            self.problem(
                mark,
                f"undeclared input {path[0]!r}{_did_you_mean(path[0], list(workflow.inputs))} "
                f"(declared inputs: {declared})",
            )

    def text_field(self, node: CommentedMap, key: str, *, required: bool = False) -> str | None:
        """A string field, load-time references filled in."""
        if key not in node or node[key] is None:
            if required:
                self.problem(self.node_mark(node), f"missing `{key}`")
            return None
        value = node[key]
        mark = self.value_mark(node, key)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(mark, f"`{key}` must be a string")
            return None
        text = self.substitute_static(str(value), mark)
        if required and not text.strip():
            self.problem(mark, f"`{key}` must not be empty")
        return text

    def int_field(
        self,
        node: CommentedMap,
        key: str,
        default: int | None,
        minimum: int = 0,
        maximum: int = _MAX_INT,
    ) -> int | None:
        """An integer field (a load-time reference to one is fine)."""
        if key not in node or node[key] is None:
            return default
        value = node[key]
        mark = self.value_mark(node, key)
        if isinstance(value, str):
            value = self.substitute_static(value, mark)
            try:
                value = int(value)
            except ValueError:
                self.problem(mark, f"`{key}` must be an integer, got {value!r}")
                return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(mark, f"`{key}` must be an integer, got {value!r}")
            return default
        if value < minimum:
            self.problem(mark, f"`{key}` must be at least {minimum}")
            return default
        if value > maximum:
            self.problem(mark, f"`{key}` must be at most {maximum}")
            return default
        return int(value)

    def duration_field(self, node: CommentedMap, key: str) -> dt.timedelta | None:
        """A duration field (``5s``); a bad one is a problem."""
        if key not in node or node[key] is None:
            return None
        mark = self.value_mark(node, key)
        value = node[key]
        if isinstance(value, str):
            value = self.substitute_static(value, mark)
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.problem(mark, f"`{key}`: {exc}")
            return None

    # -- workflows -----------------------------------------------------------------------------
    def _workflow(self, node: CommentedMap) -> WorkflowSpec | None:
        mark = self.node_mark(node)
        self._check_keys(node, schema.WORKFLOW_KEYS, "workflow")
        workflow_id = self.text_field(node, "id", required=True)
        version = self.int_field(node, "version", 1, minimum=1, maximum=MAX_DEFINITION_VERSION)
        spec = WorkflowSpec(
            id=workflow_id or "",
            version=version or 1,
            mark=mark,
            file=self.file,
            description=self.text_field(node, "description"),
        )
        spec.inputs = self._declarations(node, "inputs")
        spec.outputs = self._declarations(node, "outputs")
        for name in spec.outputs:
            if name in spec.inputs:
                self.problem(
                    self.key_mark(node["outputs"], name),
                    f"output {name!r} has the name of a declared input; an output may not "
                    "overwrite an input (give it another name)",
                )
        if "error_behavior" in node:
            spec.error_behavior = self._error_behavior(node, "error_behavior")
        steps = node.get("steps")
        if not isinstance(steps, CommentedSeq) or len(steps) == 0:
            self.problem(
                self.value_mark(node, "steps") if "steps" in node else mark,
                "a workflow needs `steps:`, a non-empty list of steps",
            )
        else:
            spec.steps = self._step_list(steps, spec)
        return spec if workflow_id else None

    def _declarations(self, node: CommentedMap, key: str) -> dict[str, ValueType]:
        if key not in node or node[key] is None:
            return {}
        declared = node[key]
        if not isinstance(declared, CommentedMap):
            self.problem(
                self.value_mark(node, key),
                f"`{key}:` must map names to types, e.g. {{branch: string, retries: integer?}}",
            )
            return {}
        found: dict[str, ValueType] = {}
        for name in declared:
            value = declared[name]
            mark = self.value_mark(declared, name)
            if not isinstance(name, str) or not name:
                self.problem(self.key_mark(declared, name), f"{key} names must be strings")
                continue
            if isinstance(value, CommentedMap):
                # The long form {type: integer, description: ...}.
                self._check_keys(value, schema.DECLARATION_KEYS, f"{key} {name!r}")
                value = value.get("type", "any")
            try:
                found[name] = ValueType.parse(value)
            except ValueError as exc:
                self.problem(mark, f"{key} {name!r}: {exc}")
        return found

    def _error_behavior(self, node: CommentedMap, key: str) -> ErrorBehavior | None:
        value = node[key]
        mark = self.value_mark(node, key)
        kinds = [k.value for k in ErrorBehaviorKind]
        if isinstance(value, str):
            value = CommentedMap({"type": value})
        if not isinstance(value, CommentedMap):
            self.problem(
                mark,
                "`error_behavior:` must be a mapping like {type: retry, "
                "interval: 5s, max_retries: 3}",
            )
            return None
        self._check_keys(value, schema.ERROR_BEHAVIOR_KEYS, "error_behavior")
        kind = value.get("type")
        if kind not in kinds:
            self.problem(
                self.value_mark(value, "type") if "type" in value else mark,
                f"error_behavior `type` must be one of {', '.join(kinds)}"
                f"{_did_you_mean(str(kind), kinds) if kind else ''}",
            )
            return None
        if kind != ErrorBehaviorKind.RETRY:
            extra = [k for k in value if k != "type" and not str(k).startswith("_")]
            if extra:
                self.problem(
                    self.key_mark(value, extra[0]),
                    f"`{extra[0]}` only applies to error_behavior type retry",
                )
            return ErrorBehavior(ErrorBehaviorKind(kind))
        interval = self.duration_field(value, "interval") or dt.timedelta(seconds=60)
        max_retries = self.int_field(value, "max_retries", None, minimum=0)
        max_interval = self.duration_field(value, "max_interval")
        backoff: Any = value.get("backoff", 1.0)
        if (
            isinstance(backoff, bool)
            or not isinstance(backoff, int | float)
            or not 1 <= backoff <= _MAX_BACKOFF
        ):
            self.problem(
                self.value_mark(value, "backoff"),
                f"`backoff` must be a number >= 1 and at most {_MAX_BACKOFF}",
            )
            backoff = 1.0
        return ErrorBehavior.retry(interval, max_retries, float(backoff), max_interval)

    # -- steps ---------------------------------------------------------------------------------
    def _step_list(self, node: CommentedSeq, workflow: WorkflowSpec) -> list[StepSpec]:
        steps: list[StepSpec] = []
        for index, item in enumerate(node):
            if isinstance(item, CommentedMap):
                step = self._step(item, workflow)
                if step is not None:
                    steps.append(step)
            else:
                self.problem(self.item_mark(node, index), "a step must be a mapping with `name:`")
        return steps

    def _hooks(self, node: CommentedMap, key: str, workflow: WorkflowSpec) -> list[StepSpec]:
        if key not in node or node[key] is None:
            return []
        value = node[key]
        if isinstance(value, CommentedMap):
            step = self._step(value, workflow)
            return [step] if step is not None else []
        if isinstance(value, CommentedSeq) and len(value) > 0:
            return self._step_list(value, workflow)
        self.problem(self.value_mark(node, key), f"`{key}:` must be a step or a list of steps")
        return []

    def _step(self, node: CommentedMap, workflow: WorkflowSpec) -> StepSpec | None:
        mark = self.node_mark(node)
        self._check_keys(node, schema.STEP_KEYS, "step")
        name = self.text_field(node, "name", required=True)
        step = StepSpec(
            name=name or "?", mark=mark, description=self.text_field(node, "description")
        )
        label = f"step {step.name!r}"
        type_name = self.text_field(node, "type")
        if "when" in node:
            step.when = self._condition(node["when"], self.value_mark(node, "when"), workflow)
        if "error_behavior" in node:
            step.error_behavior = self._error_behavior(node, "error_behavior")
        step.on_success = self._hooks(node, "on_success", workflow)
        step.on_failure = self._hooks(node, "on_failure", workflow)
        step.ensure = self._hooks(node, "ensure", workflow)
        config_node = node.get("config")
        if "parallel" in node:
            parallel = node["parallel"]
            if type_name is not None or "config" in node:
                self.problem(
                    self.key_mark(node, "parallel"),
                    f"{label}: `parallel:` cannot be combined with `type:` or `config:`",
                )
            if isinstance(parallel, CommentedSeq) and len(parallel) > 0:
                step.parallel = self._step_list(parallel, workflow)
            else:
                self.problem(
                    self.value_mark(node, "parallel"),
                    f"{label}: `parallel:` must be a non-empty list of steps",
                )
                step.parallel = []
            return step
        if config_node is not None and not isinstance(config_node, CommentedMap):
            self.problem(self.value_mark(node, "config"), f"{label}: `config:` must be a mapping")
            config_node = None
        config_mark = self.value_mark(node, "config") if "config" in node else mark
        if type_name is None:
            if config_node is not None and ("run" in config_node or "file" in config_node):
                type_name = DEFAULT_TYPE
            else:
                self.problem(
                    config_mark,
                    f"{label}: missing `run` (a shell step needs config.run), or give it a "
                    "`type:` or `parallel:` steps",
                )
                return step
        step.type_name = type_name
        executor = self.executor(type_name)
        if executor is None:
            installed = ", ".join(self.executor_names()) or "none"
            self.problem(
                self.value_mark(node, "type"),
                f"{label}: unknown step type {type_name!r}"
                f"{_did_you_mean(type_name, self.executor_names())}; installed: {installed}",
            )
            return step
        step.executor = executor
        step.config = self._config(config_node, config_mark, executor, workflow, label)
        return step

    def _config(
        self,
        node: CommentedMap | None,
        mark: Mark,
        executor: StepExecutor,
        workflow: WorkflowSpec,
        label: str,
    ) -> dict[str, Any]:
        if node is None:
            node = CommentedMap()
        keys: Mapping[str, Any] | None = getattr(executor, "config_keys", None)
        if keys is not None:
            self._check_keys(node, keys, f"{label} config")
        shell_keys: tuple[str, ...] = getattr(executor, "shell_code_keys", ())
        literal_keys: tuple[str, ...] = getattr(executor, "literal_keys", ())
        static_keys: tuple[str, ...] = getattr(executor, "static_keys", ())
        config: dict[str, Any] = {}
        marks: dict[str, Mark] = {}
        for key in node:
            if not isinstance(key, str) or key.startswith("_"):
                continue
            key_mark = self.value_mark(node, key)
            marks[key] = key_mark
            value = self.plain(node[key], key_mark)
            if key in literal_keys:
                if isinstance(value, str) and (self.references(value, key_mark) or []):
                    self.problem(
                        key_mark,
                        f"{label}: references are not allowed in `{key}` "
                        "(read workflow data with Wfe.getData())",
                    )
                config[key] = value
            elif key in shell_keys and isinstance(value, str):
                config[key] = self._shell_code(value, key_mark, workflow, config)
            else:
                config[key] = self.interpolate(
                    value,
                    key_mark,
                    runtime=None if key in static_keys else workflow,
                    what=f"in `{key}`",
                )
        prepare = getattr(executor, "prepare_config", None)
        if prepare is not None:
            config = dict(prepare(config, self.base_dir))
        for message in executor.validate_config(config):
            key, _, rest = message.partition(": ")
            where = marks.get(key, mark) if rest else mark
            self.problem(where, f"{label}: {message}")
        return config

    def _shell_code(
        self, script: str, mark: Mark, workflow: WorkflowSpec, config: dict[str, Any]
    ) -> str:
        """Shell code: load-time values go in as environment variables (never as code);
        runtime references stay for the executor to do the same when the step runs."""
        try:
            spots = ip.shell_spots(script)
        except ip.InterpolationError as exc:
            self.problem(mark, str(exc))
            return script
        for ref, spot in spots:
            if ref.is_runtime:
                self.check_input(ref.namespace, ref.path, workflow, mark)
            else:
                self.check_value(ref, mark)
            self._check_spot(ref, spot, workflow, self.locate(mark, script, ref))
        try:
            code, env = ip.shell_safe(
                script,
                lambda ref: ip.resolve(ref, None, self.values),
                only=lambda ref: not ref.is_runtime,
                prefix="WFE_SET_",
            )
        except ip.InterpolationError:
            return script  # already recorded as a problem above
        if env:
            merged = dict(env)
            existing = config.get("env")
            if isinstance(existing, Mapping):
                merged.update(existing)
            config["env"] = merged
        return code

    def _check_spot(
        self, ref: ip.Reference, spot: Spot, workflow: WorkflowSpec, mark: Mark
    ) -> None:
        """A reference in shell code must stand where a safe form exists; where bash
        evaluates arithmetic, only an input declared `integer` (checked before the step
        runs) or a load-time integer may."""
        raw = ref.raw.strip()
        if spot.place == Place.REFUSED:
            self.problem(mark, f"{raw} cannot stand here: it is {spot.refused}")
            return
        if not spot.integer:
            return
        if ref.namespace == ip.CONFIG_NAMESPACE:
            if ref.path[0] in self.values:
                try:
                    ip.integer_text(ref, ip.resolve(ref, None, self.values))
                except ip.InterpolationError as exc:
                    self.problem(mark, str(exc))
            return
        declared = workflow.inputs.get(ref.path[0]) if ref.namespace == "inputs" else None
        if declared is not None and declared.name == "integer" and len(ref.path) == 1:
            return
        self.problem(mark, f"{raw} is {ARITHMETIC_HINT}")

    def locate(self, mark: Mark, text: str, ref: ip.Reference) -> Mark:
        """Where ``ref`` (in the scalar ``text`` that starts at ``mark``) is written: the
        same occurrence of its text after ``mark`` in the file (else ``mark`` itself, e.g.
        when YAML escapes changed it)."""
        lines = self.source.splitlines(keepends=True)
        if mark.file != self.file or not 0 < mark.line <= len(lines):
            return mark
        offset = sum(len(line) for line in lines[: mark.line - 1]) + max(mark.column - 1, 0)
        found = offset - 1
        for _ in range(text.count(ref.raw, 0, ref.start) + 1):
            found = self.source.find(ref.raw, found + 1)
            if found < 0:
                return mark
        line = self.source.count("\n", 0, found) + 1
        column = found - (self.source.rfind("\n", 0, found) + 1) + 1
        return Mark(self.file, line, column)

    # -- conditions ----------------------------------------------------------------------------
    def _condition(self, node: Any, mark: Mark, workflow: WorkflowSpec) -> Condition | None:
        if not isinstance(node, CommentedMap):
            self.problem(
                mark, "a condition must be a mapping, e.g. {field: inputs.branch, equals: main}"
            )
            return None
        mark = self.node_mark(node, mark)
        keys = [k for k in node if not (isinstance(k, str) and k.startswith("_"))]
        self._check_keys(node, schema.CONDITION_KEYS, "condition")
        combinators = [k for k in keys if k in COMBINATORS]
        if combinators:
            if len(keys) != 1:
                self.problem(
                    mark,
                    f"a `{combinators[0]}` condition takes no other keys "
                    f"(found {', '.join(map(str, keys))})",
                )
                return None
            combinator = combinators[0]
            value = node[combinator]
            value_mark = self.value_mark(node, combinator)
            if combinator == "not":
                inner = self._condition(value, value_mark, workflow)
                return Combination("not", (inner,)) if inner is not None else None
            if not isinstance(value, CommentedSeq) or len(value) == 0:
                self.problem(value_mark, f"`{combinator}` takes a non-empty list of conditions")
                return None
            parts = [
                self._condition(item, self.item_mark(value, i), workflow)
                for i, item in enumerate(value)
            ]
            if any(p is None for p in parts):
                return None
            return Combination(combinator, tuple(p for p in parts if p is not None))
        if "field" not in node:
            self.problem(
                mark,
                "a condition needs `field:` and an operator "
                f"({', '.join(OPERATORS)}), or one of {', '.join(COMBINATORS)}",
            )
            return None
        field_text = self.text_field(node, "field", required=True) or ""
        field_mark = self.value_mark(node, "field")
        try:
            namespace, path = ip.parse_path(field_text)
        except ip.InterpolationError as exc:
            self.problem(field_mark, str(exc))
            return None
        self.check_input(namespace, path, workflow, field_mark)
        if namespace == ip.CONFIG_NAMESPACE and path[0] not in self.values:
            self.problem(
                field_mark, f"load-time value {path[0]!r} is not set (pass --set {path[0]}=...)"
            )
        operators = [k for k in keys if k in OPERATORS]
        if len(operators) != 1:
            self.problem(
                mark, f"a field condition needs exactly one operator of {', '.join(OPERATORS)}"
            )
            return None
        operator = operators[0]
        value = self.plain(node[operator], self.value_mark(node, operator))
        if isinstance(value, str):
            value = self.interpolate(value, self.value_mark(node, operator), runtime=None)
        if operator in ("is_null", "is_not_null") and not isinstance(value, bool):
            self.problem(self.value_mark(node, operator), f"`{operator}` takes true or false")
            return None
        if operator in ("gt", "gte", "lt", "lte") and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            self.problem(self.value_mark(node, operator), f"`{operator}` compares with a number")
            return None
        return FieldCondition(namespace, path, operator, value)

    # -- whole-file checks -------------------------------------------------------------------
    def _check_workflows(self, specs: list[WorkflowSpec]) -> None:
        by_id: dict[tuple[str, int], WorkflowSpec] = {}
        for spec in specs:
            key = (spec.id, spec.version)
            if key in by_id:
                first = by_id[key]
                if not spec.from_include or not first.from_include or first.file != spec.file:
                    self.problem(
                        spec.mark,
                        f"duplicate workflow {spec.id!r} v{spec.version} (first at {first.mark})",
                    )
                continue
            by_id[key] = spec
            names: dict[str, Mark] = {}
            for step in spec.all_steps():
                if step.name in names:
                    self.problem(
                        step.mark,
                        f"duplicate step name {step.name!r} in workflow "
                        f"{spec.id!r} (first at {names[step.name]})",
                    )
                else:
                    names[step.name] = step.mark
        latest: dict[str, WorkflowSpec] = {}
        for spec in by_id.values():
            if spec.id not in latest or spec.version > latest[spec.id].version:
                latest[spec.id] = spec
        self._check_children(by_id, latest)
        for spec in by_id.values():
            self._check_copied_outputs(spec)

    def _check_copied_outputs(self, spec: WorkflowSpec) -> None:
        """A ``type: workflow`` step may not copy an output named like one of ``spec``'s
        declared inputs into its data (it would overwrite the input)."""
        for step in spec.all_steps():
            copied = step.config.get("outputs") if step.type_name == "workflow" else None
            if not isinstance(copied, list):
                continue
            for name in copied:
                if name in spec.inputs:
                    self.problem(
                        step.mark,
                        f"step {step.name!r} copies output {name!r}, the name of a declared "
                        f"input of workflow {spec.id!r}; an output may not overwrite an input",
                    )

    def _child_of(
        self,
        step: StepSpec,
        by_id: Mapping[tuple[str, int], WorkflowSpec],
        latest: Mapping[str, WorkflowSpec],
    ) -> WorkflowSpec | None:
        if step.type_name != "workflow":
            return None
        child_id = step.config.get("workflow")
        if not isinstance(child_id, str) or ip.references(child_id):
            return None
        version = step.config.get("version")
        if isinstance(version, int) and not isinstance(version, bool):
            return by_id.get((child_id, version))
        return latest.get(child_id)

    def _check_children(
        self,
        by_id: Mapping[tuple[str, int], WorkflowSpec],
        latest: Mapping[str, WorkflowSpec],
    ) -> None:
        edges: dict[tuple[str, int], list[tuple[StepSpec, WorkflowSpec]]] = {}
        for key, spec in by_id.items():
            for step in spec.all_steps():
                child = self._child_of(step, by_id, latest)
                if child is None:
                    continue
                edges.setdefault(key, []).append((step, child))
                self._check_child_io(step, child)
        # Depth-first search for cycles; each cycle is reported once, at the step that
        # closes it.
        state: dict[tuple[str, int], int] = {}
        path: list[tuple[str, int]] = []

        def visit(key: tuple[str, int]) -> None:
            state[key] = 1
            path.append(key)
            for step, child in edges.get(key, []):
                child_key = (child.id, child.version)
                if state.get(child_key) == 1:
                    cycle = [*path[path.index(child_key) :], child_key]
                    self.problem(
                        step.mark,
                        "circular sub-workflow reference: "
                        + " -> ".join(f"{c[0]} v{c[1]}" for c in cycle),
                    )
                elif child_key not in state:
                    visit(child_key)
            path.pop()
            state[key] = 2

        for key in by_id:
            if key not in state:
                visit(key)

    def _check_child_io(self, step: StepSpec, child: WorkflowSpec) -> None:
        inputs = step.config.get("inputs") or {}
        if isinstance(inputs, Mapping):
            for name in inputs:
                if child.inputs and name not in child.inputs:
                    self.problem(
                        step.mark,
                        f"step {step.name!r}: workflow {child.id!r} has no "
                        f"input {name!r}{_did_you_mean(name, list(child.inputs))}",
                    )
            for name, value_type in child.inputs.items():
                if not value_type.optional and name not in inputs:
                    self.problem(
                        step.mark,
                        f"step {step.name!r}: workflow {child.id!r} needs "
                        f"input {name!r} ({value_type})",
                    )
        if "outputs" not in step.config and child.outputs:
            step.config["outputs"] = list(child.outputs)


# -- compiling -----------------------------------------------------------------------------


class _Compiler:
    """Turns one checked :class:`WorkflowSpec` into a :class:`WorkflowDefinition`."""

    def __init__(self, spec: WorkflowSpec, values: Mapping[str, Any]) -> None:
        self.spec = spec
        self.values = dict(values)
        self.steps: list[StepDefinition] = []

    def compile(self) -> WorkflowDefinition:
        spec = self.spec
        chain: list[int] = []
        chain.extend(self._step(step, spec.error_behavior) for step in spec.steps)
        if spec.outputs:
            chain.append(self._internal(CheckOutputsFactory(spec.outputs), spec.mark))
        self._route(chain)
        definition = WorkflowDefinition(
            id=spec.id,
            version=spec.version,
            steps=self.steps,
            data_type=dict,
            description=spec.description,
            start_step=chain[0],
            prepare_input=PrepareInputs(spec.id, spec.inputs) if spec.inputs else None,
            inputs=tuple(spec.inputs),
            outputs=tuple(spec.outputs),
        )
        definition.validate()
        return definition

    def _new(
        self,
        body: Any,
        name: str,
        mark: Mark,
        *,
        hidden: bool,
        kind: str,
        **fields: Any,
    ) -> StepDefinition:
        step = StepDefinition(
            id=len(self.steps),
            body=body,
            name=name,
            metadata={
                "source": str(mark),
                "file": mark.file,
                "line": mark.line,
                "hidden": hidden,
                "kind": kind,
            },
            **fields,
        )
        self.steps.append(step)
        return step

    def _internal(self, body: Any, mark: Mark) -> int:
        return self._new(body, body.__name__, mark, hidden=True, kind="check").id

    def _route(self, chain: list[int]) -> None:
        for before, after in itertools.pairwise(chain):
            self.steps[before].outcomes.append(OutcomeRoute(after))

    def _chain(self, specs: list[StepSpec], inherited: ErrorBehavior | None) -> int:
        ids = [self._step(s, inherited) for s in specs]
        self._route(ids)
        return ids[0]

    def _step(self, spec: StepSpec, inherited: ErrorBehavior | None) -> int:
        """Compile one YAML step; returns the id of its outermost engine step."""
        guarded = bool(spec.on_success or spec.on_failure or spec.ensure)
        when = None if guarded else spec.when
        condition = {} if spec.when is None else {"when": spec.when.describe()}
        # With hooks the guard around the step holds the condition (and is what is drawn).
        core_condition = {} if guarded else condition
        behavior = spec.error_behavior or inherited
        if spec.parallel is not None:
            core = self._new(
                ParallelFactory(spec.name, when, self.values),
                spec.name,
                spec.mark,
                hidden=False,
                kind="parallel",
                external_id=spec.name,
            )
            core.metadata.update(core_condition)
            core.children.extend(self._step(child, behavior) for child in spec.parallel)
        else:
            assert spec.executor is not None
            assert spec.type_name is not None
            plan = LeafPlan(
                name=spec.name,
                type_name=spec.type_name,
                executor=spec.executor,
                config=spec.config,
                when=when,
                values=self.values,
                output_types=self.spec.outputs,
                input_names=frozenset(self.spec.inputs),
            )
            # A plain "fail" is what happens anyway; leaving it unset lets a guard's phase
            # catch the failure so on_failure and ensure run.
            if behavior is not None and behavior.kind == ErrorBehaviorKind.FAIL:
                behavior = None
            core = self._new(
                ExecutorStepFactory(plan),
                spec.name,
                spec.mark,
                hidden=False,
                kind=spec.type_name,
                external_id=spec.name,
                error_behavior=behavior,
            )
            core.metadata.update(core_condition)
        if not guarded:
            return core.id
        phases: dict[str, int] = {}
        hooks = {"main": None, "failure": spec.on_failure, "ensure": spec.ensure}
        default = self.spec.error_behavior
        for phase, members in hooks.items():
            if phase != "main" and not members:
                continue
            step = self._new(
                Phase,
                f"{spec.name} ({phase})",
                spec.mark,
                hidden=True,
                kind="phase",
                inputs={"phase": phase},
                is_saga=True,
            )
            phases[phase] = step.id
            if phase == "main":
                first = core.id
                if spec.on_success:
                    success = self._chain(spec.on_success, default)
                    core.outcomes.append(OutcomeRoute(success))
            else:
                assert members is not None
                first = self._chain(members, default)
            step.children.append(first)
        guard = self._new(
            GuardFactory(spec.name, phases, spec.when, self.values),
            spec.name,
            spec.mark,
            hidden=True,
            kind="guard",
        )
        guard.children.extend(phases.values())
        guard.metadata.update(condition)
        return guard.id

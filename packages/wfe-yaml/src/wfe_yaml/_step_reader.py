"""Reading the steps of a YAML workflow: names, conditions, hooks (``on_timeout:`` too),
``parallel:``, each step type's ``config:`` (references checked, shell code made safe) and
the ``steps:`` inside config lists that are the step's branches (an approval's options and
escalations)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from wfe_yaml import interpolation as ip
from wfe_yaml import schema
from wfe_yaml._context import did_you_mean
from wfe_yaml._spec import BranchSpec, StepSpec
from wfe_yaml.shell_scan import ARITHMETIC_HINT, Place, Spot

if TYPE_CHECKING:
    from wfe_core.providers import StepExecutor
    from wfe_yaml._condition_reader import ConditionReader
    from wfe_yaml._context import ReadContext
    from wfe_yaml._fields import FieldReader
    from wfe_yaml._spec import WorkflowSpec
    from wfe_yaml._step_types import StepTypes
    from wfe_yaml.errors import Mark

#: Step type used when a step has no ``type:`` but its config has ``run`` (or ``file``).
DEFAULT_TYPE = "shell"


class StepReader:
    """Reads YAML steps into :class:`~wfe_yaml._spec.StepSpec` objects."""

    def __init__(
        self,
        ctx: ReadContext,
        fields: FieldReader,
        conditions: ConditionReader,
        step_types: StepTypes,
    ) -> None:
        self.ctx = ctx
        self.fields = fields
        self.conditions = conditions
        self.step_types = step_types

    def read_list(self, node: CommentedSeq, workflow: WorkflowSpec) -> list[StepSpec]:
        """The steps of the list ``node`` (items that are no mapping are problems)."""
        steps: list[StepSpec] = []
        for index, item in enumerate(node):
            if isinstance(item, CommentedMap):
                step = self.read(item, workflow)
                if step is not None:
                    steps.append(step)
            else:
                self.ctx.problem(
                    self.ctx.item_mark(node, index), "a step must be a mapping with `name:`"
                )
        return steps

    def _hooks(self, node: CommentedMap, key: str, workflow: WorkflowSpec) -> list[StepSpec]:
        if key not in node or node[key] is None:
            return []
        value = node[key]
        if isinstance(value, CommentedMap):
            step = self.read(value, workflow)
            return [step] if step is not None else []
        if isinstance(value, CommentedSeq) and len(value) > 0:
            return self.read_list(value, workflow)
        self.ctx.problem(
            self.ctx.value_mark(node, key), f"`{key}:` must be a step or a list of steps"
        )
        return []

    def read(self, node: CommentedMap, workflow: WorkflowSpec) -> StepSpec | None:
        """The step of ``node``; what is wrong with it is recorded as problems."""
        mark = self.ctx.node_mark(node)
        self.ctx.check_keys(node, schema.STEP_KEYS, "step")
        name = self.fields.text_field(node, "name", required=True)
        step = StepSpec(
            name=name or "?", mark=mark, description=self.fields.text_field(node, "description")
        )
        label = f"step {step.name!r}"
        type_name = self.fields.text_field(node, "type")
        if "when" in node:
            step.when = self.conditions.read(
                node["when"], self.ctx.value_mark(node, "when"), workflow
            )
        if "error_behavior" in node:
            step.error_behavior = self.fields.error_behavior(node, "error_behavior")
        step.on_success = self._hooks(node, "on_success", workflow)
        step.on_failure = self._hooks(node, "on_failure", workflow)
        step.ensure = self._hooks(node, "ensure", workflow)
        step.on_timeout = self._hooks(node, "on_timeout", workflow)
        config_node = node.get("config")
        if "parallel" in node:
            parallel = node["parallel"]
            if "on_timeout" in node:
                self.ctx.problem(
                    self.ctx.key_mark(node, "on_timeout"),
                    f"{label}: `on_timeout:` applies to a step that waits (type wait), "
                    "not to `parallel:` steps",
                )
            if type_name is not None or "config" in node:
                self.ctx.problem(
                    self.ctx.key_mark(node, "parallel"),
                    f"{label}: `parallel:` cannot be combined with `type:` or `config:`",
                )
            if isinstance(parallel, CommentedSeq) and len(parallel) > 0:
                step.parallel = self.read_list(parallel, workflow)
            else:
                self.ctx.problem(
                    self.ctx.value_mark(node, "parallel"),
                    f"{label}: `parallel:` must be a non-empty list of steps",
                )
                step.parallel = []
            return step
        if config_node is not None and not isinstance(config_node, CommentedMap):
            self.ctx.problem(
                self.ctx.value_mark(node, "config"), f"{label}: `config:` must be a mapping"
            )
            config_node = None
        config_mark = self.ctx.value_mark(node, "config") if "config" in node else mark
        if type_name is None:
            if config_node is not None and ("run" in config_node or "file" in config_node):
                type_name = DEFAULT_TYPE
            else:
                self.ctx.problem(
                    config_mark,
                    f"{label}: missing `run` (a shell step needs config.run), or give it a "
                    "`type:` or `parallel:` steps",
                )
                return step
        step.type_name = type_name
        executor = self.step_types.get(type_name)
        if executor is None:
            installed = ", ".join(self.step_types.names()) or "none"
            self.ctx.problem(
                self.ctx.value_mark(node, "type"),
                f"{label}: unknown step type {type_name!r}"
                f"{did_you_mean(type_name, self.step_types.names())}; installed: {installed}",
            )
            return step
        step.executor = executor
        taken = self._take_branches(config_node, executor, workflow)
        step.config = self._config(config_node, config_mark, executor, workflow, label)
        step.branches = self._branches(taken, executor, step.config)
        if "on_timeout" in node:
            self._check_on_timeout(node, step, executor, label)
        return step

    def _take_branches(
        self, node: CommentedMap | None, executor: StepExecutor, workflow: WorkflowSpec
    ) -> list[tuple[str, int, list[StepSpec]]]:
        """Read the ``steps:`` of the entries of the config lists the step type names in
        ``branch_lists`` (``_config`` leaves them out of the config, which holds values
        only): each is ``(list key, index, steps)``."""
        lists: tuple[str, ...] = getattr(executor, "branch_lists", ())
        taken: list[tuple[str, int, list[StepSpec]]] = []
        if node is None:
            return taken
        for key in lists:
            entries = node.get(key)
            if not isinstance(entries, CommentedSeq):
                continue
            for index, entry in enumerate(entries):
                if isinstance(entry, CommentedMap) and "steps" in entry:
                    taken.append((key, index, self._hooks(entry, "steps", workflow)))
        return taken

    def _branches(
        self,
        taken: list[tuple[str, int, list[StepSpec]]],
        executor: StepExecutor,
        config: Mapping[str, Any],
    ) -> list[BranchSpec]:
        """The branches of ``taken`` steps, selected as the step type says
        (``branch_selection(list key, index, config)``: selection and label) once the
        config's values are known."""
        select = getattr(executor, "branch_selection", None)
        if select is None:
            return []
        branches = []
        for key, index, steps in taken:
            if not steps:
                continue
            selection, label = select(key, index, config)
            branches.append(BranchSpec(dict(selection), str(label), steps))
        return branches

    def _check_on_timeout(
        self, node: CommentedMap, step: StepSpec, executor: StepExecutor, label: str
    ) -> None:
        """``on_timeout:`` needs a step type that waits with a timeout, and the timeout."""
        where = self.ctx.key_mark(node, "on_timeout")
        timeout_key: str | None = getattr(executor, "timeout_key", None)
        if timeout_key is None:
            self.ctx.problem(
                where,
                f"{label}: `on_timeout:` applies to a step that waits (type wait), "
                f"not to type {step.type_name!r}",
            )
        elif step.config.get(timeout_key) is None:
            self.ctx.problem(
                where,
                f"{label}: `on_timeout:` needs config.{timeout_key} (without it the wait "
                "never times out)",
            )

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
            self.ctx.check_keys(node, keys, f"{label} config")
        shell_keys: tuple[str, ...] = getattr(executor, "shell_code_keys", ())
        literal_keys: tuple[str, ...] = getattr(executor, "literal_keys", ())
        static_keys: tuple[str, ...] = getattr(executor, "static_keys", ())
        branch_lists: tuple[str, ...] = getattr(executor, "branch_lists", ())
        config: dict[str, Any] = {}
        marks: dict[str, Mark] = {}
        for key in node:
            if not isinstance(key, str) or key.startswith("_"):
                continue
            key_mark = self.ctx.value_mark(node, key)
            marks[key] = key_mark
            value = self.fields.plain(node[key], key_mark)
            if key in branch_lists and isinstance(value, list):
                # Their entries' steps were read as steps (_take_branches), not values.
                value = [_without_steps(entry) for entry in value]
            if key in literal_keys:
                if isinstance(value, str) and (self.fields.references(value, key_mark) or []):
                    self.ctx.problem(
                        key_mark,
                        f"{label}: references are not allowed in `{key}` "
                        "(read workflow data with Wfe.getData())",
                    )
                config[key] = value
            elif key in shell_keys and isinstance(value, str):
                config[key] = self._shell_code(value, key_mark, workflow, config)
            else:
                config[key] = self.fields.interpolate(
                    value,
                    key_mark,
                    runtime=None if key in static_keys else workflow,
                    what=f"in `{key}`",
                )
        prepare = getattr(executor, "prepare_config", None)
        if prepare is not None:
            config = dict(prepare(config, self.ctx.base_dir))
        for message in executor.validate_config(config):
            key, _, rest = message.partition(": ")
            where = marks.get(key, mark) if rest else mark
            self.ctx.problem(where, f"{label}: {message}")
        return config

    def _shell_code(
        self, script: str, mark: Mark, workflow: WorkflowSpec, config: dict[str, Any]
    ) -> str:
        """Shell code: load-time values go in as environment variables (never as code);
        runtime references stay for the executor to do the same when the step runs."""
        try:
            spots = ip.shell_spots(script)
        except ip.InterpolationError as exc:
            self.ctx.problem(mark, str(exc))
            return script
        for ref, spot in spots:
            if ref.is_runtime:
                self.fields.check_input(ref.namespace, ref.path, workflow, mark)
            else:
                self.fields.check_value(ref, mark)
            self._check_spot(ref, spot, workflow, self.ctx.locate(mark, script, ref))
        try:
            code, env = ip.shell_safe(
                script,
                lambda ref: ip.resolve(ref, None, self.ctx.values),
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
            self.ctx.problem(mark, f"{raw} cannot stand here: it is {spot.refused}")
            return
        if not spot.integer:
            return
        if ref.namespace == ip.CONFIG_NAMESPACE:
            if ref.path[0] in self.ctx.values:
                try:
                    ip.integer_text(ref, ip.resolve(ref, None, self.ctx.values))
                except ip.InterpolationError as exc:
                    self.ctx.problem(mark, str(exc))
            return
        declared = workflow.inputs.get(ref.path[0]) if ref.namespace == "inputs" else None
        if declared is not None and declared.name == "integer" and len(ref.path) == 1:
            return
        self.ctx.problem(mark, f"{raw} is {ARITHMETIC_HINT}")


def _without_steps(entry: Any) -> Any:
    if isinstance(entry, dict) and "steps" in entry:
        return {k: v for k, v in entry.items() if k != "steps"}
    return entry

"""The builder produces the graph users describe, and refuses malformed definitions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from wfe_core import ErrorBehavior, ExecutionResult, StepBody, StepContext, WorkflowBuilder
from wfe_core.errors import DefinitionError
from wfe_core.models import OutcomeRoute, StepDefinition, WorkflowDefinition
from wfe_core.primitives import InlineStepFactory, Sequence, SubWorkflow


class A(StepBody):
    async def run(self, ctx: StepContext) -> ExecutionResult:
        return ExecutionResult.next()


class B(A):
    pass


def test_sequence_links_steps_in_order() -> None:
    definition = (
        WorkflowBuilder().start_with(A).name("first").id("a").then(B).then_fn(lambda ctx: None)
    ).build("seq", version=3, description="demo")
    assert [s.id for s in definition.steps] == [0, 1, 2]
    assert definition.steps[0].outcomes == [OutcomeRoute(1)]
    assert definition.steps[1].outcomes == [OutcomeRoute(2)]
    assert definition.steps[0].display_name == "first"
    assert definition.step_by_external_id("a").id == 0
    assert isinstance(definition.steps[2].body, InlineStepFactory)
    assert (definition.version, definition.description, definition.data_type) == (3, "demo", dict)


def test_callables_are_inline_steps_and_zero_arg_callables_factories() -> None:
    definition = WorkflowBuilder().start_with(lambda ctx: None).then(lambda: A()).build("f")
    assert isinstance(definition.steps[0].body, InlineStepFactory)
    assert isinstance(definition.steps[1].create_body(), A)


def test_step_settings_go_to_the_current_step() -> None:
    retry = ErrorBehavior.retry(interval=1, max_retries=2)
    definition = (
        WorkflowBuilder()
        .start_with(A)
        .input(value=lambda data: 1)
        .output(result=lambda step: 2)
        .on_error(retry)
        .compensate_with(B)
        .build("settings")
    )
    step = definition.steps[0]
    assert set(step.inputs) == {"value"}
    assert set(step.outputs) == {"result"}
    assert step.error_behavior == retry
    assert step.compensation_step_id is not None
    assert definition.steps[step.compensation_step_id].body is B
    # A compensation step is not on any route.
    assert all(
        r.next_step != step.compensation_step_id for s in definition.steps for r in s.outcomes
    )


def test_on_error_before_any_step_is_the_definition_default() -> None:
    definition = WorkflowBuilder().on_error(ErrorBehavior.suspend()).start_with(A).build("d")
    assert definition.default_error_behavior == ErrorBehavior.suspend()


def test_containers_have_their_branches_as_children() -> None:
    definition = (
        WorkflowBuilder()
        .start_with(A)
        .parallel(lambda p: p.branch(lambda b: b.start_with(A)).branch(lambda b: b.start_with(B)))
        .saga(lambda b: b.start_with(A))
        .decide(lambda d: d["k"], {"x": lambda b: b.start_with(A), "y": lambda b: b.start_with(B)})
        .then(B)
        .build("containers")
    )
    parallel = definition.steps[1]
    assert parallel.body is Sequence
    assert [definition.steps[c].body for c in parallel.children] == [A, B]
    saga = definition.steps[parallel.outcomes[0].next_step]
    assert saga.is_saga
    decide = definition.steps[saga.outcomes[0].next_step]
    assert len(decide.children) == 2
    assert all(definition.steps[c].inputs["case"] in ("x", "y") for c in decide.children)
    assert definition.steps[decide.outcomes[0].next_step].body is B


def test_schedule_forks_beside_the_main_flow() -> None:
    definition = WorkflowBuilder().schedule(5, lambda b: b.start_with(A)).then(B).build("schedule")
    fork = definition.steps[0]
    assert len(fork.outcomes) == 2  # the scheduled branch and the main flow


def test_sub_workflow_maps_outputs_from_child_fields() -> None:
    definition = (
        WorkflowBuilder()
        .sub_workflow("child", version=2, inputs=lambda d: {"x": 1}, outputs={"total": "sum"})
        .build("parent")
    )
    step = definition.steps[0]
    assert step.body is SubWorkflow
    assert step.inputs["definition_id"] == "child"
    body = SubWorkflow()
    body.result = {"sum": 7}
    assert step.outputs["total"](body) == 7


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: WorkflowBuilder().build("x"), "no steps"),
        (
            lambda: WorkflowBuilder().start_with(A).if_do(lambda d: True, lambda b: b).build("x"),
            "empty branch in if_do",
        ),
        (lambda: WorkflowBuilder().start_with(A).parallel(lambda p: p).build("x"), "no branches"),
        (lambda: WorkflowBuilder().start_with(A).decide(lambda d: 1, {}).build("x"), "no cases"),
        (
            lambda: WorkflowBuilder().start_with(A).id("same").then(B).id("same").build("x"),
            "duplicate step id 'same'",
        ),
        (
            lambda: WorkflowBuilder().start_with(A).start_with(B).build("x"),
            r"start_with\(\) called twice",
        ),
        (lambda: WorkflowBuilder().start_with(A()).build("x"), "instance given"),
        (lambda: WorkflowBuilder().start_with(int).build("x"), "not a StepBody subclass"),
        (
            lambda: WorkflowBuilder().name("early").start_with(A).build("x"),
            r".name\(\) called before",
        ),
        (lambda: WorkflowBuilder().start_with(42).build("x"), "neither a StepBody"),
    ],
)
def test_malformed_definitions_fail_at_build(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()


def test_all_problems_are_reported_together() -> None:
    builder: WorkflowBuilder[Any] = (
        WorkflowBuilder().start_with(A).parallel(lambda p: p).while_do(lambda d: 1, lambda b: b)
    )
    with pytest.raises(DefinitionError) as caught:
        builder.build("many")
    assert "no branches" in str(caught.value)
    assert "empty branch in while_do" in str(caught.value)


def test_validate_catches_dangling_references() -> None:
    definition = WorkflowDefinition(
        id="manual",
        version=1,
        steps=[
            StepDefinition(0, A, outcomes=[OutcomeRoute(5)], children=[7], compensation_step_id=9)
        ],
    )
    with pytest.raises(DefinitionError) as caught:
        definition.validate()
    text = str(caught.value)
    for fragment in ("unknown step 5", "unknown step 7", "unknown step 9"):
        assert re.search(fragment, text)


_RETRY = ErrorBehavior.retry(interval=1)


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda b: b.parallel(lambda p: p.branch(lambda x: x.start_with(A))), "parallel"),
        (lambda b: b.if_do(lambda d: True, lambda x: x.start_with(A)), "if_do"),
        (lambda b: b.while_do(lambda d: False, lambda x: x.start_with(A)), "while_do"),
        (lambda b: b.for_each(lambda d: [1], lambda x: x.start_with(A)), "for_each"),
        (lambda b: b.decide(lambda d: 1, {1: lambda x: x.start_with(A)}), "decide"),
        (lambda b: b.schedule(1, lambda x: x.start_with(A)), "schedule"),
        (lambda b: b.recur(1, lambda d: True, lambda x: x.start_with(A)), "recur"),
    ],
)
def test_on_error_on_a_container_other_than_a_saga_is_refused(build: Any, kind: str) -> None:
    builder = build(WorkflowBuilder().start_with(A)).on_error(_RETRY)
    with pytest.raises(DefinitionError, match=rf"on_error\(\) on a {kind} step is not supported"):
        builder.build("refused")


_CONTAINER_CALLS = [
    (lambda b: b.parallel(lambda p: p.branch(lambda x: x.start_with(A))), "Parallel", "parallel"),
    (lambda b: b.if_do(lambda d: True, lambda x: x.start_with(A)), "If", "if_do"),
    (lambda b: b.while_do(lambda d: False, lambda x: x.start_with(A)), "While", "while_do"),
    (lambda b: b.for_each(lambda d: [1], lambda x: x.start_with(A)), "ForEach", "for_each"),
    (lambda b: b.decide(lambda d: 1, {1: lambda x: x.start_with(A)}), "Decide", "decide"),
    (lambda b: b.schedule(1, lambda x: x.start_with(A)), "Schedule", "schedule"),
    (lambda b: b.recur(1, lambda d: True, lambda x: x.start_with(A)), "Recur", "recur"),
]


@pytest.mark.parametrize(("build", "name", "kind"), _CONTAINER_CALLS)
def test_validation_refuses_an_error_behaviour_set_on_a_container_after_build(
    build: Any, name: str, kind: str
) -> None:
    # A hand-built (or otherwise assembled) definition must not slip past what build()
    # refuses: validation is what register() runs.
    definition = build(WorkflowBuilder().start_with(A)).build("assembled")
    container = next(s for s in definition.steps if s.name == name)
    container.error_behavior = _RETRY
    with pytest.raises(DefinitionError) as caught:
        definition.validate()
    text = str(caught.value)
    assert f"step {container.id} ({name}) sets an error behaviour (retry), which a " in text
    assert kind in text.split("cannot honour")[0]


def test_validation_keeps_an_error_behaviour_on_a_saga_and_on_plain_steps() -> None:
    definition = WorkflowBuilder().saga(lambda s: s.start_with(A)).then(B).build("kept")
    for step in definition.steps:
        step.error_behavior = _RETRY
    definition.validate()  # the saga's Sequence honours it, A and B are not containers


def test_on_error_on_a_saga_and_on_the_steps_inside_containers_is_kept() -> None:
    definition = (
        WorkflowBuilder()
        .saga(lambda s: s.start_with(A))
        .on_error(_RETRY)
        .parallel(lambda p: p.branch(lambda b: b.start_with(A).on_error(_RETRY)))
        .build("kept")
    )
    behaviors = {s.display_name: s.error_behavior for s in definition.steps}
    assert behaviors["Saga"] == _RETRY
    assert behaviors["Parallel"] is None
    assert [s.error_behavior for s in definition.steps if s.body is A] == [None, _RETRY]


def test_when_routes_outcomes_to_branches_inside_a_container_the_next_step_follows() -> None:
    definition = (
        WorkflowBuilder()
        .start_with(A)
        .then(B)
        .name("check")
        .when("ok", lambda b: b.start_with(A).name("done"))
        .when("retry", lambda b: b.start_with(A).name("again"))
        .output(result=lambda step: 1)  # still sets up the step itself
        .then(A)
        .name("after")
        .build("when")
    )
    steps = {s.display_name: s for s in definition.steps}
    check, switch = steps["check"], steps["When check"]
    assert switch.body is Sequence
    assert switch.children == [check.id]
    # What led to the step leads to its container, which the next step follows.
    assert definition.steps[0].outcomes == [OutcomeRoute(switch.id)]
    assert switch.outcomes == [OutcomeRoute(steps["after"].id)]
    assert check.outcomes == [
        OutcomeRoute(steps["done"].id, "ok"),
        OutcomeRoute(steps["again"].id, "retry"),
    ]
    assert set(check.outputs) == {"result"}


def test_when_on_the_first_step_of_a_branch_starts_the_branch_with_its_container() -> None:
    definition = (
        WorkflowBuilder()
        .if_do(lambda d: True, lambda b: b.start_with(B).when(1, lambda x: x.start_with(A)))
        .build("first")
    )
    (if_step,) = [s for s in definition.steps if s.display_name == "If"]
    assert definition.steps[if_step.children[0]].display_name == "When B"


def test_attach_routes_to_the_named_step_wherever_it_is() -> None:
    definition = (
        WorkflowBuilder()
        .start_with(A)
        .id("top")
        .if_do(lambda d: True, lambda b: b.start_with(B).attach("top").attach("later"))
        .then(A)
        .id("later")
        .build("attach")
    )
    (b,) = [s for s in definition.steps if s.body is B]
    top, later = definition.step_by_external_id("top"), definition.step_by_external_id("later")
    assert b.outcomes == [OutcomeRoute(top.id), OutcomeRoute(later.id)]


def test_compensate_with_sequence_is_a_container_of_the_steps() -> None:
    definition = (
        WorkflowBuilder()
        .saga(
            lambda s: s.start_with(A).compensate_with_sequence(
                lambda c: c.start_with(B).name("undo 1").then(B).name("undo 2")
            )
        )
        .build("multi")
    )
    (a,) = [s for s in definition.steps if s.body is A]
    assert a.compensation_step_id is not None
    compensation = definition.step(a.compensation_step_id)
    assert compensation.body is Sequence
    (first,) = compensation.children
    assert definition.step(first).display_name == "undo 1"
    assert definition.step(definition.step(first).outcomes[0].next_step).display_name == "undo 2"


def test_cancel_condition_sets_up_the_current_step() -> None:
    def condition(data: Any) -> bool:
        return bool(data["cancelled"])

    definition = (
        WorkflowBuilder()
        .wait_for("e", key="k")
        .cancel_condition(condition, proceed_after_cancel=True)
        .build("cancel")
    )
    assert definition.steps[0].cancel_condition is condition
    assert definition.steps[0].proceed_after_cancel is True


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: WorkflowBuilder().start_with(A).attach("nowhere").build("x"),
            r"step 0 \(A\): attach\('nowhere'\) names no step \(step ids given with "
            r"\.id\(\): none\)",
        ),
        (lambda: WorkflowBuilder().attach("x").start_with(A).build("x"), "attach.* before any"),
        (
            lambda: (
                WorkflowBuilder().start_with(A).when(None, lambda b: b.start_with(A)).build("x")
            ),
            r"when\(None, \.\.\.\) would match every outcome",
        ),
        (
            lambda: WorkflowBuilder().start_with(A).when(1, lambda b: b).build("x"),
            "empty branch in when 1",
        ),
        (
            lambda: WorkflowBuilder().start_with(A).cancel_condition(True).build("x"),  # type: ignore[arg-type]
            r"cancel_condition\(\) takes fn\(data\), not True",
        ),
        (
            lambda: (
                WorkflowBuilder().start_with(A).compensate_with_sequence(lambda c: c).build("x")
            ),
            "empty branch in compensate_with_sequence",
        ),
    ],
)
def test_malformed_new_builder_calls_fail_at_build(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()


def test_attach_to_a_step_with_when_branches_enters_its_container() -> None:
    definition = (
        WorkflowBuilder()
        .start_with(A)
        .id("check")
        .when(1, lambda b: b.start_with(B).attach("check"))
        .build("loop")
    )
    (b,) = [s for s in definition.steps if s.body is B]
    (switch,) = [s for s in definition.steps if s.display_name == "When check"]
    assert b.outcomes == [OutcomeRoute(switch.id)]
    assert definition.start_step == switch.id


def test_when_names_its_container_after_the_step_as_finally_named() -> None:
    definition = (
        WorkflowBuilder()
        .start_with(A)
        .when(1, lambda b: b.start_with(B))
        .name("check")
        .build("named-late")
    )
    assert [s.display_name for s in definition.steps if s.children] == ["When check"]

"""Hypothesis strategies of random workflow definitions built from the primitives.

A *tree* is a list of nodes; :func:`build_tree` turns it into builder calls and counts how
often each recording step must run, so a test can check that a run accounted for every step::

    expected = Counter()
    builder = WorkflowBuilder()
    keys = build_tree(builder, tree, expected)
    definition = builder.build("random")
    ...  # run it, publishing an event for each key in ``keys``
    assert Counter(instance.data["log"]) == +expected
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

if TYPE_CHECKING:
    from collections import Counter

    from wfe_core._step import StepContext
    from wfe_core.builder import WorkflowBuilder

__all__ = ["EVENT_NAME", "Node", "build_tree", "definition_trees"]

#: One node: ``("step",)``, ``("delay",)``, ``("wait",)``, or a control node with its branches.
Node = tuple[Any, ...]

#: The event name ``("wait",)`` nodes wait for (keys are unique per node).
EVENT_NAME = "wfe-test-random"

_labels = itertools.count()


def definition_trees(*, events: bool = False, max_leaves: int = 8) -> st.SearchStrategy[list[Node]]:
    """Random trees of steps, delays (and, with ``events``, waits for events) inside ifs,
    whiles, parallel and sequential for_each, parallel branches, decides and sagas."""
    leaf = st.just(("step",)) | st.just(("delay",))
    if events:
        leaf = leaf | st.just(("wait",))

    def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        seq = st.lists(children, min_size=1, max_size=3)
        return st.one_of(
            st.tuples(st.just("if"), st.booleans(), seq),
            st.tuples(st.just("while"), st.integers(0, 2), seq),
            st.tuples(st.just("foreach"), st.integers(0, 3), st.booleans(), seq),
            st.tuples(st.just("parallel"), st.lists(seq, min_size=1, max_size=3)),
            st.tuples(st.just("decide"), st.integers(0, 2), st.lists(seq, min_size=2, max_size=3)),
            st.tuples(st.just("saga"), seq),
        )

    return st.lists(st.recursive(leaf, extend, max_leaves=max_leaves), min_size=1, max_size=4)


def _record(label: str) -> Any:
    def step(ctx: StepContext) -> None:
        ctx.data.setdefault("log", []).append(label)

    return step


def _rounds_below(n: int) -> Any:
    # Counted per while pointer (its persistence data), so nesting in loops stays exact.
    return lambda data, ctx: int((ctx.persistence_data or {}).get("rounds", 0)) < n


def build_tree(
    builder: WorkflowBuilder[Any],
    tree: list[Node],
    expected: Counter[str],
    *,
    times: int = 1,
) -> list[str]:
    """Add ``tree`` to ``builder`` (dict data); count in ``expected`` how often each recording
    step runs; return the event keys the ``("wait",)`` nodes wait for."""
    keys: list[str] = []
    _build(builder, tree, times, expected, keys)
    return keys


def _build(
    b: WorkflowBuilder[Any], seq: list[Node], times: int, expected: Counter[str], keys: list[str]
) -> None:
    def sub(body: list[Node], n: int) -> Any:
        return lambda branch: _build(branch, body, n, expected, keys)

    for node in seq:
        kind = node[0]
        if kind == "step":
            label = f"s{next(_labels)}"
            expected[label] += times
            b.then(_record(label))
        elif kind == "delay":
            b.delay(timedelta(milliseconds=5))
        elif kind == "wait":
            key = f"k{next(_labels)}"
            keys.append(key)
            b.wait_for(EVENT_NAME, key=key)
        elif kind == "if":
            _, condition, body = node
            b.if_do(lambda data, c=condition: c, sub(body, times * condition))
        elif kind == "while":
            _, rounds, body = node
            b.while_do(_rounds_below(rounds), sub(body, times * rounds))
        elif kind == "foreach":
            _, count, parallel, body = node
            b.for_each(
                lambda data, c=count: list(range(c)), sub(body, times * count), parallel=parallel
            )
        elif kind == "parallel":
            _, branches = node

            def add_branches(p: Any, branches: list[list[Node]] = branches) -> None:
                for branch in branches:
                    p.branch(sub(branch, times))

            b.parallel(add_branches)
        elif kind == "decide":
            _, choice, branches = node
            cases = {i: sub(branch, times * (i == choice)) for i, branch in enumerate(branches)}
            b.decide(lambda data, c=choice: c, cases)
        elif kind == "saga":
            _, body = node
            b.saga(sub(body, times))

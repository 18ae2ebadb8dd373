"""``wfe graph`` drawings from definitions of any origin."""

from __future__ import annotations

from wfe_core import ExecutionResult, WorkflowBuilder
from wfe_host.cli.graph import build_graph, to_dot, to_mermaid
from wfe_yaml import load_workflows_from_str


def test_a_builder_definition_draws() -> None:
    definition = (
        WorkflowBuilder()
        .start_with(lambda ctx: ExecutionResult.next())
        .name("Start")
        .parallel(
            lambda p: p.branch(lambda b: b.start_with(lambda ctx: None).name("A")).branch(
                lambda b: b.start_with(lambda ctx: None).name("B")
            )
        )
        .if_do(lambda data: True, lambda b: b.start_with(lambda ctx: None).name("Maybe"))
        .build("built", 3)
    )
    mermaid = to_mermaid(build_graph(definition))
    assert "title: built v3" in mermaid
    assert 'subgraph c1["Parallel"]' in mermaid
    assert 's0["Start"]' in mermaid
    assert "s0 --> s2" in mermaid
    dot = to_dot(build_graph(definition))
    assert "subgraph cluster_c1" in dot
    assert 'label="Maybe"' in dot


def test_yaml_hooks_draw_as_dashed_edges() -> None:
    [definition] = load_workflows_from_str(
        "workflow:\n  id: g\n  steps:\n    - name: Build\n      config: {run: make}\n"
        "      on_failure: {name: Report, config: {run: echo}}\n"
        "      ensure: {name: Clean, config: {run: echo}}\n"
        "    - name: Ship\n      config: {run: echo}\n"
    )
    graph = build_graph(definition)
    edges = {(e.source, e.target, e.label) for e in graph.edges}
    ids = {n.label: n.id for c in graph.items for n in getattr(c, "items", [c])}
    assert (ids["Build"], ids["Report"], "on failure") in edges
    assert (ids["Build"], ids["Clean"], "ensure") in edges
    assert (ids["Report"], ids["Clean"], "") in edges
    assert (ids["Clean"], ids["Ship"], "") in edges

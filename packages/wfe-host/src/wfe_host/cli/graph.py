"""``wfe graph FILE``: a picture of a workflow as Mermaid or Graphviz DOT text, or SVG.

The picture is drawn from the loaded definition, so it works for any definition format.
Containers (parallel branches and the like) are boxes around their branches. Steps a format
marks ``metadata["hidden"]`` are plumbing and are not drawn; a YAML step with hooks is drawn
as a box with its ``on failure`` and ``ensure`` steps after it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import click

from wfe_host.cli.run import choose, load_file, parse_pairs
from wfe_host.cli.state import cli_state

if TYPE_CHECKING:
    from wfe_core.models import StepDefinition, WorkflowDefinition


@attrs.define
class Node:
    """A drawn step."""

    id: str
    label: str
    kind: str = ""


@attrs.define
class Edge:
    """An arrow between two drawn steps."""

    source: str
    target: str
    label: str = ""


@attrs.define
class Cluster:
    """A box around the steps of a container."""

    id: str
    label: str
    items: list[Node | Cluster] = attrs.Factory(list)


@attrs.define
class Graph:
    """What is drawn: nested nodes and clusters, and edges."""

    title: str
    items: list[Node | Cluster] = attrs.Factory(list)
    edges: list[Edge] = attrs.Factory(list)


class _Builder:
    def __init__(self, definition: WorkflowDefinition) -> None:
        self.definition = definition
        self.graph = Graph(f"{definition.id} v{definition.version}")
        self.done: dict[int, tuple[list[str], list[str]]] = {}

    def build(self) -> Graph:
        self.chain(self.definition.start_step, self.graph.items, [])
        return self.graph

    def connect(self, exits: list[str], entries: list[str], label: str = "") -> None:
        for source in exits:
            for target in entries:
                self.graph.edges.append(Edge(source, target, label))

    def chain(
        self, start: int, into: list[Node | Cluster], before: list[str], label: str = ""
    ) -> tuple[list[str], list[str]]:
        """Draw the steps from ``start`` along their routes; returns (entries, exits)."""
        entries: list[str] | None = None
        exits = before
        step_id: int | None = start
        pending_label = label
        while step_id is not None:
            if step_id in self.done:  # a loop or a join: just point at it
                self.connect(exits, self.done[step_id][0], pending_label)
                return entries or self.done[step_id][0], []
            step = self.definition.step(step_id)
            step_entries, step_exits = self.step(step, into)
            self.done[step_id] = (step_entries, step_exits)
            if step_entries:
                self.connect(exits, step_entries, pending_label)
                pending_label = ""
                if entries is None:
                    entries = step_entries
                exits = step_exits
            routes = step.outcomes
            if not routes:
                break
            for route in routes[1:]:
                self.chain(
                    route.next_step, into, exits, "" if route.value is None else str(route.value)
                )
            if routes[0].value is not None:
                pending_label = str(routes[0].value)
            step_id = routes[0].next_step
        return entries or [], exits

    def step(self, step: StepDefinition, into: list[Node | Cluster]) -> tuple[list[str], list[str]]:
        meta = step.metadata if isinstance(step.metadata, dict) else {}
        kind = str(meta.get("kind", ""))
        hidden = bool(meta.get("hidden"))
        if kind == "guard":
            return self.guard(step, into)
        label = step.display_name
        if meta.get("when"):
            label += f"\nif {meta['when']}"
        if step.children:
            cluster = Cluster(f"c{step.id}", label)
            if not hidden:
                into.append(cluster)
            target = cluster.items if not hidden else into
            entries: list[str] = []
            exits: list[str] = []
            for child in step.children:
                child_entries, child_exits = self.chain(child, target, [])
                entries += child_entries
                exits += child_exits
            if not entries:
                node = Node(f"s{step.id}", label, kind)
                into.append(node)
                return [node.id], [node.id]
            return entries, exits
        if hidden:
            return [], []
        node = Node(f"s{step.id}", label, kind)
        into.append(node)
        return [node.id], [node.id]

    def guard(
        self, step: StepDefinition, into: list[Node | Cluster]
    ) -> tuple[list[str], list[str]]:
        phases: dict[str, StepDefinition] = {}
        for child in step.children:
            phase = self.definition.step(child)
            phases[str(phase.inputs.get("phase", ""))] = phase
        meta = step.metadata if isinstance(step.metadata, dict) else {}
        label = step.display_name + (f"\nif {meta['when']}" if meta.get("when") else "")
        cluster = Cluster(f"c{step.id}", label)
        into.append(cluster)
        main_entries: list[str] = []
        main_exits: list[str] = []
        if "main" in phases:
            for child in phases["main"].children:
                e, x = self.chain(child, cluster.items, [])
                main_entries += e
                main_exits += x
        exits = main_exits
        failure_exits: list[str] = []
        if "failure" in phases:
            for child in phases["failure"].children:
                # The hook runs when the step fails, so the arrow leaves the step itself.
                _, failure_exits = self.chain(child, cluster.items, main_entries, "on failure")
        if "ensure" in phases:
            ensure_exits: list[str] = []
            for child in phases["ensure"].children:
                _, ensure_exits = self.chain(child, cluster.items, main_exits, "ensure")
                if failure_exits:
                    entries = self.done[child][0]
                    self.connect(failure_exits, entries)
            exits = ensure_exits
        return main_entries, exits


def build_graph(definition: WorkflowDefinition) -> Graph:
    """The drawing of ``definition``."""
    return _Builder(definition).build()


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br>")


def to_mermaid(graph: Graph) -> str:
    """Mermaid ``flowchart`` text."""
    lines = ["---", f"title: {graph.title}", "---", "flowchart TD"]

    def emit(items: list[Node | Cluster], indent: str) -> None:
        for item in items:
            if isinstance(item, Cluster):
                lines.append(f'{indent}subgraph {item.id}["{_mermaid_text(item.label)}"]')
                emit(item.items, indent + "  ")
                lines.append(f"{indent}end")
            elif item.kind == "workflow":
                lines.append(f'{indent}{item.id}[["{_mermaid_text(item.label)}"]]')
            else:
                lines.append(f'{indent}{item.id}["{_mermaid_text(item.label)}"]')

    emit(graph.items, "  ")
    for edge in graph.edges:
        arrow = f"-->|{_mermaid_text(edge.label)}|" if edge.label else "-->"
        style = "-.->" if edge.label in ("on failure", "ensure") else arrow
        if style == "-.->" and edge.label:
            style = f"-.->|{edge.label}|"
        lines.append(f"  {edge.source} {style} {edge.target}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    # DOT strings: backslashes and quotes escaped; a newline becomes DOT's centred line break.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text."""
    lines = [
        f"digraph {_dot_text(graph.title)} {{",
        "  rankdir=TB;",
        f"  label={_dot_text(graph.title)};",
        '  node [shape=box, style="rounded", fontname="Helvetica"];',
    ]

    def emit(items: list[Node | Cluster], indent: str) -> None:
        for item in items:
            if isinstance(item, Cluster):
                lines.append(f"{indent}subgraph cluster_{item.id} {{")
                lines.append(f"{indent}  label={_dot_text(item.label)};")
                emit(item.items, indent + "  ")
                lines.append(f"{indent}}}")
            else:
                shape = ", shape=box3d" if item.kind == "workflow" else ""
                lines.append(f"{indent}{item.id} [label={_dot_text(item.label)}{shape}];")

    emit(graph.items, "  ")
    for edge in graph.edges:
        attributes = ""
        if edge.label:
            dashed = ", style=dashed" if edge.label in ("on failure", "ensure") else ""
            attributes = f" [label={_dot_text(edge.label)}{dashed}]"
        lines.append(f"  {edge.source} -> {edge.target}{attributes};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(dot: str) -> str:
    """SVG drawn by Graphviz's ``dot`` (a ClickException when it is not installed)."""
    binary = shutil.which("dot")
    if binary is None:
        raise click.ClickException(
            "SVG needs Graphviz (the `dot` program), which is not installed; "
            "use --format mermaid or dot"
        )
    done = subprocess.run(
        [binary, "-Tsvg"], input=dot, capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise click.ClickException(f"dot failed: {done.stderr.strip()}")
    return done.stdout


@click.command("graph")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["mermaid", "dot", "svg"]),
    default="mermaid",
    show_default=True,
    help="What to draw.",
)
@click.option(
    "--workflow",
    "-w",
    "workflow_id",
    default=None,
    help="Which workflow of the file (default: the first).",
)
@click.option(
    "--set",
    "-s",
    "values",
    multiple=True,
    metavar="KEY=VALUE",
    help="A load-time value for ${{ config.KEY }} / ((KEY)) (repeatable).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@click.pass_context
def graph_command(
    ctx: click.Context,
    /,
    file: Path,
    fmt: str,
    workflow_id: str | None,
    values: tuple[str, ...],
    output: Path | None,
) -> None:
    """Draw the workflow in FILE as Mermaid or Graphviz DOT text, or as SVG (with Graphviz)."""
    state = cli_state(ctx)
    definitions = load_file(state, file, parse_pairs(values, "--set"))
    graph = build_graph(choose(definitions, workflow_id))
    text = to_mermaid(graph) if fmt == "mermaid" else to_dot(graph)
    if fmt == "svg":
        text = to_svg(text)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)

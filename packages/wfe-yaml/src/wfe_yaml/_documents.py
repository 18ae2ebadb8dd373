"""Reading YAML files: parsing with positions (aliases within a budget), the top-level
keys, ``workflow:``/``workflows:`` and ``include:`` files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from wfe_yaml import schema
from wfe_yaml.errors import Mark
from wfe_yaml.expansion import BudgetComposer, ExpansionError
from wfe_yaml.sources import SourceError, read_source

if TYPE_CHECKING:
    from wfe_yaml._context import ReadContext
    from wfe_yaml._fields import FieldReader
    from wfe_yaml._spec import WorkflowSpec
    from wfe_yaml._workflow_reader import WorkflowReader

_MAX_INCLUDE_DEPTH = 32


class DocumentReader:
    """Reads a YAML file and the files it includes into workflow specs (each file once)."""

    def __init__(self, ctx: ReadContext, fields: FieldReader, workflows: WorkflowReader) -> None:
        self.ctx = ctx
        self.fields = fields
        self.workflows = workflows
        self._seen_files: set[str] = set()

    def read(self, text: str, file_name: str, base_dir: Path) -> list[WorkflowSpec]:
        """The workflows of ``text`` (the file ``file_name``) and of everything it includes."""
        if Path(file_name).is_file():
            self._seen_files.add(str(Path(file_name).resolve()))
        return self._read_file(text, file_name, base_dir, depth=0, included=False)

    def _parse(self, text: str) -> Any:
        yaml = YAML(typ="rt", pure=True)
        yaml.allow_duplicate_keys = False
        # Counts what aliases expand to while composing, so no later walk of the tree can be
        # made to visit billions of nodes (see wfe_yaml.expansion).
        yaml.Composer = BudgetComposer
        try:
            return yaml.load(io.StringIO(text))
        except ExpansionError as exc:
            self.ctx.problem(Mark(self.ctx.file, exc.line, exc.column), exc.message)
        except RecursionError:
            self.ctx.problem(Mark(self.ctx.file, 1, 1), "the YAML is nested too deeply")
        except Exception as exc:
            # ruamel raises MarkedYAMLError subclasses with a problem mark, but also plain
            # errors for odd input; none of them may escape as a traceback.
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            where = (
                Mark(self.ctx.file, mark.line + 1, mark.column + 1)
                if mark is not None
                else Mark(self.ctx.file, 1, 1)
            )
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0] if str(exc) else ""
            context = getattr(exc, "context", None)
            message = " ".join(str(p) for p in (context, problem) if p) or type(exc).__name__
            self.ctx.problem(where, f"invalid YAML: {message}")
        return None

    def _read_file(
        self, text: str, file_name: str, base_dir: Path, *, depth: int, included: bool
    ) -> list[WorkflowSpec]:
        with self.ctx.reading(text, file_name, base_dir):
            root = self._parse(text)
            if root is None:
                if not self.ctx.problems or all(
                    p.mark.file != file_name for p in self.ctx.problems
                ):
                    self.ctx.problem(
                        Mark(file_name, 1, 1), "the file is empty; expected `workflow:`"
                    )
                return []
            if not isinstance(root, CommentedMap):
                self.ctx.problem(
                    self.ctx.node_mark(root, Mark(file_name, 1, 1)),
                    "the document must be a mapping with `workflow:` or `workflows:`",
                )
                return []
            self.ctx.check_keys(root, schema.TOP_KEYS, "top level")
            specs: list[WorkflowSpec] = []
            if "workflow" in root and "workflows" in root:
                self.ctx.problem(
                    self.ctx.key_mark(root, "workflows"),
                    "use either `workflow:` or `workflows:`, not both",
                )
            if "workflow" in root:
                node = root["workflow"]
                if isinstance(node, CommentedMap):
                    spec = self.workflows.read(node)
                    if spec is not None:
                        specs.append(spec)
                else:
                    self.ctx.problem(
                        self.ctx.value_mark(root, "workflow"), "`workflow:` must be a mapping"
                    )
            if "workflows" in root:
                node = root["workflows"]
                if isinstance(node, CommentedSeq) and len(node) > 0:
                    for index, item in enumerate(node):
                        if isinstance(item, CommentedMap):
                            spec = self.workflows.read(item)
                            if spec is not None:
                                specs.append(spec)
                        else:
                            self.ctx.problem(
                                self.ctx.item_mark(node, index),
                                "each item of `workflows:` must be a mapping",
                            )
                else:
                    self.ctx.problem(
                        self.ctx.value_mark(root, "workflows"),
                        "`workflows:` must be a non-empty list of workflows",
                    )
            if "workflow" not in root and "workflows" not in root and "include" not in root:
                self.ctx.problem(
                    self.ctx.node_mark(root, Mark(file_name, 1, 1)),
                    "no `workflow:` or `workflows:` in the file",
                )
            for spec in specs:
                spec.from_include = included
            if "include" in root:
                specs.extend(self._includes(root, base_dir, depth))
            return specs

    def _includes(self, root: CommentedMap, base_dir: Path, depth: int) -> list[WorkflowSpec]:
        node = root["include"]
        entries: list[tuple[Any, Mark]] = []
        if isinstance(node, str):
            entries.append((node, self.ctx.value_mark(root, "include")))
        elif isinstance(node, CommentedSeq):
            entries.extend((item, self.ctx.item_mark(node, i)) for i, item in enumerate(node))
        else:
            self.ctx.problem(
                self.ctx.value_mark(root, "include"),
                "`include:` must be a file name or a list of file names",
            )
            return []
        specs: list[WorkflowSpec] = []
        for item, mark in entries:
            if not isinstance(item, str) or not item.strip():
                self.ctx.problem(mark, "an include must be a file name")
                continue
            name = self.fields.substitute_static(item, mark)
            try:
                path = (base_dir / name).resolve()
            except (OSError, ValueError) as exc:
                self.ctx.problem(mark, f"cannot include {name!r}: {exc}")
                continue
            key = str(path)
            if key in self._seen_files or depth >= _MAX_INCLUDE_DEPTH:
                continue  # included already (or a cycle of includes): its workflows are there
            self._seen_files.add(key)
            try:
                text = read_source(path, include_mark=mark, name=name)
            except SourceError as exc:
                self.ctx.problems.append(exc.problem)
                continue
            specs.extend(
                self._read_file(text, str(path), path.parent, depth=depth + 1, included=True)
            )
        return specs

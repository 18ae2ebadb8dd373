"""Load errors of YAML workflows: every problem carries ``file:line:column``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from wfe_core.errors import DefinitionError, WfeError

if TYPE_CHECKING:
    from collections.abc import Sequence


@attrs.frozen(order=True)
class Mark:
    """A place in a YAML source: file name and 1-based line and column."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@attrs.frozen
class Problem:
    """One thing wrong with a YAML workflow file, and where."""

    mark: Mark
    message: str

    def __str__(self) -> str:
        return f"{self.mark}: {self.message}"


class YamlWorkflowError(DefinitionError):
    """A YAML workflow file could not be loaded; :attr:`problems` lists every problem found,
    each with its ``file:line:column``."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems, key=lambda p: (p.mark, p.message))
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in YAML workflow"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class StepFailedError(WfeError):
    """A YAML step failed: a command exited non-zero, a script threw, a check did not hold."""

"""The builder ``parallel(...)`` hands its callable: add one branch per ``.branch(...)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_core.builder._workflow import WorkflowBuilder

    #: Builds one branch in the owning definition and returns its first step id (``None``
    #: when the branch is empty: the owner records that problem).
    BuildBranch = Callable[[Callable[[WorkflowBuilder[Any]], Any], str], int | None]


class ParallelBuilder:
    """Collects the branches of a ``parallel`` step; they run concurrently."""

    def __init__(self, build_branch: BuildBranch) -> None:
        self._build_branch = build_branch
        #: First step ids of the branches, in order.
        self.starts: list[int] = []

    def branch(self, build: Callable[[WorkflowBuilder[Any]], Any]) -> ParallelBuilder:
        """Add a branch built by ``build(b)`` (``lambda b: b.start_with(A).then(B)``)."""
        start = self._build_branch(build, "parallel")
        if start is not None:
            self.starts.append(start)
        return self

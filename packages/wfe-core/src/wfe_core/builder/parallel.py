"""The builder ``parallel(...)`` hands its callable: add one branch per ``.branch(...)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_core.builder.workflow import WorkflowBuilder


class ParallelBuilder:
    """Collects the branches of a ``parallel`` step; they run concurrently."""

    def __init__(self, owner: WorkflowBuilder[Any]) -> None:
        self._owner = owner
        #: First step ids of the branches, in order.
        self.starts: list[int] = []

    def branch(self, build: Callable[[WorkflowBuilder[Any]], Any]) -> ParallelBuilder:
        """Add a branch built by ``build(b)`` (``lambda b: b.start_with(A).then(B)``)."""
        start = self._owner._branch(build, "parallel")
        if start is not None:
            self.starts.append(start)
        return self

"""Container steps: they start child branches and go on when every branch has finished.

The engine runs a container again only when all the pointers started inside it are done,
so every ``run`` after the first one means "my branches have finished".
"""

from __future__ import annotations

from collections import abc
from typing import TYPE_CHECKING, Any

from wfe_core._results import ExecutionResult
from wfe_core._step import StepBody

if TYPE_CHECKING:
    from collections.abc import Iterable

    from wfe_core._step import StepContext


class Sequence(StepBody):
    """Runs every child branch once, concurrently (``parallel``; also the body of a saga)."""

    refuses_error_behavior = "parallel"

    async def run(self, ctx: StepContext) -> ExecutionResult:
        if ctx.persistence_data is None:
            return ExecutionResult.branch([ctx.item], {"started": True})
        return ExecutionResult.next()


class If(StepBody):
    """Runs its branch once when ``condition`` is true."""

    refuses_error_behavior = "if_do"

    condition: bool = False

    async def run(self, ctx: StepContext) -> ExecutionResult:
        if ctx.persistence_data is None and self.condition:
            return ExecutionResult.branch([ctx.item], {"started": True})
        return ExecutionResult.next()


class While(StepBody):
    """Runs its branch again and again while ``condition`` (evaluated before each round) holds."""

    refuses_error_behavior = "while_do"

    condition: bool = False

    async def run(self, ctx: StepContext) -> ExecutionResult:
        rounds = int((ctx.persistence_data or {}).get("rounds", 0))
        if self.condition:
            return ExecutionResult.branch([ctx.item], {"rounds": rounds + 1})
        return ExecutionResult.next()


class ForEach(StepBody):
    """Runs its branch once per item of ``collection`` (``ctx.item`` in the branch): all at
    once when ``parallel``, else one after the other."""

    refuses_error_behavior = "for_each"

    collection: Iterable[Any] = ()
    parallel: bool = True

    async def run(self, ctx: StepContext) -> ExecutionResult:
        collection = self.collection or ()
        state = ctx.persistence_data
        if self.parallel:
            branches = list(collection)
            if state is None and branches:
                return ExecutionResult.branch(branches, {"started": True})
            return ExecutionResult.next()
        index = 0 if state is None else int(state["index"]) + 1
        # A sequence (list, tuple, range) is indexed as it is: one round of a long loop does
        # not copy the whole collection.
        items = collection if isinstance(collection, abc.Sequence) else list(collection)
        if index < len(items):
            return ExecutionResult.branch([items[index]], {"index": index})
        return ExecutionResult.next()


class Decide(StepBody):
    """Starts its :class:`When` children; the one whose case matches runs its branch."""

    refuses_error_behavior = "decide"

    async def run(self, ctx: StepContext) -> ExecutionResult:
        if ctx.persistence_data is None:
            return ExecutionResult.branch([ctx.item], {"started": True})
        return ExecutionResult.next()


class When(StepBody):
    """One case of a :class:`Decide`: runs its branch when ``value == case``."""

    refuses_error_behavior = "decide"

    value: Any = None
    case: Any = None

    async def run(self, ctx: StepContext) -> ExecutionResult:
        if ctx.persistence_data is None and self.value == self.case:
            return ExecutionResult.branch([ctx.item], {"started": True})
        return ExecutionResult.next()

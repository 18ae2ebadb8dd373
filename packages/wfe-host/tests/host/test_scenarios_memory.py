"""The end-to-end scenarios on a host with the in-memory providers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemoryPersistence
from wfe_core.testing.conformance.scenarios import WorkflowScenarios
from wfe_host import WorkflowHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wfe_core import HostContext


class TestMemoryScenarios(WorkflowScenarios):
    """Every scenario with the memory store's shortcuts on (the default) and off: a shortcut
    that changes what a workflow does fails here."""

    __test__ = True

    @pytest.fixture(params=[True, False], ids=["fast", "plain"])
    async def host(self, request: pytest.FixtureRequest) -> AsyncIterator[WorkflowHost]:
        async with WorkflowHost(persistence=MemoryPersistence(fast=request.param)) as host:
            yield host


def test_workflow_host_satisfies_the_core_protocols() -> None:
    """Static (mypy) and runtime check that the host is what core's protocols describe."""
    from wfe_core.testing.conformance.scenarios import ScenarioHost

    host = WorkflowHost()
    as_scenario_host: ScenarioHost = host
    as_host_context: HostContext = host
    assert as_scenario_host is as_host_context
